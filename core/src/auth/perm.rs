//! The permission checks of etcd's auth store (`isOpPermitted`,
//! `IsAdminPermitted`, `range_perm_cache.go`), decided here once for the
//! read path (frontend, before a local read) and the write path (apply).
//!
//! A user's permissions of one kind (read or write) are the union of the
//! key intervals of all its roles. A single key is permitted when some
//! interval holds it; a range `[key, range_end)` only when the intervals
//! cover it without a gap (etcd's `IntervalTree.Contains`). An empty end
//! bound means "to the end of the keyspace" (etcd's `BytesAffine`
//! comparison, where the empty slice is greater than every key).

use std::cmp::Ordering;

use super::store::{AuthStore, Permission, User};
use super::{AuthError, Caller};

/// An end bound: `None` is +infinity.
type End = Option<Vec<u8>>;

fn cmp_end(a: &End, b: &End) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    }
}

/// `key < end`.
fn below(key: &[u8], end: &End) -> bool {
    !matches!(end, Some(e) if key >= e.as_slice())
}

/// A permission as a half-open interval.
fn interval(p: &Permission) -> (Vec<u8>, End) {
    if p.range_end.is_empty() {
        let mut next = p.key.clone();
        next.push(0);
        (p.key.clone(), Some(next))
    } else if p.range_end == [0] {
        (p.key.clone(), None)
    } else {
        (p.key.clone(), Some(p.range_end.clone()))
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl AuthStore {
    fn intervals(&self, user: &User, access: Access) -> Vec<(Vec<u8>, End)> {
        let mut out = Vec::new();
        for name in &user.roles {
            let Some(role) = self.roles.get(name) else {
                continue;
            };
            for p in &role.perms {
                let ok = match access {
                    Access::Read => p.perm_type.reads(),
                    Access::Write => p.perm_type.writes(),
                };
                if ok {
                    out.push(interval(p));
                }
            }
        }
        out
    }

    /// Whether `user`'s roles grant `access` to `key` (when `range_end` is
    /// empty) or to all of `[key, range_end)` (`[0]`: from `key` on).
    pub fn range_permitted(
        &self,
        user: &User,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> bool {
        let ivs = self.intervals(user, access);
        if range_end.is_empty() {
            return ivs
                .iter()
                .any(|(b, e)| b.as_slice() <= key && below(key, e));
        }
        let end: End = (range_end != [0]).then(|| range_end.to_vec());
        // Intervals meeting [key, end), by begin: they must start at or
        // before `key`, leave no gap, and reach `end`.
        let mut meet: Vec<&(Vec<u8>, End)> = ivs
            .iter()
            .filter(|(b, e)| below(b, &end) && below(key, e))
            .collect();
        meet.sort_by(|a, b| a.0.cmp(&b.0));
        let Some(first) = meet.first() else {
            return false;
        };
        if first.0.as_slice() > key {
            return false;
        }
        let mut reach = first.1.clone();
        for (b, e) in meet.iter().skip(1) {
            if cmp_end(&reach, &Some(b.clone())) == Ordering::Less {
                return false;
            }
            if cmp_end(e, &reach) == Ordering::Greater {
                reach = e.clone();
            }
        }
        cmp_end(&reach, &end) != Ordering::Less
    }

    /// etcd's `isOpPermitted`: nothing is checked while auth is disabled;
    /// otherwise the caller must have credentials from the current auth
    /// revision, exist, and hold the root role or a covering permission.
    pub fn check(
        &self,
        c: &Caller,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if c.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if c.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self.users.get(&c.user).ok_or(AuthError::PermissionDenied)?;
        if user.has_root() || self.range_permitted(user, key, range_end, access) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `IsAdminPermitted`.
    pub fn check_admin(&self, c: &Caller) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if c.user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let user = self.users.get(&c.user).ok_or(AuthError::UserNotFound)?;
        if user.has_root() {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Every check a txn needs (etcd's `checkTxnAuth`): read on each
    /// compare's range, then each branch's operations. Nested txns are
    /// checked too (etcd 3.4 skips them, a hole closed in later releases).
    pub fn check_txn(&self, c: &Caller, t: &crate::kv::TxnRequest) -> Result<(), AuthError> {
        for cmp in &t.compare {
            self.check(c, &cmp.key, &cmp.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            self.check_op(c, op)?;
        }
        Ok(())
    }

    fn check_op(&self, c: &Caller, op: &crate::kv::RequestOp) -> Result<(), AuthError> {
        use crate::kv::RequestOp;
        match op {
            RequestOp::Range(r) => self.check(c, &r.key, &r.range_end, Access::Read),
            RequestOp::Put(p) => self.check(c, &p.key, &[], Access::Write),
            RequestOp::DeleteRange(d) => {
                if d.prev_kv {
                    self.check(c, &d.key, &d.range_end, Access::Read)?;
                }
                self.check(c, &d.key, &d.range_end, Access::Write)
            }
            RequestOp::Txn(t) => self.check_txn(c, t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::{PermType, Role};

    fn store(perms: Vec<(PermType, &str, &str)>) -> (AuthStore, Caller) {
        let mut st = AuthStore {
            enabled: true,
            revision: 3,
            ..Default::default()
        };
        st.roles.insert(
            "r".into(),
            Role {
                name: "r".into(),
                perms: perms
                    .into_iter()
                    .map(|(t, k, e)| Permission {
                        perm_type: t,
                        key: k.as_bytes().to_vec(),
                        range_end: e.as_bytes().to_vec(),
                    })
                    .collect(),
            },
        );
        st.users.insert(
            "u".into(),
            User {
                name: "u".into(),
                roles: vec!["r".into()],
                ..Default::default()
            },
        );
        (
            st,
            Caller {
                user: "u".into(),
                revision: 3,
            },
        )
    }

    #[test]
    fn single_keys_and_ranges_follow_etcds_interval_rules() {
        use PermType::*;
        let (st, c) = store(vec![
            (Read, "a", "c"),
            (ReadWrite, "c", "e"),
            (Write, "k", ""),
        ]);
        let ok = |k: &str, e: &str, a| st.check(&c, k.as_bytes(), e.as_bytes(), a).is_ok();
        assert!(ok("a", "", Access::Read));
        assert!(ok("bzz", "", Access::Read));
        assert!(!ok("e", "", Access::Read));
        // [a,c) ∪ [c,e) covers [a,e) without a gap.
        assert!(ok("a", "e", Access::Read));
        assert!(!ok("a", "f", Access::Read));
        assert!(!ok("a", "d", Access::Write));
        assert!(ok("c", "d", Access::Write));
        assert!(ok("k", "", Access::Write));
        assert!(!ok("k", "", Access::Read));
        assert!(!ok("k0", "", Access::Write));
        // "from key": only an open-ended permission covers it.
        assert!(!ok("c", "\0", Access::Read));
        let (st, c) = store(vec![(Read, "m", "\0")]);
        assert!(st.check(&c, b"m", b"\0", Access::Read).is_ok());
        assert!(st.check(&c, b"zzz", b"", Access::Read).is_ok());
        assert!(st.check(&c, b"a", b"\0", Access::Read).is_err());
    }

    #[test]
    fn credentials_are_checked_before_permissions() {
        let (mut st, c) = store(vec![]);
        assert_eq!(
            st.check(&Caller::default(), b"a", b"", Access::Read),
            Err(AuthError::UserEmpty)
        );
        st.revision = 4;
        assert_eq!(
            st.check(&c, b"a", b"", Access::Read),
            Err(AuthError::AuthOldRevision)
        );
        st.enabled = false;
        assert_eq!(
            st.check(&Caller::default(), b"a", b"", Access::Read),
            Ok(())
        );
    }
}
