//! Alarms (etcd's NOSPACE and CORRUPT), replicated through the log as etcd
//! replicates them: raising or clearing one is a [`Command::Alarm`] every
//! member applies, so every member refuses the same writes at the same
//! point of the log, and the alarm list survives restarts and travels in
//! snapshots (it lives in the state store's meta keyspace).
//!
//! The rules are decided here, once for both protocols:
//!
//! - [`refusal`]: under NOSPACE the writes that grow the store are refused
//!   (etcd's `applierV3Capped`: Put, a Txn with a put in either branch;
//!   ZooKeeper create and setData, alone or in a multi, answer
//!   QuotaExceeded, ZooKeeper 3.7+'s code for a hard quota, which the Java
//!   client and kazoo >= 2.9 raise as QuotaExceeded); deletes, compaction,
//!   lease revokes (session closes) and reads go on, so an operator can make
//!   room. Under CORRUPT every etcd and ZooKeeper write is refused (etcd's
//!   `applierV3Corrupt`), reads go on.
//!   A lease grant (= opening a ZooKeeper session) is refused under NOSPACE
//!   only before proposing (etcd's `quotaLeaseServer`), not at apply time as
//!   etcd's capped applier also does: a ZooKeeper client must still be able
//!   to open a session to read and delete under NOSPACE, and a lease record
//!   is a few bytes.
//! - [`Quota`]: the proposer's check before a write (etcd's
//!   `quotaKVServer`): refused while NOSPACE is active; a write that would
//!   take the store to the quota raises NOSPACE through the log first.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};
use crate::engine::{Batch, Engine, Space};
use crate::kv::{RequestOp, TxnRequest};
use crate::znode::{ZkOp, ZkWriteResult};
use crate::{CoreError, KvError, ZkError};

/// etcd's alarm types, with etcd's numbers (`etcdserverpb.AlarmType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The store passed `--quota-backend-bytes`.
    NoSpace = 1,
    /// Members' stores diverged (the corruption check found different
    /// hashes at one revision).
    Corrupt = 2,
}

impl AlarmKind {
    /// From etcd's number (0, NONE, and unknown numbers are `None`).
    pub fn from_i32(n: i32) -> Option<AlarmKind> {
        match n {
            1 => Some(AlarmKind::NoSpace),
            2 => Some(AlarmKind::Corrupt),
            _ => None,
        }
    }

    fn tag(self) -> u8 {
        self as u8
    }
}

/// One raised alarm: which member raised it, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alarm {
    pub member_id: u64,
    pub kind: AlarmKind,
}

/// Meta keys of raised alarms: this prefix, the member id (8 bytes BE),
/// the kind's number (1 byte); the value is empty.
const META_PREFIX: &[u8] = b"alarm/";

fn meta_key(a: &Alarm) -> Vec<u8> {
    let mut k = META_PREFIX.to_vec();
    k.extend_from_slice(&a.member_id.to_be_bytes());
    k.push(a.kind.tag());
    k
}

/// The raised alarms of the cluster, as this member has applied them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    set: BTreeSet<Alarm>,
}

impl Alarms {
    /// Reads the alarm list from the store.
    pub(crate) fn load(engine: &Engine) -> Result<Alarms, CoreError> {
        let mut set = BTreeSet::new();
        let mut end = META_PREFIX.to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        for item in engine.scan(Space::Meta, META_PREFIX.to_vec()..end, false) {
            let (k, _) = item?;
            let rest = &k[META_PREFIX.len()..];
            let bad = || CoreError::Corrupt {
                path: engine.dir().join("meta"),
                what: format!("bad alarm key {k:?}"),
            };
            if rest.len() != 9 {
                return Err(bad());
            }
            let mut id = [0u8; 8];
            id.copy_from_slice(&rest[..8]);
            let kind = AlarmKind::from_i32(rest[8] as i32).ok_or_else(bad)?;
            set.insert(Alarm {
                member_id: u64::from_be_bytes(id),
                kind,
            });
        }
        Ok(Alarms { set })
    }

    /// Every raised alarm, by member then kind.
    pub fn list(&self) -> Vec<Alarm> {
        self.set.iter().copied().collect()
    }

