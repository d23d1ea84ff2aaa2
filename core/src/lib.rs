//! janus-core: the replicated, revisioned store behind both protocols.
//!
//! - [`node::Node`]: a member (raft loop, proposals, reads, leases, watches).
//! - [`command`]: the commands of the raft log and their results (D7).
//! - [`state`]: the deterministic state machine; [`mvcc`], [`lease`] and
//!   [`znode`] hold its etcd, lease and ZooKeeper rules.
//! - [`watch`]: the watch hub (D6).
//! - [`engine`]: every fjall call (D10); [`wal`]: the write-ahead log;
//!   [`raft_log`]: raft-rs storage on the WAL.
pub mod auth;
pub mod checkpoint;
pub mod command;
pub mod compactor;
pub mod dedup;
pub mod disk_usage;
pub mod engine;
mod error;
pub mod health;
pub mod kv;
pub mod lease;
pub mod members;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod peer;
pub mod raft_log;
pub mod snapshot;
pub mod state;
pub mod transport;
pub mod wal;
pub mod watch;
pub mod znode;

/// Test support: a deterministic, seeded in-process cluster (see the module).
#[doc(hidden)]
pub use node::sim;

pub use command::{Applied, Command, CommandResult, Proposal};
pub use error::{CoreError, KvError, MembershipError, ZkError};
pub use members::Member;
pub use node::{Header, Node, NodeConfig, Status};
pub use watch::{Event, EventKind, WatchRequest, Watcher};

/// A fresh positive id for a lease or session (D4: ids stay positive).
pub fn new_lease_id() -> i64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1..i64::MAX)
}
