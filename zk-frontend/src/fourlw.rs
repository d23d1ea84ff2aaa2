//! Four-letter words on the client port (ruok, srvr, stat, mntr, cons,
//! wchs, envi, conf, isro, dump): plain-text answers shaped like ZooKeeper
//! 3.8's, after which the connection closes.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::shared::Shared;

pub const WORDS: [&str; 10] = [
    "ruok", "srvr", "stat", "mntr", "cons", "wchs", "envi", "conf", "isro", "dump",
];

/// The ZooKeeper release janus answers exactly as (the differential tests
/// run against it): tools that parse the version pick their feature set
/// from it, so it must not claim a later release.
pub const ZK_VERSION: &str = "3.8.0";

/// Reported where ZooKeeper reports its own, in the shape of its
/// `Version.getFullVersion()` (`3.8.0-<commit>, built on <date> UTC`), with
/// `janus` where ZooKeeper has its commit id.
pub const VERSION: &str = "3.8.0-janus, built on 2025-01-01 00:00 UTC";

/// janus's own version, in a field of its own after ZooKeeper's (srvr's and
/// stat's `Janus version:` line, mntr's `janus_version`, envi's
/// `server.implementation`).
pub const JANUS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The word spelled by the first four bytes of a connection, if any.
pub fn parse(first: &[u8; 4]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == first)
}

/// Known znodes: every descendant of the root as core counts them (the
/// three system nodes included) plus the root, counted twice as ZooKeeper
/// does (its `Node count` for an empty tree is 5).
fn node_count(shared: &Shared) -> i64 {
    shared
        .node
        .zk_all_children_number("/", &[])
        .map(|n| n as i64)
        .unwrap_or(0)
        + 2
}

/// The live numbers `mntr` and `/metrics` both report, computed once.
struct Stats {
    connections: usize,
    watches: usize,
    znodes: i64,
    ephemerals: usize,
    received: u64,
    sent: u64,
    latency: crate::latency::Reading,
}

fn stats(shared: &Shared) -> Stats {
    let conns = shared.registry.snapshot();
    let mut sessions: Vec<i64> = conns.iter().map(|c| c.session).collect();
    sessions.sort();
    sessions.dedup();
    Stats {
        connections: conns.len(),
        watches: conns.iter().map(|c| c.watches.len()).sum(),
        znodes: node_count(shared),
        ephemerals: sessions
            .iter()
            .map(|&s| shared.node.zk_ephemerals(s, "/").len())
            .sum(),
        received: shared.received.load(Ordering::Relaxed),
        sent: shared.sent.load(Ordering::Relaxed),
        latency: shared.latency.read(),
    }
}

/// Exports [`stats`] under ZooKeeper's `mntr` names prefixed `janus_zk_`
/// (ZooKeeper's own Prometheus names have no prefix, which would collide
/// with nothing but say nothing of where they come from).
pub fn register_metrics(shared: &Arc<Shared>) {
    let c = ZkCollector(Arc::downgrade(shared));
    janus_core::metrics::register(|r| r.register_collector(Box::new(c)));
}

struct ZkCollector(Weak<Shared>);

impl std::fmt::Debug for ZkCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZkCollector")
    }
}