    /// Whether an alarm of this kind is raised by any member.
    pub fn any(&self, kind: AlarmKind) -> bool {
        self.set.iter().any(|a| a.kind == kind)
    }

    /// Applies [`Command::Alarm`]: etcd's applier answers an activation
    /// with the alarm (new or already raised) and a deactivation with the
    /// alarm it cleared, nothing if it was not raised.
    pub(crate) fn apply(&mut self, batch: &mut Batch, activate: bool, a: Alarm) -> Vec<Alarm> {
        if activate {
            if self.set.insert(a) {
                tracing::warn!(member = a.member_id, alarm = ?a.kind, "alarm raised");
                batch.put(Space::Meta, meta_key(&a), Vec::new());
            }
            vec![a]
        } else if self.set.remove(&a) {
            tracing::warn!(member = a.member_id, alarm = ?a.kind, "alarm cleared");
            batch.remove(Space::Meta, meta_key(&a));
            vec![a]
        } else {
            Vec::new()
        }
    }
}

/// Whether a txn puts anything in either branch, nested txns included
/// (etcd's capped applier refuses it when the quota cost is not 0).
fn txn_puts(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        RequestOp::Put(_) => true,
        RequestOp::Txn(t) => txn_puts(t),
        _ => false,
    })
}

/// The index of the first op of a ZooKeeper write that grows the store.
fn zk_growing_op(ops: &[ZkOp]) -> Option<usize> {
    ops.iter()
        .position(|op| matches!(op, ZkOp::Create { .. } | ZkOp::SetData { .. }))
}

fn is_write(c: &Command) -> bool {
    !matches!(
        c,
        Command::Noop | Command::Alarm { .. } | Command::MemberUpdate { .. } | Command::Auth { .. }
    )
}

/// The answer to `command` under the raised `alarms` when they refuse it
/// (`None`: it runs). Decided the same way at apply time on every member
/// and, to spare the log, by the proposer before proposing.
pub fn refusal(alarms: &Alarms, command: &Command) -> Option<CommandResult> {
    let inner = match command {
        Command::As { command, .. } => command.as_ref(),
        c => c,
    };
    let corrupt = alarms.any(AlarmKind::Corrupt) && is_write(inner);
    let nospace = alarms.any(AlarmKind::NoSpace);
    let kv_err = if corrupt {
        KvError::Corrupt
    } else {
        KvError::NoSpace
    };
    match inner {
        Command::Put(_) if corrupt || nospace => Some(CommandResult::Put(Err(kv_err))),
        Command::Txn(t) if corrupt || (nospace && txn_puts(t)) => {
            Some(CommandResult::Txn(Err(kv_err)))
        }
        Command::Zk { ops, .. } => {
            let index = if corrupt {
                Some(0)
            } else if nospace {
                zk_growing_op(ops)
            } else {
                None
            }?;
            let error = if corrupt {
                ZkError::SystemError
            } else {
                ZkError::QuotaExceeded
            };
            Some(CommandResult::Zk(ZkWriteResult::Failed { index, error }))
        }
        _ if corrupt => Some(match inner {
            Command::DeleteRange(_) => CommandResult::DeleteRange(Err(kv_err)),
            Command::Compact { .. } => CommandResult::Compact(Err(kv_err)),
            Command::LeaseGrant { .. } => CommandResult::LeaseGrant(Err(kv_err)),
            Command::LeaseRevoke { .. } => CommandResult::LeaseRevoke(Err(kv_err)),
            Command::ZkReap { .. } => CommandResult::Reaped(false),
            _ => return None,
        }),
        _ => None,
    }
}

/// The proposer's quota rule (etcd's `backendQuota`): a write of quota
/// cost `cost` is refused while NOSPACE is raised; one that would take the
/// store's size to `quota_bytes` (0 or less: no quota) raises NOSPACE.
/// Returns whether to refuse, and whether to raise NOSPACE first.
pub fn quota_check(alarms: &Alarms, db_size: i64, cost: u64, quota_bytes: i64) -> QuotaVerdict {
    if cost == 0 {
        return QuotaVerdict::Fits;
    }
    if alarms.any(AlarmKind::NoSpace) {
        return QuotaVerdict::Refuse;
    }
    if quota_bytes > 0 && db_size.saturating_add(cost as i64) >= quota_bytes {
        return QuotaVerdict::RaiseAndRefuse;
    }
    QuotaVerdict::Fits
}

