//! ZooKeeper's system nodes (`/zookeeper`, `/zookeeper/quota`,
//! `/zookeeper/config`), served here and never stored (D1).
//!
//! They look as in a fresh standalone ZooKeeper: all-zero stats, empty data,
//! `/zookeeper/config` readable by anyone and writable by no one. The root
//! reports `zookeeper` among its children, so its numChildren is one more
//! than core's.

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

/// Adjusts a stat from core to what a ZooKeeper client sees: the root
/// counts its `zookeeper` child, in numChildren and so in the cversion
/// ZooKeeper derives from it (`2 * creates - numChildren`, see core's
/// `znode::tree`: one less than core's, -1 on a fresh root), and the
/// overloaded ephemeralOwner of
/// containers (`Long.MIN_VALUE`) and TTL nodes (`0xFF..`) reads as 0, as
/// ZooKeeper's `DataNode.copyStat` reports it (session ids are positive, so
/// a negative owner is never a session).
pub fn fix_stat(path: &str, mut s: Stat) -> Stat {
    if path == "/" {
        s.num_children += 1;
        s.cversion = s.cversion.wrapping_sub(1);
    }
    if s.ephemeral_owner < 0 {
        s.ephemeral_owner = 0;
    }
    s
}

/// Adds `zookeeper` to the root's children (kept sorted).
pub fn fix_children(path: &str, mut c: Vec<String>) -> Vec<String> {
    if path == "/" && !c.iter().any(|n| n == "zookeeper") {
        let at = c.partition_point(|n| n.as_str() < "zookeeper");
        c.insert(at, "zookeeper".to_string());
    }
    c
}

/// getAllChildrenNumber adjustment: ZooKeeper's root counts its three
/// system nodes (DataTree.getAllChildrenNumber).
pub fn extra_descendants(path: &str) -> i32 {
    match path {
        "/" => 3,
        _ => 0,
    }
}
