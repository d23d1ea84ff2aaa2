//! The member: one raft node, its state machine and the handle frontends use.
//!
//! [`Node`] is cheap to clone and shared by every frontend task. Writes go
//! through [`Node::propose`] (one raft command each, D7); reads are served
//! from the local state machine, after [`Node::read_barrier`] when they must
//! be linearizable (D8).

use std::path::PathBuf;
use std::time::Duration;

use crate::command::{Applied, Command};
use crate::kv::{LeaseInfo, RangeRequest, RangeResponse};
use crate::watch::{Event, WatchRequest};
use crate::znode::{Acl, Id, Stat};
use crate::{CoreError, KvError, ZkError};

/// How to run a member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Directory of the member's fjall database.
    pub data_dir: PathBuf,
    /// Human name (etcd `--name`).
    pub name: String,
    /// Raft id of this member (etcd member id), never 0.
    pub member_id: u64,
    /// Cluster id reported in response headers.
    pub cluster_id: u64,
    /// Secret for ZooKeeper session passwords (same on every member).
    pub cluster_secret: Vec<u8>,
    /// Raft tick.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: usize,
    /// How long a proposer waits for its command to apply.
    pub request_timeout: Duration,
    /// How often the leader looks for empty containers and expired TTL nodes.
    pub reap_interval: Duration,
}

impl NodeConfig {
    /// A single member with janus defaults in `data_dir`.
    pub fn single(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            name: "default".into(),
            member_id: 1,
            cluster_id: 1,
            cluster_secret: b"janus".to_vec(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            request_timeout: Duration::from_secs(7),
            reap_interval: Duration::from_secs(1),
        }
    }
}

/// etcd's response header fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

/// What etcd's Maintenance.Status reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub header: Header,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub applied_index: u64,
    pub compact_revision: i64,
    pub db_size: i64,
}

/// A running member.
#[derive(Clone)]
pub struct Node {}

/// A watch subscription, see [`crate::watch`].
pub struct Watcher {}

impl Watcher {
    /// Waits for the next events (one or more revisions, in order).
    /// `Err(Compacted)` ends the watch.
    pub async fn next(&mut self) -> Result<Vec<Event>, KvError> {
        todo!()
    }
    /// Events already available, without waiting (`None` if none).
    pub fn try_next(&mut self) -> Option<Result<Vec<Event>, KvError>> {
        todo!()
    }
    /// If every event up to the store's current revision has been handed
    /// out, that revision (etcd progress notifications).
    pub fn progress_revision(&self) -> Option<i64> {
        todo!()
    }
}

impl Node {
    /// Opens the data dir, replays the log from the applied index and starts
    /// the raft loop.
    pub fn start(_cfg: NodeConfig) -> Result<Node, CoreError> {
        todo!()
    }
    /// Stops the raft loop after a final sync. Idempotent.
    pub fn stop(&self) {
        todo!()
    }
    /// Proposes a command and waits until it is applied on this member.
    pub async fn propose(&self, _cmd: Command) -> Result<Applied, CoreError> {
        todo!()
    }
    /// Returns once this member has applied everything committed when the
    /// call was made (raft ReadIndex): reads after it are linearizable.
    pub async fn read_barrier(&self) -> Result<(), CoreError> {
        todo!()
    }
    pub fn header(&self) -> Header {
        todo!()
    }
    pub fn status(&self) -> Status {
        todo!()
    }
    /// Current store revision.
    pub fn revision(&self) -> i64 {
        todo!()
    }
    /// Local read (see [`crate::kv`] for range conventions).
    pub fn range(&self, _req: &RangeRequest) -> Result<RangeResponse, KvError> {
        todo!()
    }
    pub fn watch(&self, _req: WatchRequest) -> Result<Watcher, KvError> {
        todo!()
    }
    /// Refreshes a lease; returns its TTL in seconds.
    pub fn lease_keepalive(&self, _id: i64) -> Result<i64, KvError> {
        todo!()
    }
    pub fn lease_time_to_live(&self, _id: i64, _keys: bool) -> Result<LeaseInfo, KvError> {
        todo!()
    }
    pub fn leases(&self) -> Vec<i64> {
        todo!()
    }
    /// Whether a lease (session) currently exists.
    pub fn lease_exists(&self, _id: i64) -> bool {
        todo!()
    }
    /// etcd HashKV: crc32 over the MVCC records up to `revision` (0 = current).
    /// Returns (hash, compact_revision, revision).
    pub fn hash_kv(&self, _revision: i64) -> Result<(u32, i64, i64), KvError> {
        todo!()
    }
    /// A consistent export of the member's state, in chunks (Maintenance.Snapshot).
    pub fn export_snapshot(&self) -> Result<Vec<Vec<u8>>, CoreError> {
        todo!()
    }
    /// Compacts the storage engine's files (etcd Defragment).
    pub fn defragment(&self) -> Result<(), CoreError> {
        todo!()
    }
    /// ZooKeeper session password: keyed MAC of the session id (D4).
    pub fn session_password(&self, _session: i64) -> [u8; 16] {
        todo!()
    }
    /// getData: data and stat, READ permission checked against `auth`.
    pub fn zk_get_data(&self, _path: &str, _auth: &[Id]) -> Result<(Vec<u8>, Stat), ZkError> {
        todo!()
    }
    /// exists: stat of an explicit or implicit node.
    pub fn zk_exists(&self, _path: &str) -> Option<Stat> {
        todo!()
    }
    /// getChildren: sorted child names and the node's stat, READ checked.
    pub fn zk_get_children(
        &self,
        _path: &str,
        _auth: &[Id],
    ) -> Result<(Vec<String>, Stat), ZkError> {
        todo!()
    }
    /// getAllChildrenNumber: number of descendants, READ checked.
    pub fn zk_all_children_number(&self, _path: &str, _auth: &[Id]) -> Result<i32, ZkError> {
        todo!()
    }
    /// getACL (no permission check, as ZooKeeper 3.8 does for getACL).
    pub fn zk_get_acl(&self, _path: &str) -> Result<(Vec<Acl>, Stat), ZkError> {
        todo!()
    }
    /// getEphemerals: paths owned by `session` starting with `prefix`.
    pub fn zk_ephemerals(&self, _session: i64, _prefix: &str) -> Vec<String> {
        todo!()
    }
}
