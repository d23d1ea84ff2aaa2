//! Prometheus metrics of the process: one registry, filled by core (member
//! state, process), the etcd frontend (gRPC requests) and the ZooKeeper
//! frontend (connections, watches), and served as Prometheus text by the
//! etcd frontend on `/metrics` (and `--listen-metrics-urls`).
//!
//! The registry is process-wide, as the Go client's default registry etcd
//! uses: the frontends never depend on each other, and a `janus` process
//! runs one member. Names are etcd's where etcd has the metric, and only
//! metrics janus measures truthfully are exported: values read at scrape
//! time from the member's own state are exact; a metric janus cannot
//! measure yet is left out rather than reported as 0.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::kv::RangeRequest;
use crate::Node;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// `Content-Type` of [`encode_text`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Adds metrics or collectors to the process registry.
pub fn register(f: impl FnOnce(&mut Registry)) {
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut r);
}

/// Everything registered, in the Prometheus text format (0.0.4).
pub fn encode_text() -> String {
    let r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    // Writing into a String cannot fail; a collector error truncates.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

/// Leader changes this member has seen (each new leader id, the first
/// election included), as etcd counts them.
pub(crate) static LEADER_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Durations of the WAL's group-commit fdatasync (etcd's buckets: 1 ms
/// doubling to about 8 s).
pub(crate) static WAL_FSYNC: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.001, 2.0, 14)));

/// Durations of one state-store commit (a batch of applied entries).
pub(crate) static BACKEND_COMMIT: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::new(exponential_buckets(0.001, 2.0, 14)));

/// The raft commit index of the last hard state this member persisted
/// (etcd's `proposals_committed_total`, a gauge despite its name).
pub(crate) static PROPOSALS_COMMITTED: AtomicU64 = AtomicU64::new(0);

/// Proposals this member made that have not been answered yet.
pub(crate) static PROPOSALS_PENDING: AtomicI64 = AtomicI64::new(0);