impl Collector for ZkCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The endpoint stopped: nothing to report.
        let Some(shared) = self.0.upgrade() else {
            return Ok(());
        };
        let st = stats(&shared);
        let gauges: [(&str, &str, i64); 4] = [
            (
                "janus_zk_num_alive_connections",
                "Open ZooKeeper client connections.",
                st.connections as i64,
            ),
            (
                "janus_zk_watch_count",
                "Watches set by ZooKeeper clients.",
                st.watches as i64,
            ),
            ("janus_zk_znode_count", "Znodes in the tree.", st.znodes),
            (
                "janus_zk_ephemerals_count",
                "Ephemeral znodes of connected sessions.",
                st.ephemerals as i64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let l = st.latency;
        for (name, help, v) in [
            (
                "janus_zk_min_latency",
                "Smallest ZooKeeper request latency since start, in ms.",
                l.min_ms as f64,
            ),
            (
                "janus_zk_avg_latency",
                "Mean ZooKeeper request latency since start, in ms.",
                l.avg_ms,
            ),
            (
                "janus_zk_max_latency",
                "Largest ZooKeeper request latency since start, in ms.",
                l.max_ms as f64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let c = ConstCounter::new(l.count);
        c.encode(e.encode_descriptor(
            "janus_zk_requests",
            "ZooKeeper requests answered (the latency figures' count).",
            None,
            c.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "janus_zk_packets_received",
                "ZooKeeper requests received.",
                st.received,
            ),
            ("janus_zk_packets_sent", "ZooKeeper replies sent.", st.sent),
        ] {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// ZooKeeper's name for this member's state (`Mode:` in srvr,
/// `zk_server_state` in mntr), from core's role: `standalone` where
/// ZooKeeper would be standalone (the same rule as an empty
/// `/zookeeper/config`), otherwise `leader`, `follower` or `observer` (a
/// learner); `read-only` while serving read-only sessions without a
/// leader; `None` when not serving at all.
fn server_state(shared: &Shared) -> Option<&'static str> {
    use janus_core::health::{role, Role};
    let standalone = crate::cmd::system::config(&shared.node, &shared.cfg).is_none();
    Some(match role(&shared.node) {
        Role::NoLeader if shared.cfg.read_only => "read-only",
        Role::NoLeader => return None,
        Role::Leader if standalone => "standalone",
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Learner => "observer",
    })
}

/// ZooKeeper's answer to srvr, stat and mntr while not serving.
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

fn srvr_body(shared: &Shared, out: &mut String) {
    let conns = shared.registry.snapshot();
    let _ = writeln!(out, "Zookeeper version: {VERSION}");
    let l = shared.latency.read();
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{:.4}/{}",
        l.min_ms, l.avg_ms, l.max_ms
    );
    let _ = writeln!(out, "Received: {}", shared.received.load(Ordering::Relaxed));
    let _ = writeln!(out, "Sent: {}", shared.sent.load(Ordering::Relaxed));
    let _ = writeln!(out, "Connections: {}", conns.len());
    let _ = writeln!(out, "Outstanding: 0");
    let _ = writeln!(out, "Zxid: 0x{:x}", shared.node.revision());
    let _ = writeln!(
        out,
        "Mode: {}",
        server_state(shared).unwrap_or("standalone")
    );
    let _ = writeln!(out, "Node count: {}", node_count(shared));
    let _ = writeln!(out, "Janus version: {JANUS_VERSION}");
}

fn cons_line(c: &crate::session::ConnInfo, out: &mut String) {
    let _ = writeln!(
        out,
        " /{}[1](queued=0,recved={},sent={},sid=0x{:x},lop=NA,est=0,to={},lzxid=0x{:x},lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)",
        c.peer, c.received, c.sent, c.session, c.timeout_ms, c.last_zxid
    );
}

/// The text answer to `word`.
pub fn answer(shared: &Shared, word: &str) -> String {
    let mut out = String::new();
    if matches!(word, "srvr" | "stat" | "mntr") && server_state(shared).is_none() {
        return NOT_SERVING.to_string();
    }
    match word {
        // Liveness, as etcd's /livez: the process answers.
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str(crate::read_only::isro(&shared.node, &shared.cfg)),
        "srvr" => srvr_body(shared, &mut out),
        "stat" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}");
            let _ = writeln!(out, "Clients:");
            for c in shared.registry.snapshot() {
                cons_line(&c, &mut out);
            }
            out.push('\n');
            let mut body = String::new();
            srvr_body(shared, &mut body);
            // srvr's first line was already written above.
            out.push_str(body.split_once('\n').map(|x| x.1).unwrap_or(""));
        }
        "cons" => {
            for c in shared.registry.snapshot() {
                cons_line(&c, &mut out);
            }
            out.push('\n');
        }
        "wchs" => {
            let conns = shared.registry.snapshot();
            let watching = conns.iter().filter(|c| !c.watches.is_empty()).count();
            let mut paths: Vec<&String> = conns.iter().flat_map(|c| c.watches.iter()).collect();
            let total = paths.len();
            paths.sort();
            paths.dedup();
            let _ = writeln!(out, "{watching} connections watching {} paths", paths.len());
            let _ = writeln!(out, "Total watches:{total}");
        }
        "mntr" => {
            let st = stats(shared);
            let rows: Vec<(&str, String)> = vec![
                ("zk_version", VERSION.to_string()),
                (
                    "zk_server_state",
                    server_state(shared).unwrap_or("standalone").into(),
                ),
                ("zk_avg_latency", format!("{:.4}", st.latency.avg_ms)),
                ("zk_max_latency", st.latency.max_ms.to_string()),
                ("zk_min_latency", st.latency.min_ms.to_string()),
                ("zk_packets_received", st.received.to_string()),
                ("zk_packets_sent", st.sent.to_string()),
                ("zk_num_alive_connections", st.connections.to_string()),
                ("zk_outstanding_requests", "0".into()),
                ("zk_znode_count", st.znodes.to_string()),
                ("zk_watch_count", st.watches.to_string()),
                ("zk_ephemerals_count", st.ephemerals.to_string()),
                ("zk_approximate_data_size", "0".into()),
                (
                    "zk_uptime",
                    shared.started.elapsed().as_millis().to_string(),
                ),
                ("janus_version", JANUS_VERSION.to_string()),
            ];
            for (k, v) in rows {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        "envi" => {
            let _ = writeln!(out, "Environment:");
            let _ = writeln!(out, "zookeeper.version={VERSION}");
            let _ = writeln!(out, "host.name={}", shared.cfg.listen.ip());
            let _ = writeln!(out, "server.implementation=janus {JANUS_VERSION}");
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
        }
        "conf" => {
            let c = &shared.cfg;
            let _ = writeln!(out, "clientPort={}", c.listen.port());
            let _ = writeln!(out, "clientPortAddress={}", c.listen.ip());
            let _ = writeln!(out, "tickTime={}", c.tick_ms);
            let _ = writeln!(out, "maxClientCnxns={}", c.max_connections);
            let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
            let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
            let _ = writeln!(out, "jute.maxbuffer={}", c.max_frame_bytes);
            let _ = writeln!(out, "serverId=0");
        }
        "dump" => {
            let conns = shared.registry.snapshot();
            let mut sessions: Vec<i64> = conns.iter().map(|c| c.session).collect();
            sessions.sort();
            sessions.dedup();
            let _ = writeln!(out, "SessionTracker dump:");
            let _ = writeln!(out, "Session Sets ({}):", sessions.len());
            for s in &sessions {
                let _ = writeln!(out, "\t0x{s:x}");
            }
            let _ = writeln!(out, "ephemeral nodes dump:");
            let with: Vec<(i64, Vec<String>)> = sessions
                .iter()
                .map(|&s| (s, shared.node.zk_ephemerals(s, "/")))
                .filter(|(_, e)| !e.is_empty())
                .collect();
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", with.len());
            for (s, eph) in with {
                let _ = writeln!(out, "0x{s:x}:");
                for p in eph {
                    let _ = writeln!(out, "\t{p}");
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_recognised_and_lengths_are_not() {
        assert_eq!(parse(b"ruok"), Some("ruok"));
        assert_eq!(parse(b"mntr"), Some("mntr"));
        assert_eq!(parse(&[0, 0, 0, 45]), None);
        assert_eq!(parse(b"kill"), None);
    }
}
