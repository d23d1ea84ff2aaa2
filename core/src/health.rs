//! Whether a member is alive and whether it is ready, decided once for
//! both protocols: etcd's `/livez` and `/readyz` (etcd 3.5) and
//! ZooKeeper's `ruok` / `isro` ask these.
//!
//! - Alive: the member serves local (serializable) reads.
//! - Ready: additionally it can serve linearizable reads, which needs a
//!   known leader and a ReadIndex round through it; a learner is never
//!   ready (etcd refuses linearizable reads on learners while they catch
//!   up). The CORRUPT alarm check reads core's replicated alarms
//!   ([`crate::alarm`]).

use std::time::Duration;

use crate::kv::RangeRequest;
use crate::Node;

/// Longest a readiness check waits for the ReadIndex round.
pub const READ_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A local read of one key (etcd's `serializable_read` check).
pub fn serializable_read(node: &Node) -> Result<(), String> {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        limit: 1,
        serializable: true,
        keys_only: true,
        ..RangeRequest::default()
    };
    node.range(&req).map(|_| ()).map_err(|e| e.to_string())
}

/// A linearizable read (etcd's `linearizable_read` check), failing fast
/// without a leader or on a learner, with etcd's error texts.
pub async fn linearizable_read(node: &Node) -> Result<(), String> {
    if is_learner(node) {
        return Err("etcdserver: rpc not supported for learner".into());
    }
    if node.leader() == 0 {
        return Err("etcdserver: no leader".into());
    }
    match tokio::time::timeout(READ_CHECK_TIMEOUT, node.read_barrier()).await {
        Ok(Ok(())) => serializable_read(node),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcdserver: request timed out".into()),
    }
}

/// Whether this member serves reads and writes now (a leader is known and
/// it is a voter): ZooKeeper's "serving" state.
pub fn serving(node: &Node) -> bool {
    node.leader() != 0 && !is_learner(node)
}

/// This member's part in the raft group now, as both protocols report it
/// (ZooKeeper's four-letter words name it `Mode:` / `zk_server_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It is the leader.
    Leader,
    /// A voter that knows the leader.
    Follower,
    /// A learner (non-voting member) that knows the leader: ZooKeeper's
    /// observer.
    Learner,
    /// No leader is known (an election, or cut off from the majority).
    NoLeader,
}

/// The member's [`Role`]: leader if raft says so, else by whether a
/// leader is known and whether the member is a learner.
pub fn role(node: &Node) -> Role {
    if node.is_leader() {
        Role::Leader
    } else if node.leader() == 0 {
        Role::NoLeader
    } else if is_learner(node) {
        Role::Learner
    } else {
        Role::Follower
    }
}

fn is_learner(node: &Node) -> bool {
    let me = node.member_id();
    node.members().iter().any(|m| m.id == me && m.is_learner)
}
