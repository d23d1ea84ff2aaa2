//! The corruption check, as etcd 3.4's `etcdserver/corrupt.go`: members
//! that applied the same log must hold the same MVCC history, so their
//! HashKV at one revision must agree whenever they agree on the compact
//! revision (a member compacted further hashes less history).
//!
//! Two checks, both off by default as in etcd:
//!
//! - the **initial** check (`--experimental-initial-corrupt-check`,
//!   etcd's `CheckInitialHashKV`): before a member serves clients it asks
//!   every peer for its hash at the member's own current revision; a peer
//!   with the same compact revision and a different hash makes the member
//!   refuse to start ([`initial_verdict`]);
//! - the **periodic** check (`--experimental-corrupt-check-time`, etcd's
//!   `monitorKVHash`/`checkHashKV`): every period the leader hashes at its
//!   current revision, asks every peer for its hash there, waits for a
//!   linearizable read, hashes again, and raises CORRUPT through the log
//!   on the first mismatch it finds ([`periodic_verdict`]). Every member
//!   then refuses writes and keeps serving reads ([`crate::alarm`]).
//!
//! Peers that cannot answer (unreachable, behind the revision, compacted
//! past it) are skipped, as etcd skips them.
//!
//! Which member the alarm names: etcd 3.4 (from 3.4.23) raises it with
//! member id 0, "it isn't clear which member's data is corrupted"; etcd
//! 3.5's `triggerCorruptAlarm` names the member whose answer disagreed.
//! janus names that member, so `etcdctl alarm list` tells the operator
//! which member to inspect (the leader's own id when its two hashes of
//! one revision differ).

use std::time::Duration;

use crate::alarm::{Alarm, AlarmKind};
use crate::{CoreError, KvError, Node};

/// A member's HashKV answer (etcd's `HashKVResponse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHash {
    /// The answering member (its response header's member id).
    pub member_id: u64,
    /// Its current revision when it answered (the header's revision, as
    /// etcd's `HashByRev` returns it), not the revision hashed.
    pub revision: i64,
    pub compact_revision: i64,
    pub hash: u32,
}

/// Why a member gave no hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerHashError {
    /// The revision asked for is compacted there (this member is behind).
    Compacted,
    /// The revision asked for is ahead of it (that member is behind).
    FutureRevision,
    /// No answer (down, unreachable, timed out, not open yet).
    Unreachable(String),
}

/// This member's hash at its current revision (etcd's `HashByRev(0)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalHash {
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
}

/// What a peer answered, by its member id.
pub type PeerAnswer = (u64, Result<PeerHash, PeerHashError>);

/// `checkHashKV`'s rule: `first` is the leader's hash before asking the
/// peers (at `first.revision`), `second` its hash again after a
/// linearizable read. Returns the member to raise CORRUPT for, if any:
/// the first mismatch found, in etcd's order (etcd raises one alarm per
/// check):
///
/// 1. the leader's two hashes differ at an unchanged revision and compact
///    revision: the leader itself;
/// 2. a peer whose current revision is ahead of the leader's second
///    revision, or whose compact revision is ahead of the leader's second
///    compact revision, or whose hash at `first.revision` differs while its
///    compact revision equals the leader's first one.
pub fn periodic_verdict(
    leader: u64,
    first: LocalHash,
    second: LocalHash,
    peers: &[PeerAnswer],
) -> Option<u64> {
    if first.hash != second.hash
        && first.revision == second.revision
        && first.compact_revision == second.compact_revision
    {
        tracing::warn!(?first, ?second, "found hash mismatch");
        return Some(leader);
    }
    for (id, answer) in peers {
        let Ok(p) = answer else { continue };
        if p.revision > second.revision {
            tracing::warn!(
                leader_revision = second.revision,
                follower_revision = p.revision,
                follower = format!("{id:x}"),
                "revision from follower must be less than or equal to leader's"
            );
            return Some(*id);
        }
        if p.compact_revision > second.compact_revision {
            tracing::warn!(
                leader_compact_revision = second.compact_revision,
                follower_compact_revision = p.compact_revision,
                follower = format!("{id:x}"),
                "compact revision from follower must be less than or equal to leader's"
            );
            return Some(*id);
        }
        if p.compact_revision == first.compact_revision && p.hash != first.hash {
            tracing::warn!(
                revision = first.revision,
                leader_hash = first.hash,
                follower_hash = p.hash,
                follower = format!("{id:x}"),
                "same compact revision then hashes must match"
            );
            return Some(*id);
        }
    }
    None
}

