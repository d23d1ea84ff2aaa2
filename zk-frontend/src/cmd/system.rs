//! ZooKeeper's system nodes (`/zookeeper`, `/zookeeper/quota`,
//! `/zookeeper/config`), served here and never stored (D1).
//!
//! They look as in a fresh standalone ZooKeeper: all-zero stats, empty data,
//! `/zookeeper/config` readable by anyone and writable by no one. That the
//! root lists and counts `zookeeper` among its children is core's to say
//! (`janus_core::znode::SYSTEM_CHILD`), with every other stat rule.

use janus_core::znode::{perms, Acl, Id, Stat};

pub const ZOOKEEPER: &str = "/zookeeper";
pub const QUOTA: &str = "/zookeeper/quota";
pub const CONFIG: &str = "/zookeeper/config";

/// Whether `path` is one of the system nodes.
pub fn is_system(path: &str) -> bool {
    matches!(path, ZOOKEEPER | QUOTA | CONFIG)
}

/// Whether a write to `path` touches the reserved `/zookeeper` subtree.
pub fn is_reserved(path: &str) -> bool {
    path == ZOOKEEPER || path.starts_with("/zookeeper/")
}

/// Stats as a fresh ZooKeeper 3.8 reports them, quirks included:
/// `/zookeeper` has cversion -2 and `/zookeeper/config` aversion -1 (both
/// observed on Debian's 3.8.0 by the differential test).
pub fn stat(path: &str) -> Stat {
    let mut s = Stat {
        num_children: children(path).len() as i32,
        ..Stat::default()
    };
    match path {
        ZOOKEEPER => s.cversion = -2,
        CONFIG => s.aversion = -1,
        _ => {}
    }
    s
}

pub fn children(path: &str) -> Vec<String> {
    if path == ZOOKEEPER {
        vec!["config".to_string(), "quota".to_string()]
    } else {
        Vec::new()
    }
}

pub fn acl(path: &str) -> Vec<Acl> {
    if path == CONFIG {
        vec![Acl {
            perms: perms::READ,
            id: Id::new("world", "anyone"),
        }]
    } else {
        Acl::open()
    }
}
