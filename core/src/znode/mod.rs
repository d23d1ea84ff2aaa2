//! ZooKeeper tree semantics kept by core (D1–D5): the children index with
//! cversion/pzxid, implicit parents, stats, ACLs, and ZooKeeper writes
//! decided at apply time.
pub mod acl;
mod apply;
pub mod fifo;
mod meta;
pub mod path;
mod read;
mod tree;
mod types;
pub mod x509;

pub use meta::{NodeKind, ZMeta};
pub use read::SYSTEM_CHILD;
pub use tree::{Tree, TreeNode};
pub use types::*;
