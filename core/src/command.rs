//! Commands: every mutation of janus is one [`Command`] in the raft log (D7).
//!
//! A command is validated and applied deterministically by the state machine
//! on every member; its [`CommandResult`] (including etcd errors and
//! ZooKeeper error codes) is computed at apply time and handed back to the
//! member that proposed it. Anything non-deterministic (wall-clock time, ids)
//! is chosen by the proposer and carried inside the command.

use serde::{Deserialize, Serialize};

use crate::kv::{
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, PutRequest, PutResponse,
    TxnRequest, TxnResponse,
};
use crate::znode::{Id, ZkOp, ZkWriteResult};
use crate::KvError;

/// One mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Drop history below `revision`.
    Compact {
        revision: i64,
    },
    /// Grant a lease (= open a ZooKeeper session). `id` is never 0 here: the
    /// proposer picks a positive id when the client asked for none.
    LeaseGrant {
        id: i64,
        ttl_ms: i64,
    },
    /// Revoke a lease (= close or expire a session): deletes attached keys
    /// in one revision.
    LeaseRevoke {
        id: i64,
    },
    /// ZooKeeper writes: one op, or a multi (all or nothing, one revision).
    /// `session` is the requesting session (0 for none); `auth` the
    /// identities the connection authenticated as (checked against ACLs at
    /// apply time).
    /// `seq` (when not 0) is the write's number on connection `conn` of the
    /// session: it must directly follow the last one applied from that
    /// connection (1 for its first), or the command is refused with
    /// `ZkError::OutOfOrder`, so a pipelined write is never applied after a
    /// lost earlier write of the same connection (ZooKeeper's FIFO client
    /// order; see [`crate::znode::fifo`]).
    Zk {
        session: i64,
        auth: Vec<Id>,
        ops: Vec<ZkOp>,
        multi: bool,
        conn: u64,
        seq: u64,
    },
    /// Leader housekeeping: delete `path` if it is (still) an empty container
    /// that once had children, or a TTL node idle for longer than its TTL.
    ZkReap {
        path: String,
    },
    /// Changes a member's published attributes (client URLs, name) or its
    /// peer URLs (etcd MemberUpdate); `None` fields are kept.
    MemberUpdate {
        id: u64,
        name: Option<String>,
        client_urls: Option<Vec<String>>,
        peer_urls: Option<Vec<String>>,
    },
    /// An etcd write (`Put`, `DeleteRange`, `Txn`, `LeaseRevoke`) checked
    /// against the auth store for `caller` at apply time (etcd's raft
    /// request header with `Username`/`AuthRevision`, D14).
    As {
        caller: crate::auth::Caller,
        command: Box<Command>,
    },
    /// A change of the etcd auth store from `caller`.
    Auth {
        caller: crate::auth::Caller,
        op: crate::auth::AuthOp,
    },
    /// A step of a migration into janus ([`crate::import`]).
    Import(crate::import::ImportOp),
    /// Raise (`activate`) or clear an alarm (etcd's AlarmRequest through
    /// raft; [`crate::alarm`]).
    Alarm {
        activate: bool,
        alarm: crate::alarm::Alarm,
    },
    /// No state change; used to probe the log (tests, barriers).
    Noop,
    /// How member `id` appears in ZooKeeper's dynamic configuration: its
    /// own at startup, or the one a ZooKeeper reconfig gave it. (Last, so
    /// the earlier variants keep their encoding.)
    ZkServer {
        id: u64,
        server: crate::members::ZkServer,
    },
    /// A new configuration version with the same members: ZooKeeper
    /// commits a reconfig that changes nothing as a new config. (Last, so
    /// the earlier variants keep their encoding.)
    ConfigTouch,
}

/// The state machine's answer to one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Put(Result<PutResponse, KvError>),
    DeleteRange(Result<DeleteRangeResponse, KvError>),
    Txn(Result<TxnResponse, KvError>),
    Compact(Result<(), KvError>),
    LeaseGrant(Result<LeaseGrantResponse, KvError>),
    LeaseRevoke(Result<(), KvError>),
    Zk(ZkWriteResult),
    /// ZkReap: whether the node was removed.
    Reaped(bool),
    /// MemberUpdate: whether the member exists.
    MemberUpdate(bool),
    Auth(Result<crate::auth::AuthReply, crate::auth::AuthError>),
    Import(Result<crate::import::ImportReply, crate::import::ImportError>),
    /// Alarm: the alarms the command raised or cleared.
    Alarm(Vec<crate::alarm::Alarm>),
    Noop,
    /// ZkServer: whether the member exists.
    ZkServer(bool),
}

/// What the proposer wants applied, as stored in a raft entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Member that proposed it (only that member answers a client).
    pub proposer: u64,
    /// Chosen at random when the proposer started: with `request_id` it
    /// names the proposal uniquely across restarts, so a copy committed
    /// twice applies once ([`crate::dedup`]).
    pub epoch: u64,
    /// Counts up from 1 within one boot of the proposer; finds the waiting
    /// client.
    pub request_id: u64,
    /// Proposer's wall clock in milliseconds: ctime/mtime and TTL checks.
    pub now_ms: i64,
    pub command: Command,
}

/// A command's result together with the store revision after it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Store revision after the command (unchanged if it wrote nothing).
    pub revision: i64,
    pub result: CommandResult,
}
