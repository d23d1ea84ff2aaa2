//! The `janus-bench` driver: workloads over the real client libraries
//! (`etcd-client`, `zookeeper-client`), latency statistics (hdrhistogram),
//! side-by-side comparison against the reference servers, and SVG plots.
//!
//! A run has `clients` concurrent tasks sharing `connections` connections
//! (task i uses connection i mod connections). Each task loops one operation
//! at a time (closed loop). A warmup phase runs the same loop first and is
//! not measured. The run ends after `duration` of measured time, or after
//! `ops` measured operations in total. Errors are counted, never unwrapped;
//! the first few messages are kept for the report.

pub mod compare;
pub mod etcd;
pub mod floor;
pub mod grpc_floor;
pub mod plot;
pub mod zk;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The etcd workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EtcdWorkload {
    /// Put of a random key in the key space.
    Put,
    /// Linearizable Range of one random preloaded key.
    Range,
    /// Serializable Range of one random preloaded key.
    RangeSerializable,
    /// Txn: compare version of the task's own key, then put (else get).
    TxnCas,
    /// Put to a watched key; latency = put sent until the event arrives.
    Watch,
    /// LeaseKeepAlive round trips on a granted lease.
    LeaseKeepalive,
}

/// The ZooKeeper workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ZkWorkload {
    /// Create of a new persistent znode.
    Create,
    /// setData (any version) on the task's own znode.
    Set,
    /// getData of one random preloaded znode.
    Get,
    /// Create of an ephemeral-sequential znode under one parent.
    EphemeralSeq,
    /// setData on a watched znode; latency = setData sent until the
    /// NodeDataChanged event arrives.
    Watch,
}

/// A workload of either protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Etcd(EtcdWorkload),
    Zk(ZkWorkload),
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        let (proto, name) = match self {
            Workload::Etcd(w) => ("etcd", w.to_possible_value()),
            Workload::Zk(w) => ("zk", w.to_possible_value()),
        };
        let name = name.map(|v| v.get_name().to_string()).unwrap_or_default();
        write!(f, "{proto} {name}")
    }
}

/// How long a run lasts (after warmup).
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Duration(Duration),
    Ops(u64),
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub workload: Workload,
    /// etcd: `http://host:port` (comma-separated list allowed); ZooKeeper:
    /// `host:port[,host:port]`.
    pub endpoint: String,
    pub clients: usize,
    pub connections: usize,
    pub limit: Limit,
    pub warmup: Duration,
    pub value_size: usize,
    /// Number of distinct keys for put/range/get.
    pub keys: u64,
    /// Print progress to stderr every second.
    pub progress: bool,
    /// Per-operation timeout (an operation over it counts as an error).
    pub op_timeout: Duration,
    /// ZooKeeper workloads: this many more sessions, each holding one
    /// watch on a znode of its own that the load never touches, open for
    /// the whole run (what a write costs when many clients watch other
    /// paths).
    pub watching_sessions: usize,
    /// Server processes whose CPU time (user + system, all threads) is
    /// sampled over the measured window ([`RunResult::server_cpu`]).
    pub server_pids: Vec<u32>,
}

impl RunConfig {
    pub fn new(workload: Workload, endpoint: impl Into<String>) -> RunConfig {
        RunConfig {
            workload,
            endpoint: endpoint.into(),
            clients: 16,
            connections: 1,
            limit: Limit::Duration(Duration::from_secs(10)),
            warmup: Duration::from_secs(1),
            value_size: 256,
            keys: 1000,
            progress: true,
            op_timeout: Duration::from_secs(10),
            watching_sessions: 0,
            server_pids: Vec::new(),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub workload: Workload,
    pub clients: usize,
    pub connections: usize,
    /// Successful measured operations.
    pub ops: u64,
    /// Failed measured operations.
    pub errors: u64,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Latency of successful operations, microseconds.
    pub latency_us: Histogram<u64>,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// Workload-specific counters (e.g. CAS conflicts), name and value.
    pub notes: Vec<(String, u64)>,
    /// CPU time the server processes used in the measured window (when
    /// [`RunConfig::server_pids`] named them): on a shared, noisy machine
    /// a steadier measure of cost than throughput.
    pub server_cpu: Option<Duration>,
}

impl RunResult {
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ops as f64 / s
        } else {
            0.0
        }
    }

