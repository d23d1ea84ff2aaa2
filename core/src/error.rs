//! Errors of janus-core.
//!
//! Two kinds of failure are kept apart on purpose:
//! - [`CoreError`]: the node itself failed or refused (storage, corrupt files,
//!   shutdown, timeout). The request may or may not have been applied.
//! - Apply-time outcomes ([`KvError`], [`ZkError`]): deterministic answers of
//!   the state machine, identical on every member, which frontends translate
//!   into wire codes in exactly one place each.

use std::path::PathBuf;

/// A failure of the node, not an answer of the state machine.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The storage engine reported an I/O or format error.
    #[error("storage error in {path}: {message}")]
    Storage { path: PathBuf, message: String },
    /// A stored record could not be decoded: the data dir is corrupt.
    #[error("corrupt data in {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    /// The raft library refused an operation.
    #[error("raft: {0}")]
    Raft(String),
    /// The node is shutting down or its raft loop has stopped.
    #[error("node stopped")]
    Stopped,
    /// The request was not applied in time; it may still be applied later.
    #[error("request timed out")]
    Timeout,
    /// This member is not the leader and cannot serve the request itself.
    #[error("not leader")]
    NotLeader,
    /// This member was removed from the cluster.
    #[error("the member has been permanently removed from the cluster")]
    Removed,
    /// A membership request was refused.
    #[error("{0}")]
    Membership(MembershipError),
    /// A command could not be encoded (a bug, never caused by input).
    #[error("encoding: {0}")]
    Encoding(String),
}

/// Why a membership change was refused (etcd's membership errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("member not found")]
    NotFound,
    #[error("can only promote a learner member")]
    NotLearner,
    /// A reconfiguration asked for a configuration version that is not
    /// the current one.
    #[error("reconfiguration from version {asked:#x} failed -- current version is {current:#x}")]
    BadConfigVersion { asked: u64, current: u64 },
    /// The new configuration would have fewer voters than asked for.
    #[error("new configuration must include at least {0} voters")]
    TooFewVoters(usize),
    /// The voters of the new configuration that are members already do not
    /// form a majority of it, so it could not commit anything.
    #[error("there must be a connected quorum in the new configuration")]
    NoQuorum,
}

/// Apply-time and read-time errors of the etcd-shaped KV, lease and watch API.
///
/// The etcd frontend maps each to a gRPC status and the exact
/// `etcdserver: ...` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum KvError {
    /// `mvcc: required revision has been compacted`
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// `mvcc: required revision is a future revision`
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// `key not found` (put with ignore_value/ignore_lease on a missing key)
    #[error("key not found")]
    KeyNotFound,
    /// `requested lease not found`
    #[error("requested lease not found")]
    LeaseNotFound,
    /// `lease already exists`
    #[error("lease already exists")]
    LeaseExists,
    /// `too large lease TTL`
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// `key is not provided`
    #[error("key is not provided")]
    EmptyKey,
    /// `value is provided` (put with ignore_value and a value)
    #[error("value is provided")]
    ValueProvided,
    /// `lease is provided` (put with ignore_lease and a lease)
    #[error("lease is provided")]
    LeaseProvided,
    /// `duplicate key given in txn request`
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// `too many operations in txn request`
    #[error("too many operations in txn request")]
    TooManyOps,
    /// `mvcc: database space exceeded` / quota.
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// A migration into janus holds the store: client writes wait for its
    /// end ([`crate::import`]).
    #[error("migration in progress: writes are refused until it ends")]
    MigrationInProgress,
    /// `etcdserver: corrupt cluster`: a CORRUPT alarm is raised.
    #[error("corrupt cluster")]
    Corrupt,
    /// Refused by the etcd auth store (permission, credentials).
    #[error("{0}")]
    Auth(crate::auth::AuthError),
    /// The member could not serve the request (storage failure, stopped,
    /// timeout); the text says why.
    #[error("{0}")]
    Internal(String),
}

impl From<CoreError> for KvError {
    fn from(e: CoreError) -> Self {
        KvError::Internal(e.to_string())
    }
}

/// ZooKeeper outcomes decided by core (KeeperException codes by name).
///
/// The ZooKeeper frontend owns the mapping to integer codes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum ZkError {
    #[error("NoNode")]
    NoNode,
    #[error("NodeExists")]
    NodeExists,
    #[error("BadVersion")]
    BadVersion,
    #[error("NotEmpty")]
    NotEmpty,
    #[error("NoChildrenForEphemerals")]
    NoChildrenForEphemerals,
    #[error("NoAuth")]
    NoAuth,
    #[error("InvalidACL")]
    InvalidAcl,
    #[error("BadArguments")]
    BadArguments,
    /// An op of a failed multi after the failing op.
    #[error("RuntimeInconsistency")]
    RuntimeInconsistency,
    /// The session (lease) named by an ephemeral create no longer exists.
    #[error("SessionExpired")]
    SessionExpired,
    #[error("Unimplemented")]
    Unimplemented,
    /// A sequenced write came after a gap in its session's sequence (an
    /// earlier write of the session was lost): refused, nothing changed.
    /// The frontend drops the connection (the client sees ConnectionLoss).
    #[error("OutOfOrder")]
    OutOfOrder,
    /// A migration into janus holds the store ([`crate::import`]); the
    /// frontend answers as a read-only ZooKeeper server does.
    #[error("MigrationInProgress")]
    MigrationInProgress,
    /// A write that grows the store under the NOSPACE alarm (ZooKeeper
    /// 3.7+'s hard-quota code, see [`crate::alarm`]).
    #[error("QuotaExceeded")]
    QuotaExceeded,
    /// A write under the CORRUPT alarm.
    #[error("SystemError")]
    SystemError,
}

impl CoreError {
    pub(crate) fn storage(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        CoreError::Storage {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