/// Proposals this member made that failed: refused by raft (no leader,
/// dropped) or not applied in time (etcd counts both).
pub(crate) static PROPOSALS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Label set of the per-peer metrics: `To` or `From` and the peer's member
/// id in hex, as etcd's `types.ID` prints it.
type PeerLabel = Vec<(&'static str, String)>;

fn peer_label(key: &'static str, id: u64) -> PeerLabel {
    vec![(key, format!("{id:x}"))]
}

fn rtt_histogram() -> Histogram {
    // etcd's buckets: 0.1 ms doubling 16 times (about 3.3 s).
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Smoothed round-trip time to each peer, recorded by the peer prober.
type PeerHistograms = Family<PeerLabel, Histogram, fn() -> Histogram>;

static PEER_RTT: LazyLock<PeerHistograms> =
    LazyLock::new(|| Family::new_with_constructor(rtt_histogram as fn() -> Histogram));

/// Bytes written to each peer's raft link.
static PEER_SENT: LazyLock<Family<PeerLabel, Counter>> = LazyLock::new(Family::default);

/// Bytes of raft messages received from each peer.
static PEER_RECEIVED: LazyLock<Family<PeerLabel, Counter>> = LazyLock::new(Family::default);

pub(crate) fn peer_rtt(to: u64, seconds: f64) {
    PEER_RTT
        .get_or_create(&peer_label("To", to))
        .observe(seconds);
}

pub(crate) fn peer_sent(to: u64, bytes: usize) {
    PEER_SENT
        .get_or_create(&peer_label("To", to))
        .inc_by(bytes as u64);
}

pub(crate) fn peer_received(from: u64, bytes: usize) {
    PEER_RECEIVED
        .get_or_create(&peer_label("From", from))
        .inc_by(bytes as u64);
}

/// Counts one proposal from start to answer in `proposals_pending`, and in
/// `proposals_failed_total` if it failed (dropped on an early return too).
pub(crate) struct PendingProposal {
    failed: bool,
}

impl PendingProposal {
    pub(crate) fn start() -> PendingProposal {
        PROPOSALS_PENDING.fetch_add(1, Ordering::Relaxed);
        PendingProposal { failed: true }
    }

    pub(crate) fn succeeded(mut self) {
        self.failed = false;
    }
}

impl Drop for PendingProposal {
    fn drop(&mut self) {
        PROPOSALS_PENDING.fetch_sub(1, Ordering::Relaxed);
        if self.failed {
            PROPOSALS_FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Records `d` in `h`.
pub(crate) fn observe(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64());
}

/// Registers the member's and the process's collectors.
pub fn register_node(node: Node) {
    register(|r| {
        r.register_collector(Box::new(NodeCollector(node)));
        r.register_collector(Box::new(ProcessCollector));
        r.register(
            "etcd_disk_wal_fsync_duration_seconds",
            // prometheus-client ends every help text with its own ".".
            "The latency distributions of fsync called by WAL",
            WAL_FSYNC.clone(),
        );
        r.register(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend",
            BACKEND_COMMIT.clone(),
        );
        r.register(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            PEER_RTT.clone(),
        );
        r.register(
            "etcd_network_peer_sent_bytes",
            "The total number of bytes sent to peers",
            PEER_SENT.clone(),
        );
        r.register(
            "etcd_network_peer_received_bytes",
            "The total number of bytes received from peers",
            PEER_RECEIVED.clone(),
        );
    });
}

/// The member's state, read at scrape time.
struct NodeCollector(Node);

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + Send + Sync + std::fmt::Debug>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

/// `name` without `_total` (the encoder appends it to counters).
fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = &self.0;
        let st = node.status();
        let me = node.member_id();
        let learner = node.members().iter().any(|m| m.id == me && m.is_learner);
        let keys = node
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                count_only: true,
                serializable: true,
                ..RangeRequest::default()
            })
            .map(|r| r.count)
            .unwrap_or(0);
        gauge(
            &mut e,
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            i64::from(st.leader != 0),
        )?;
        gauge(
            &mut e,
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            i64::from(st.leader != 0 && st.leader == me),
        )?;
        gauge(
            &mut e,
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            i64::from(learner),
        )?;
        gauge(
            &mut e,
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            st.applied_index,
        )?;
        gauge(
            &mut e,
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            PROPOSALS_COMMITTED.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            PROPOSALS_PENDING.load(Ordering::Relaxed).max(0),
        )?;
        counter(
            &mut e,
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen.",
            PROPOSALS_FAILED.load(Ordering::Relaxed) as f64,
        )?;
        counter(
            &mut e,
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            LEADER_CHANGES.load(Ordering::Relaxed) as f64,
        )?;
        gauge(
            &mut e,
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            st.db_size,
        )?;
        gauge(
            &mut e,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            st.db_size,
        )?;
        gauge(
            &mut e,
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            keys,
        )?;
        gauge(
            &mut e,
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            st.header.revision,
        )?;
        gauge(
            &mut e,
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            st.compact_revision,
        )?;
        Ok(())
    }
}

/// The Go client's process collector, from `/proc/self` (Linux only; other
/// systems export none of these).
#[derive(Debug)]
struct ProcessCollector;

/// Kernel clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLK_TCK: f64 = 100.0;
const PAGE_SIZE: f64 = 4096.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return Ok(());
        };
        // Fields after the parenthesised command name, which may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return Ok(());
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // rest[0] is field 3 (state): utime=14, stime=15, starttime=22,
        // vsize=23, rss=24 (1-based field numbers of proc(5)).
        let cpu = (num(14 - 3) + num(15 - 3)) / CLK_TCK;
        counter(
            &mut e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            cpu,
        )?;
        gauge(
            &mut e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            num(23 - 3),
        )?;
        gauge(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            num(24 - 3) * PAGE_SIZE,
        )?;
        if let Some(boot) = boot_time() {
            gauge(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                boot + num(22 - 3) / CLK_TCK,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors.",
                fds.count() as i64,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        Ok(())
    }
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_from_proc() {
        let mut r = Registry::default();
        r.register_collector(Box::new(ProcessCollector));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).expect("encode");
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(out.contains("process_cpu_seconds_total "), "{out}");
            let rss = out
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            assert!(rss > 1e6, "{out}");
        }
    }
}