/// What [`quota_check`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaVerdict {
    Fits,
    Refuse,
    RaiseAndRefuse,
}

/// etcd's per-key quota overhead (`kvOverhead`), which ZooKeeper writes
/// are charged too.
pub const KV_OVERHEAD: u64 = 256;

/// The quota cost of a ZooKeeper write: path and data of every create and
/// setData, plus [`KV_OVERHEAD`] each (0 for a write that only deletes,
/// checks or changes ACLs).
pub fn zk_cost(ops: &[ZkOp]) -> u64 {
    ops.iter()
        .map(|op| match op {
            ZkOp::Create { path, data, .. } | ZkOp::SetData { path, data, .. } => {
                KV_OVERHEAD + path.len() as u64 + data.as_ref().map_or(0, |d| d.len() as u64)
            }
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{DeleteRangeRequest, PutRequest};

    fn raised(kind: AlarmKind) -> Alarms {
        let mut a = Alarms::default();
        a.set.insert(Alarm { member_id: 7, kind });
        a
    }

    #[test]
    fn nospace_refuses_growth_only() {
        let a = raised(AlarmKind::NoSpace);
        let put = Command::Put(PutRequest::default());
        assert_eq!(
            refusal(&a, &put),
            Some(CommandResult::Put(Err(KvError::NoSpace)))
        );
        let del = Command::DeleteRange(DeleteRangeRequest::default());
        assert_eq!(refusal(&a, &del), None);
        let read_txn = Command::Txn(TxnRequest::default());
        assert_eq!(refusal(&a, &read_txn), None);
        let nested = Command::Txn(TxnRequest {
            failure: vec![RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Put(PutRequest::default())],
                ..Default::default()
            })],
            ..Default::default()
        });
        assert!(refusal(&a, &nested).is_some());
        assert_eq!(refusal(&a, &Command::LeaseGrant { id: 1, ttl_ms: 1 }), None);
        assert_eq!(refusal(&a, &Command::Compact { revision: 1 }), None);
        let zk = |ops| Command::Zk {
            session: 0,
            auth: vec![],
            ops,
            multi: true,
            conn: 0,
            seq: 0,
        };
        let delete = ZkOp::Delete {
            path: "/a".into(),
            version: -1,
        };
        let set = ZkOp::SetData {
            path: "/a".into(),
            data: Some(b"x".to_vec()),
            version: -1,
        };
        assert_eq!(refusal(&a, &zk(vec![delete.clone()])), None);
        assert_eq!(
            refusal(&a, &zk(vec![delete, set])),
            Some(CommandResult::Zk(ZkWriteResult::Failed {
                index: 1,
                error: ZkError::QuotaExceeded
            }))
        );
        assert_eq!(refusal(&Alarms::default(), &put), None);
    }

    #[test]
    fn corrupt_refuses_every_write() {
        let a = raised(AlarmKind::Corrupt);
        let del = Command::DeleteRange(DeleteRangeRequest::default());
        assert_eq!(
            refusal(&a, &del),
            Some(CommandResult::DeleteRange(Err(KvError::Corrupt)))
        );
        assert_eq!(refusal(&a, &Command::Noop), None);
    }

    #[test]
    fn quota_raises_at_the_limit() {
        let none = Alarms::default();
        assert_eq!(quota_check(&none, 90, 5, 100), QuotaVerdict::Fits);
        assert_eq!(quota_check(&none, 95, 5, 100), QuotaVerdict::RaiseAndRefuse);
        assert_eq!(quota_check(&none, 95, 0, 100), QuotaVerdict::Fits);
        assert_eq!(quota_check(&none, 1 << 40, 5, 0), QuotaVerdict::Fits);
        let a = raised(AlarmKind::NoSpace);
        assert_eq!(quota_check(&a, 0, 5, 100), QuotaVerdict::Refuse);
    }
}