/// `CheckInitialHashKV`'s rule: the peers whose hash at `local.revision`
/// differs from this member's while their compact revision is the same
/// (a different compact revision only warns). Any of them: refuse to
/// start.
pub fn initial_verdict(local: LocalHash, peers: &[PeerAnswer]) -> Vec<u64> {
    let mut mismatched = Vec::new();
    for (id, answer) in peers {
        match answer {
            Ok(p) if p.hash != local.hash => {
                if p.compact_revision == local.compact_revision {
                    tracing::warn!(
                        ?local,
                        peer = ?p,
                        "found different hash values from remote peer"
                    );
                    mismatched.push(*id);
                } else {
                    tracing::warn!(
                        ?local,
                        peer = ?p,
                        "found different compact revision values from remote peer"
                    );
                }
            }
            Ok(_) => {}
            Err(PeerHashError::FutureRevision) => tracing::warn!(
                peer = format!("{id:x}"),
                revision = local.revision,
                "cannot fetch hash from slow remote peer"
            ),
            Err(PeerHashError::Compacted) => tracing::warn!(
                peer = format!("{id:x}"),
                revision = local.revision,
                "cannot fetch hash from remote peer; local member is behind"
            ),
            Err(PeerHashError::Unreachable(e)) => tracing::warn!(
                peer = format!("{id:x}"),
                revision = local.revision,
                "failed hash kv request: {e}"
            ),
        }
    }
    mismatched
}

/// This member's answer to a peer's HashKV request at `revision`.
pub(crate) fn answer(node: &Node, revision: i64) -> Result<PeerHash, PeerHashError> {
    match node.hash_kv_at(revision) {
        Ok(h) => Ok(PeerHash {
            member_id: node.member_id(),
            revision: h.current_revision,
            compact_revision: h.compact_revision,
            hash: h.hash,
        }),
        Err(KvError::Compacted { .. }) => Err(PeerHashError::Compacted),
        Err(KvError::FutureRevision) => Err(PeerHashError::FutureRevision),
        Err(e) => Err(PeerHashError::Unreachable(e.to_string())),
    }
}

/// This member's hash at its current revision; the scan runs off the
/// async threads.
async fn local(node: &Node) -> Result<LocalHash, CoreError> {
    let n = node.clone();
    let h = tokio::task::spawn_blocking(move || n.hash_kv_at(0))
        .await
        .map_err(|e| CoreError::Raft(format!("hash task: {e}")))?
        .map_err(|e| CoreError::Raft(format!("cannot hash the store: {e}")))?;
    Ok(LocalHash {
        hash: h.hash,
        revision: h.current_revision,
        compact_revision: h.compact_revision,
    })
}

/// Asks every other member for its hash at `revision`, one after another
/// as etcd does, each within the member's request timeout.
async fn ask_peers(node: &Node, revision: i64) -> Vec<PeerAnswer> {
    let me = node.member_id();
    let timeout = node.config().request_timeout;
    let mut answers = Vec::new();
    for m in node.members() {
        if m.id == me {
            continue;
        }
        let a = node.peer_hash_kv(m.id, revision, timeout).await;
        if let Err(e) = &a {
            tracing::debug!(
                peer = format!("{:x}", m.id),
                "hash kv request failed: {e:?}"
            );
        }
        answers.push((m.id, a));
    }
    answers
}

/// The initial check: `Err` when a peer's store differs from this
/// member's (the member must not serve).
pub async fn initial_check(node: &Node) -> Result<(), CoreError> {
    tracing::info!(
        timeout = ?node.config().request_timeout,
        "starting initial corruption check"
    );
    let me = local(node).await?;
    let peers = ask_peers(node, me.revision).await;
    let mismatched = initial_verdict(me, &peers);
    if !mismatched.is_empty() {
        return Err(CoreError::Raft(format!(
            "{:x} found data inconsistency with peers",
            node.member_id()
        )));
    }
    tracing::info!("initial corruption checking passed; no corruption");
    Ok(())
}