    /// Server CPU microseconds per measured operation.
    pub fn cpu_us_per_op(&self) -> f64 {
        match self.server_cpu {
            Some(c) if self.ops > 0 => c.as_secs_f64() * 1e6 / self.ops as f64,
            _ => f64::NAN,
        }
    }

    pub fn p50_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.50) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: clients={} connections={} ops={} errors={} elapsed={:.2}s throughput={:.1} ops/s \
             p50={:.3}ms p99={:.3}ms max={:.3}ms",
            self.workload,
            self.clients,
            self.connections,
            self.ops,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.p50_ms(),
            self.p99_ms(),
            self.max_ms()
        )?;
        if self.server_cpu.is_some() {
            write!(f, " server_cpu={:.0}us/op", self.cpu_us_per_op())?;
        }
        for (k, v) in &self.notes {
            write!(f, " {k}={v}")?;
        }
        for e in &self.first_errors {
            write!(f, "\n  error: {e}")?;
        }
        Ok(())
    }
}

/// Errors of the driver itself (setup, connection); per-operation failures
/// are counted in [`RunResult::errors`] instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("connecting to {endpoint}: {msg}")]
    Connect { endpoint: String, msg: String },
    #[error("setup: {0}")]
    Setup(String),
    #[error("a worker task failed: {0}")]
    Task(String),
}

/// Shared run control: phases, op budget, counters for progress.
pub(crate) struct Control {
    /// Ops starting at or after this instant are measured.
    pub measure_from: Instant,
    /// Measured ops end at this instant (duration mode).
    pub deadline: Option<Instant>,
    pub ops_limit: Option<u64>,
    issued: AtomicU64,
    pub stop: AtomicBool,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub first_errors: Mutex<Vec<String>>,
    pub op_timeout: Duration,
}

impl Control {
    fn new(cfg: &RunConfig) -> Control {
        let measure_from = Instant::now() + cfg.warmup;
        let (deadline, ops_limit) = match cfg.limit {
            Limit::Duration(d) => (Some(measure_from + d), None),
            Limit::Ops(n) => (None, Some(n)),
        };
        Control {
            measure_from,
            deadline,
            ops_limit,
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
            op_timeout: cfg.op_timeout,
        }
    }

    /// Called before each operation: `None` to stop, else whether this
    /// operation is measured.
    pub fn next_op(&self) -> Option<bool> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        if let Some(d) = self.deadline {
            if now >= d {
                return None;
            }
        }
        let measured = now >= self.measure_from;
        if measured {
            if let Some(limit) = self.ops_limit {
                if self.issued.fetch_add(1, Ordering::Relaxed) >= limit {
                    return None;
                }
            }
        }
        Some(measured)
    }

    pub fn error(&self, measured: bool, msg: String) {
        if measured {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut v) = self.first_errors.lock() {
            if v.len() < 5 {
                v.push(msg);
            }
        }
    }
}

/// Per-task measurements.
pub(crate) struct TaskStats {
    pub hist: Histogram<u64>,
    pub notes: Vec<(String, u64)>,
}

impl TaskStats {
    pub fn new() -> TaskStats {
        TaskStats {
            // 1 µs .. 1 h, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds"),
            notes: Vec::new(),
        }
    }

