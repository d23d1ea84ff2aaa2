//! ZooKeeper's system nodes (`/zookeeper`, `/zookeeper/quota`,
//! `/zookeeper/config`), served here and never stored (D1).
//!
//! They look as in ZooKeeper 3.8: all-zero stats, empty data,
//! `/zookeeper/config` readable by anyone and writable by no one but the
//! superuser. That the root lists and counts `zookeeper` among its children
//! is core's to say (`janus_core::znode::SYSTEM_CHILD`), with every other
//! stat rule.
//!
//! `/zookeeper/config` holds the dynamic configuration of a ZooKeeper
//! ensemble: a one-member janus without `--zk-reconfig` looks like a
//! standalone ZooKeeper (empty data), anything else like a quorum, whose
//! config lists every member (voters as participants, learners as
//! observers) and ends with `version=<hex>`, the configuration's version
//! (core's raft index of the last membership change, the node's mzxid);
//! its mtime is when that change was proposed (core's `config_time_ms`).

use janus_core::znode::{perms, Acl, Id, Stat};
use janus_core::{Member, Node, ZkServer};

use crate::ZkConfig;

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

/// Data and stat of a system node. Stats as ZooKeeper 3.8 reports them,
/// quirks included: `/zookeeper` has cversion -2 and `/zookeeper/config`
/// aversion -1 (and version -1 once it holds a configuration), as observed
/// on Debian's 3.8.0 by the differential test and a 3-server ensemble.
pub fn read(node: &Node, cfg: &ZkConfig, path: &str) -> (Vec<u8>, Stat) {
    let mut s = Stat {
        num_children: children(path).len() as i32,
        ..Stat::default()
    };
    let mut data = Vec::new();
    match path {
        ZOOKEEPER => s.cversion = -2,
        CONFIG => {
            s.aversion = -1;
            if let Some((text, version)) = config(node, cfg) {
                data = text.into_bytes();
                s.mzxid = version as i64;
                s.mtime = node.config_time_ms();
                s.version = -1;
                s.data_length = data.len() as i32;
            }
        }
        _ => {}
    }
    (data, s)
}

pub fn stat(node: &Node, cfg: &ZkConfig, path: &str) -> Stat {
    read(node, cfg, path).1
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

/// Whether `/zookeeper/config` holds a configuration (else janus looks
/// like a standalone ZooKeeper, whose config never changes).
pub fn shows_config(node: &Node, cfg: &ZkConfig) -> bool {
    cfg.reconfig || node.members().len() > 1
}

/// The dynamic configuration and its version, or `None` where ZooKeeper
/// would be standalone.
pub fn config(node: &Node, cfg: &ZkConfig) -> Option<(String, u64)> {
    if !shows_config(node, cfg) {
        return None;
    }
    let members = node.members();
    let version = node.config_version();
    Some((render(&members, &node.zk_servers(), version), version))
}

/// ZooKeeper's `QuorumVerifier.toString()`: one `server.N=...` line per
/// member in the order of Java's `HashMap<Long, _>` (by bucket), then
/// `version=<hex>`.
pub fn render(
    members: &[Member],
    zk: &std::collections::BTreeMap<u64, ZkServer>,
    version: u64,
) -> String {
    let mut lines: Vec<(u64, String)> = members
        .iter()
        .map(|m| {
            let sid = server_id(m, zk);
            (
                sid,
                format!("server.{sid}={}", server_spec(m, zk.get(&m.id))),
            )
        })
        .collect();
    let mut table = 16usize;
    while lines.len() * 4 > table * 3 {
        table *= 2;
    }
    lines.sort_by_key(|(sid, _)| (java_long_bucket(*sid, table), *sid));
    let mut out = String::new();
    for (_, l) in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(&format!("version={version:x}"));
    out
}

/// A member's ZooKeeper server id: the one it published, else its member id.
pub fn server_id(m: &Member, zk: &std::collections::BTreeMap<u64, ZkServer>) -> u64 {
    zk.get(&m.id)
        .map(|z| z.server_id)
        .filter(|s| *s != 0)
        .unwrap_or(m.id)
}

/// `host:quorumport:electionport:role[;clientHost:clientPort]`; the
/// quorum address is the first peer URL's, the election port is the
/// published one or the peer port (janus elects over the peer port).
fn server_spec(m: &Member, zk: Option<&ZkServer>) -> String {
    let url = m.peer_urls.first().map(String::as_str).unwrap_or_default();
    let hostport = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = hostport.trim_end_matches('/');
    let port = hostport.rsplit_once(':').map_or("0", |(_, p)| p);
    let election = zk
        .map(|z| z.election_port)
        .filter(|p| *p != 0)
        .map_or_else(|| port.to_string(), |p| p.to_string());
    let role = if m.is_learner {
        "observer"
    } else {
        "participant"
    };
    let mut s = format!("{hostport}:{election}:{role}");
    if let Some(z) = zk.filter(|z| !z.client_addr.is_empty()) {
        s.push(';');
        s.push_str(&z.client_addr);
    }
    s
}

/// Bucket of a `Long` key in a Java `HashMap` of `table` buckets.
fn java_long_bucket(v: u64, table: usize) -> usize {
    let h = (v ^ (v >> 32)) as u32;
    ((h ^ (h >> 16)) as usize) & (table - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, learner: bool) -> Member {
        Member {
            id,
            name: String::new(),
            peer_urls: vec![url.into()],
            client_urls: Vec::new(),
            is_learner: learner,
        }
    }

    #[test]
    fn renders_as_quorum_verifier_to_string() {
        let members = vec![
            member(7, "http://localhost:41002", false),
            member(8, "http://0.0.0.0:5000", true),
            member(9, "http://localhost:41012", false),
        ];
        let mut zk = std::collections::BTreeMap::new();
        zk.insert(
            7,
            ZkServer {
                server_id: 1,
                election_port: 41001,
                client_addr: String::new(),
            },
        );
        zk.insert(
            8,
            ZkServer {
                server_id: 100,
                election_port: 5001,
                client_addr: "0.0.0.0:5002".into(),
            },
        );
        let text = render(&members, &zk, 0x1_0000_0002);
        assert_eq!(
            text,
            "server.1=localhost:41002:41001:participant\n\
             server.100=0.0.0.0:5000:5001:observer;0.0.0.0:5002\n\
             server.9=localhost:41012:41012:participant\n\
             version=100000002"
        );
    }
}
