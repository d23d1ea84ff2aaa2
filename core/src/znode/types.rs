//! ZooKeeper-shaped values decided by core: stats, ACLs, create modes, ops.

use serde::{Deserialize, Serialize};

/// ZooKeeper's `Stat`, computed from MVCC and znode metadata as D3 says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// Permission bits (ZooDefs.Perms).
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// An identity: (scheme, id), e.g. ("digest", "user:base64(sha1)").
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    /// `world:anyone` with every permission (ZooDefs.Ids.OPEN_ACL_UNSAFE).
    pub fn open() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id::new("world", "anyone"),
        }]
    }
}

/// ZooKeeper CreateMode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateMode {
    Persistent,
    PersistentSequential,
    Ephemeral,
    EphemeralSequential,
    Container,
    PersistentWithTtl,
    PersistentSequentialWithTtl,
}

impl CreateMode {
    /// From ZooKeeper's integer flag (CreateMode.toFlag).
    pub fn from_flag(flag: i32) -> Option<CreateMode> {
        Some(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            _ => return None,
        })
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// One ZooKeeper write (alone or inside a multi). Versions are ZooKeeper
/// versions (-1 = any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkOp {
    /// `data: None` is ZooKeeper's null data (kept apart from empty data).
    Create {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        mode: CreateMode,
        ttl_ms: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    /// `data: None` is ZooKeeper's null data.
    SetData {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// An op the ZooKeeper frontend refused before the tree was looked at
    /// (its request checks: create flags and opcode, the TTL gate, the
    /// reserved `/zookeeper` subtree). Inside a multi it fails with `error`
    /// when reached, so an earlier op failing on the tree is reported
    /// first, as ZooKeeper's PrepRequestProcessor checks ops in order.
    Refused {
        error: crate::ZkError,
    },
}

/// Result of one successful [`ZkOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkOpResult {
    /// The created path (with its sequential suffix) and the new node's stat.
    Create {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    SetAcl {
        stat: Stat,
    },
    /// The checked node's stat (the standalone check opcode answers it).
    Check {
        stat: Stat,
    },
}

/// The answer to a ZooKeeper write command: for a single op, one entry; for
/// a multi, one entry per op. On failure, every entry is an error as
/// ZooKeeper reports it: the ops before the failing one are reported by the
/// frontend with error 0, see [`ZkWriteResult::Failed`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkWriteResult {
    /// Every op succeeded, in order; all at one revision.
    Applied(Vec<ZkOpResult>),
    /// Op number `index` failed with `error`; nothing was changed.
    Failed { index: usize, error: crate::ZkError },
}