    pub fn record(&mut self, ctl: &Control, measured: bool, latency: Duration) {
        if measured {
            let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
            let _ = self.hist.record(us);
            ctl.done.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn note(&mut self, name: &str, add: u64) {
        if let Some(e) = self.notes.iter_mut().find(|(k, _)| k == name) {
            e.1 += add;
        } else {
            self.notes.push((name.to_string(), add));
        }
    }
}

/// Runs one workload against one endpoint and returns what it measured.
pub async fn run(cfg: &RunConfig) -> Result<RunResult, BenchError> {
    let clients = cfg.clients.max(1);
    let connections = cfg.connections.clamp(1, clients);
    let cfg = RunConfig {
        clients,
        connections,
        ..cfg.clone()
    };
    // Connect and prepare (preload) before any clock starts.
    let prepared = match cfg.workload {
        Workload::Etcd(w) => Prepared::Etcd(etcd::prepare(&cfg, w).await?),
        Workload::Zk(w) => Prepared::Zk(zk::prepare(&cfg, w).await?),
    };
    let ctl = Arc::new(Control::new(&cfg));
    let cpu_from = {
        let (pids, at) = (cfg.server_pids.clone(), ctl.measure_from);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            cpu_time(&pids)
        })
    };
    let cpu_to = ctl.deadline.map(|at| {
        let pids = cfg.server_pids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            cpu_time(&pids)
        })
    });
    let progress = cfg
        .progress
        .then(|| spawn_progress(ctl.clone(), cfg.workload));
    let mut handles = Vec::with_capacity(clients);
    for task in 0..clients {
        let ctl = ctl.clone();
        let h = match &prepared {
            Prepared::Etcd(p) => tokio::spawn(etcd::task(p.clone(), cfg.clone(), task, ctl)),
            Prepared::Zk(p) => tokio::spawn(zk::task(p.clone(), cfg.clone(), task, ctl)),
        };
        handles.push(h);
    }
    let mut total = TaskStats::new();
    let mut task_failure = None;
    for h in handles {
        match h.await {
            Ok(stats) => {
                let _ = total.hist.add(&stats.hist);
                for (k, v) in stats.notes {
                    total.note(&k, v);
                }
            }
            Err(e) => {
                // A panicking client library (or a bug here): stop the others.
                ctl.stop.store(true, Ordering::Relaxed);
                task_failure = Some(e.to_string());
            }
        }
    }
    let end = Instant::now();
    let cpu_end = match cpu_to {
        Some(t) => t.await.ok().flatten(),
        None => cpu_time(&cfg.server_pids),
    };
    let server_cpu = match (cpu_from.await.ok().flatten(), cpu_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    if let Some(p) = progress {
        p.abort();
        if cfg.progress {
            eprintln!();
        }
    }
    if let Some(e) = task_failure {
        return Err(BenchError::Task(e));
    }
    let elapsed = match ctl.deadline {
        Some(d) => d.min(end).saturating_duration_since(ctl.measure_from),
        None => end.saturating_duration_since(ctl.measure_from),
    };
    let first_errors = ctl
        .first_errors
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    Ok(RunResult {
        workload: cfg.workload,
        clients,
        connections,
        ops: total.hist.len(),
        errors: ctl.failed.load(Ordering::Relaxed),
        elapsed,
        latency_us: total.hist,
        first_errors,
        notes: total.notes,
        server_cpu,
    })
}

/// User + system CPU time of `pids` together (every thread), from
/// `/proc/<pid>/stat`; `None` if there are none or one cannot be read.
fn cpu_time(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    let tick = clock_ticks_per_second();
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces: fields start after its ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs_f64(ticks as f64 / tick as f64))
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times), 100 if it
/// cannot be asked.
fn clock_ticks_per_second() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

enum Prepared {
    Etcd(etcd::Prepared),
    Zk(zk::Prepared),
}

fn spawn_progress(ctl: Arc<Control>, workload: Workload) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0u64;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let done = ctl.done.load(Ordering::Relaxed);
            let failed = ctl.failed.load(Ordering::Relaxed);
            if now < ctl.measure_from {
                eprint!("\r{workload}: warming up...                                   ");
            } else {
                let t = now.duration_since(ctl.measure_from).as_secs_f64();
                eprint!(
                    "\r{workload}: {t:6.1}s {done:>9} ops {:>9} ops/s (last 1s) errors {failed}   ",
                    done - last
                );
            }
            last = done;
        }
    })
}

/// A value of `size` bytes (printable, so tools can show it).
pub fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs `fut` with the per-operation timeout; a timeout becomes an error
/// message.
pub(crate) async fn timed<T, E: fmt::Display>(
    ctl: &Control,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(ctl.op_timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {:?}", ctl.op_timeout)),
    }
}

/// Parses "10s", "500ms", "2m", "1h" or plain seconds ("10", "0.5").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn op_limit_counts_only_measured_ops() {
        let mut cfg = RunConfig::new(Workload::Etcd(EtcdWorkload::Put), "");
        cfg.warmup = Duration::ZERO;
        cfg.limit = Limit::Ops(3);
        let ctl = Control::new(&cfg);
        assert_eq!(ctl.next_op(), Some(true));
        assert_eq!(ctl.next_op(), Some(true));
        assert_eq!(ctl.next_op(), Some(true));
        assert_eq!(ctl.next_op(), None);
    }
}
