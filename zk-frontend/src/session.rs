//! Sessions (D4): a ZooKeeper session is a core lease.
//!
//! Opening picks a random positive id and grants a lease with the negotiated
//! timeout as TTL (positive because `ephemeralOwner` reserves the negative
//! range for containers and TTL nodes); reconnecting checks the password
//! (a keyed MAC computed by core, so any member accepts it) and that the
//! lease still exists. Also: the registry of live connections that the
//! four-letter words report, and the digest scheme's id derivation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use janus_core::{Command, CommandResult, KvError, Node};
use rand::Rng;

use crate::ZkConfig;

/// Clamps a requested session timeout into [min, max] (ZooKeeperServer.processConnectRequest).
pub fn negotiate_timeout(cfg: &ZkConfig, requested: i32) -> i32 {
    let min = cfg.min_session_timeout_ms as i64;
    let max = (cfg.max_session_timeout_ms as i64).max(min);
    (requested as i64).clamp(min, max) as i32
}

/// Why a session could not be opened or resumed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown/expired session or wrong password: ZooKeeper answers with
    /// timeout 0, session 0 and a zero password, then closes.
    #[error("session expired or invalid password")]
    Expired,
    #[error(transparent)]
    Core(#[from] janus_core::CoreError),
    #[error("unexpected lease grant result: {0}")]
    Unexpected(String),
}

/// Opens a new session: a lease with a random positive id.
pub async fn open(node: &Node, timeout_ms: i32) -> Result<i64, SessionError> {
    for _ in 0..16 {
        let id: i64 = rand::thread_rng().gen_range(1..i64::MAX);
        let applied = node
            .propose(Command::LeaseGrant {
                id,
                ttl_ms: timeout_ms as i64,
            })
            .await?;
        match applied.result {
            CommandResult::LeaseGrant(Ok(_)) => return Ok(id),
            CommandResult::LeaseGrant(Err(KvError::LeaseExists)) => continue,
            other => return Err(SessionError::Unexpected(format!("{other:?}"))),
        }
    }
    Err(SessionError::Unexpected(
        "no free session id after 16 tries".into(),
    ))
}

/// Resumes session `id` if `passwd` is its password and it is still alive.
pub async fn resume(node: &Node, id: i64, passwd: &[u8]) -> Result<(), SessionError> {
    if id <= 0 || passwd != node.session_password(id) || !node.lease_exists(id) {
        return Err(SessionError::Expired);
    }
    // Only a lease that is gone means expired; a member that cannot reach
    // the leader right now must not tell a live session it expired.
    match node.lease_keepalive(id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(SessionError::Expired),
        Err(e) => Err(SessionError::Unexpected(e.to_string())),
    }
}

/// ZooKeeper's digest id for an auth packet `user:password`: the rule
/// lives in core (`janus_core::znode::acl::digest_id`, one place for ACL
/// rules); like ZooKeeper, a credential without `:` is its own user name.
pub fn digest_id(auth: &[u8]) -> String {
    janus_core::znode::acl::digest_id(&String::from_utf8_lossy(auth))
}

/// What the four-letter words report about one connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub session: i64,
    pub timeout_ms: i32,
    pub received: u64,
    pub sent: u64,
    pub last_zxid: i64,
    pub watches: Vec<String>,
    pub ephemerals: usize,
}

/// Live connections of the endpoint.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Mutex<ConnInfo>>>>,
}

impl Registry {
    /// Adds a connection; the returned id unregisters it.
    pub fn register(&self, entry: Arc<Mutex<ConnInfo>>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.conns.lock() {
            m.insert(id, entry);
        }
        id
    }
    pub fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&id);
        }
    }
    /// A copy of every connection's info.
    pub fn snapshot(&self) -> Vec<ConnInfo> {
        let Ok(m) = self.conns.lock() else {
            return Vec::new();
        };
        m.values()
            .filter_map(|c| c.lock().ok().map(|c| c.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // From ZooKeeper's docs: DigestAuthenticationProvider.generateDigest("super:test").
        assert_eq!(
            digest_id(b"super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert!(digest_id(b"nocolon").starts_with("nocolon:"));
    }

    #[test]
    fn timeouts_clamp() {
        let cfg = ZkConfig::default();
        assert_eq!(negotiate_timeout(&cfg, 1), 4000);
        assert_eq!(negotiate_timeout(&cfg, 10000), 10000);
        assert_eq!(negotiate_timeout(&cfg, i32::MAX), 40000);
    }
}