/// One periodic check by the leader (`checkHashKV`); returns the member it
/// raised CORRUPT for, if any.
pub async fn check_once(node: &Node) -> Result<Option<u64>, CoreError> {
    let first = local(node).await?;
    let peers = ask_peers(node, first.revision).await;
    node.read_barrier().await?;
    let second = local(node).await?;
    let checked = peers.iter().filter(|(_, a)| a.is_ok()).count();
    let verdict = periodic_verdict(node.member_id(), first, second, &peers);
    if let Some(id) = verdict {
        node.alarm(
            true,
            Alarm {
                member_id: id,
                kind: AlarmKind::Corrupt,
            },
        )
        .await?;
    }
    tracing::info!(
        number_of_peers_checked = checked,
        "finished peer corruption check"
    );
    Ok(verdict)
}

/// The periodic check (`monitorKVHash`): every `every`, if this member
/// leads, [`check_once`]. Runs until dropped (aborted).
pub async fn run(node: Node, every: Duration) {
    tracing::info!(interval = ?every, "enabled corruption checking");
    loop {
        tokio::time::sleep(every).await;
        if node.has_stopped() {
            return;
        }
        if !node.is_leader() {
            continue;
        }
        if let Err(e) = check_once(&node).await {
            tracing::warn!("failed to check hash KV: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hash: u32, revision: i64, compact_revision: i64) -> LocalHash {
        LocalHash {
            hash,
            revision,
            compact_revision,
        }
    }

    fn peer(id: u64, hash: u32, revision: i64, compact_revision: i64) -> PeerAnswer {
        (
            id,
            Ok(PeerHash {
                member_id: id,
                revision,
                compact_revision,
                hash,
            }),
        )
    }

    #[test]
    fn agreeing_members_raise_nothing() {
        let a = h(7, 10, 3);
        let peers = [
            peer(2, 7, 10, 3),
            peer(3, 7, 9, 3),
            (4, Err(PeerHashError::FutureRevision)),
            (5, Err(PeerHashError::Unreachable("down".into()))),
        ];
        assert_eq!(periodic_verdict(1, a, a, &peers), None);
        assert!(initial_verdict(a, &peers).is_empty());
    }

    #[test]
    fn a_different_hash_at_the_same_compaction_names_the_member() {
        let a = h(7, 10, 3);
        let peers = [peer(2, 7, 10, 3), peer(3, 8, 10, 3), peer(4, 9, 10, 3)];
        // One alarm per check: the first mismatch.
        assert_eq!(periodic_verdict(1, a, a, &peers), Some(3));
        assert_eq!(initial_verdict(a, &peers), vec![3, 4]);
    }

    #[test]
    fn a_different_compaction_is_not_a_mismatch() {
        let a = h(7, 10, 3);
        let peers = [peer(2, 8, 10, 2)];
        assert_eq!(periodic_verdict(1, a, a, &peers), None);
        assert!(initial_verdict(a, &peers).is_empty());
    }

    #[test]
    fn a_follower_ahead_of_the_leader_is_corrupt() {
        let first = h(7, 10, 3);
        let second = h(9, 12, 3);
        assert_eq!(
            periodic_verdict(1, first, second, &[peer(2, 7, 13, 3)]),
            Some(2)
        );
        assert_eq!(
            periodic_verdict(1, first, second, &[peer(2, 5, 12, 4)]),
            Some(2)
        );
        // Writes between the two hashes move the leader: not a mismatch.
        assert_eq!(
            periodic_verdict(1, first, second, &[peer(2, 7, 12, 3)]),
            None
        );
    }

    #[test]
    fn the_leaders_own_hash_changing_under_it_names_the_leader() {
        let peers = [peer(2, 8, 10, 3)];
        assert_eq!(
            periodic_verdict(1, h(7, 10, 3), h(6, 10, 3), &peers),
            Some(1)
        );
    }
}
