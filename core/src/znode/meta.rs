//! Per-znode metadata that etcd keys do not have: ACL, aversion, node kind.
//!
//! Stored in the `znodes` keyspace only when it differs from the default
//! (open ACL, aversion 0, ordinary node), so etcd-written keys and typical
//! ZooKeeper nodes cost nothing. Removed when the key is deleted.

use serde::{Deserialize, Serialize};

use super::Acl;

/// What kind of persistent node a znode is (ephemerals are told by their
/// lease, not here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    #[default]
    Normal,
    /// Removed by the leader once its last child is gone.
    Container,
    /// Removed by the leader when it has no children and was not modified
    /// for this many milliseconds.
    Ttl(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZMeta {
    pub acl: Vec<Acl>,
    pub aversion: i32,
    pub kind: NodeKind,
}

impl Default for ZMeta {
    fn default() -> Self {
        ZMeta {
            acl: Acl::open(),
            aversion: 0,
            kind: NodeKind::Normal,
        }
    }
}

impl ZMeta {
    pub fn is_default(&self) -> bool {
        *self == ZMeta::default()
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<ZMeta, postcard::Error> {
        postcard::from_bytes(b)
    }

    /// The ephemeralOwner a client sees for a node with this metadata and
    /// lease: the session (lease) id, or 0. ZooKeeper stores containers
    /// with `Long.MIN_VALUE` and TTL nodes with `0xFF00000000000000 | ttl`
    /// in that field but reports 0 for both (3.8, differential tests), so
    /// the markers never leave core.
    pub fn ephemeral_owner(&self, lease: i64) -> i64 {
        match self.kind {
            NodeKind::Container | NodeKind::Ttl(_) => 0,
            NodeKind::Normal => lease,
        }
    }
}
