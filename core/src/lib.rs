//! janus-core: the replicated, revisioned store behind both protocols.
//!
//! # Public surface
//!
//! What the frontends, the binary and core's own integration tests use, and
//! nothing more:
//!
//! - [`Node`] (with [`NodeConfig`], [`Header`], [`Status`]): a member: raft
//!   loop, proposals, reads, leases, watches. Start here; `examples/` runs
//!   one member and a three-member cluster in process.
//! - [`Command`], [`Applied`], [`CommandResult`]: the commands of the raft log
//!   and their results (D7).
//! - [`kv`], [`znode`], [`auth`]: the request and answer types of the etcd
//!   keyspace, the ZooKeeper tree and etcd auth, with the checks a frontend
//!   runs before proposing.
//! - [`watch`] ([`WatchRequest`], [`Watcher`], [`Event`]): the watch hub (D6).
//! - [`alarm`]: NOSPACE and CORRUPT, the quota rule.
//! - [`backup`]: consistent copies of a member's state and restores into
//!   a new data dir (the etcd frontend gives them etcd's file format).
//! - [`Member`], [`members`], [`health`], [`metrics`], [`compactor`]: cluster
//!   membership, health and metrics endpoints, periodic compaction.
//! - [`tls`], [`PeerTls`]: certificates of every TLS port (loading, auto TLS,
//!   reload on change) and the peer transport's TLS.
//! - [`sockets`]: how every listener and outgoing peer connection is opened
//!   (`SO_REUSEADDR`, so a killed member restarts at once on its ports).
//! - [`engine`], [`wal`], [`checkpoint`]: storage (every fjall call, D10; the
//!   write-ahead log; the durable-checkpoint file), public for the crash,
//!   power-cut and bad-input tests that open them directly.
//!
//! Crate-private: the state machine (`state`, with `mvcc` and `lease`), the
//! command encoding (`command`), raft storage (`raft_log`), snapshots, peer
//! transport and disk accounting.
//!
//! # Features
//!
//! - `sim`: `janus_core::sim`, a deterministic, seeded in-process cluster for
//!   fault tests, and `janus_core::state` for tests of apply itself. It is
//!   test support, so the library the binary links leaves it out; core's
//!   dev-dependency on itself turns it on for core's tests.
pub mod alarm;
pub mod auth;
pub mod backup;
pub mod checkpoint;
pub(crate) mod command;
pub mod compactor;
pub mod corrupt_check;
pub(crate) mod dedup;
pub(crate) mod disk_usage;
pub mod engine;
mod error;
pub mod health;
pub mod import;
pub mod kv;
pub(crate) mod lease;
pub(crate) mod lease_forward;
pub mod members;
pub mod metrics;
pub(crate) mod mvcc;
pub(crate) mod node;
pub(crate) mod peer;
pub(crate) mod raft_log;
/// The snapshot stream format is crate-private; the `sim` feature (test
/// support) opens it to the fuzz target of its parser.
#[cfg(feature = "sim")]
pub mod snapshot;
#[cfg(not(feature = "sim"))]
pub(crate) mod snapshot;
pub mod sockets;
/// The state machine is crate-private; the `sim` feature (test support)
/// opens it to core's integration tests of apply itself.
#[cfg(feature = "sim")]
pub mod state;
#[cfg(not(feature = "sim"))]
pub(crate) mod state;
pub mod tls;
pub(crate) mod transport;
pub mod wal;
pub mod watch;
pub mod znode;

/// Test support: a deterministic, seeded in-process cluster (feature `sim`).
#[cfg(feature = "sim")]
pub use node::sim;

pub use command::{Applied, Command, CommandResult, Proposal};
pub use error::{CoreError, KvError, MembershipError, ZkError};
pub use members::{Member, ZkServer};
pub use node::{
    HashKv, Header, Joining, Node, NodeConfig, ReconfigPlan, ReconfigRequest, Status,
    DEFAULT_QUOTA_BYTES,
};
pub use peer::PeerTls;
pub use watch::{Event, EventKind, WatchRequest, Watcher};

/// A fresh positive id for a lease or session (D4: ids stay positive).
pub fn new_lease_id() -> i64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1..i64::MAX)
}
