//! etcd's simple tokens (`auth/simple_token.go`): `<16 random letters>.<raft
//! index of the Authenticate entry>`. Every member records the token when
//! it applies that entry, so a client may use it on any member; a token
//! unused for its TTL is forgotten, each use restarts the TTL, and tokens
//! of a deleted user or of a changed password are dropped. The table is
//! member-local memory, never persisted: after a restart clients
//! authenticate again, as with etcd.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Tokens {
    /// token → (user, deadline, ttl). Behind a lock so that lookups, which
    /// restart the TTL, work under the state's read lock.
    map: Mutex<HashMap<String, (String, Instant, Duration)>>,
}

/// etcd's `defaultSimpleTokenLength`.
pub const PREFIX_LEN: usize = 16;

/// A fresh random token prefix (letters only, as etcd's).
pub fn new_prefix() -> String {
    use rand::Rng;
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..PREFIX_LEN)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect()
}

/// The raft index a simple token names, if it is well formed.
pub fn token_index(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, index, rest) = (parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    index.parse().ok()
}

impl Tokens {
    pub(crate) fn assign(&self, token: String, user: &str, ttl: Duration) {
        if let Ok(mut m) = self.map.lock() {
            let now = Instant::now();
            // Forget expired tokens here rather than on a timer.
            m.retain(|_, (_, deadline, _)| *deadline > now);
            m.insert(token, (user.to_string(), now + ttl, ttl));
        }
    }

    /// The user of a live token, restarting its TTL.
    pub fn user(&self, token: &str) -> Option<String> {
        let mut m = self.map.lock().ok()?;
        let now = Instant::now();
        let (user, deadline, ttl) = m.get_mut(token)?;
        if *deadline <= now {
            m.remove(token);
            return None;
        }
        *deadline = now + *ttl;
        Some(user.clone())
    }

    pub(crate) fn invalidate_user(&self, user: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, (u, _, _)| u != user);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_unused_and_live_while_used() {
        let t = Tokens::default();
        t.assign("a.5".into(), "u", Duration::from_millis(150));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(t.user("a.5").as_deref(), Some("u"));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(t.user("a.5").as_deref(), Some("u"));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(t.user("a.5"), None);
        assert_eq!(token_index("abc.12"), Some(12));
        assert_eq!(token_index("abc"), None);
        assert_eq!(token_index("a.b.1"), None);
        assert_eq!(new_prefix().len(), PREFIX_LEN);
    }
}
