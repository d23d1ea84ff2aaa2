//! Side-by-side runs: the same workload against a fresh reference server
//! (real etcd 3.4 / real ZooKeeper 3.8) and a fresh janus at each
//! concurrency level, with the ratio janus/reference; and the memory
//! measurement (RSS after loading many keys).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::runtime::Runtime;

use super::plot::{self, Series};
use super::{etcd, run, BenchError, RunConfig, RunResult, Workload};
use crate::cluster::{Cluster, ClusterOptions};
use crate::harness::Janus;
use crate::reference::{rss_bytes, RealEtcd, RealEtcdCluster, RealZk, RealZkEnsemble};

/// A server under test, started fresh: one process, or a cluster of them
/// on loopback (clients spread over every member).
pub enum Server {
    Janus(Janus),
    Etcd(RealEtcd),
    Zk(RealZk),
    JanusCluster(Cluster),
    EtcdCluster(RealEtcdCluster),
    ZkEnsemble(RealZkEnsemble),
    /// `janus-bench grpc-floor`: etcd's KV.Put and KV.Range on janus's
    /// gRPC stack, answered without doing anything ([`super::grpc_floor`]).
    GrpcFloor(GrpcFloor),
}

/// A `janus-bench grpc-floor` child process, killed on drop.
pub struct GrpcFloor {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl GrpcFloor {
    /// Starts `bench_bin grpc-floor` on a free loopback port and waits for
    /// the address it prints.
    pub fn start(bench_bin: &Path, value_size: usize) -> Result<GrpcFloor, BenchError> {
        use std::io::BufRead;
        let setup = |m: String| BenchError::Setup(format!("gRPC floor: {m}"));
        let mut child = std::process::Command::new(bench_bin)
            .args(["grpc-floor", "--listen", "127.0.0.1:0", "--value-size"])
            .arg(value_size.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| setup(format!("starting {}: {e}", bench_bin.display())))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => std::io::BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        match (read, addr) {
            (Ok(_), Some(addr)) => Ok(GrpcFloor { child, addr }),
            (r, _) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(setup(format!("no address printed ({line:?}, {r:?})")))
            }
        }
    }
}

impl Drop for GrpcFloor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The endpoint string for `workload`'s protocol.
    pub fn endpoint(&self, workload: Workload) -> String {
        match (self, workload) {
            (Server::Janus(j), Workload::Etcd(_)) => j.etcd_endpoint(),
            (Server::Janus(j), Workload::Zk(_)) => j.zk_addr().to_string(),
            (Server::Etcd(e), _) => e.endpoint(),
            (Server::Zk(z), _) => z.connect_string(),
            (Server::JanusCluster(c), Workload::Etcd(_)) => c.etcd_endpoints().join(","),
            (Server::JanusCluster(c), Workload::Zk(_)) => c.zk_connect_string(),
            (Server::EtcdCluster(e), _) => e.endpoints(),
            (Server::ZkEnsemble(z), _) => z.connect_string(),
            (Server::GrpcFloor(f), _) => format!("http://{}", f.addr),
        }
    }

    /// The data dir of a single-process server.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self {
            Server::Janus(j) => Some(j.data_dir()),
            Server::Etcd(e) => Some(e.data_dir()),
            Server::Zk(z) => Some(z.data_dir()),
            _ => None,
        }
    }

    /// Every process's pid.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Server::JanusCluster(c) => c.members.iter().filter_map(|m| m.pid()).collect(),
            Server::EtcdCluster(e) => e.pids(),
            Server::ZkEnsemble(z) => z.pids(),
            one => one.pid().into_iter().collect(),
        }
    }

    /// The (first) process's pid.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Server::Janus(j) => j.pid(),
            Server::Etcd(e) => e.pid(),
            Server::Zk(z) => z.pid(),
            Server::JanusCluster(c) => c.members.first().and_then(|m| m.pid()),
            Server::EtcdCluster(e) => e.pids().first().copied(),
            Server::ZkEnsemble(z) => z.pids().first().copied(),
            Server::GrpcFloor(f) => Some(f.child.id()),
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Starts janus from `bin` (no panic escapes: a failed start is an error).
pub fn start_janus(bin: &Path) -> Result<Server, BenchError> {
    let bin = bin.to_path_buf();
    std::panic::catch_unwind(move || Janus::start_binary(&bin, &[]))
        .map(Server::Janus)
        .map_err(|p| BenchError::Setup(format!("starting janus: {}", panic_message(p))))
}

/// Starts `members` janus processes from `bin` as one cluster on loopback
/// and waits until they agree on a leader.
pub fn start_janus_cluster(rt: &Runtime, bin: &Path, members: usize) -> Result<Server, BenchError> {
    let opts = ClusterOptions {
        bin: Some(bin.to_path_buf()),
        ..ClusterOptions::default()
    };
    let c = std::panic::catch_unwind(move || Cluster::start_with(members, opts))
        .map_err(|p| BenchError::Setup(format!("starting janus: {}", panic_message(p))))?;
    let waited = std::panic::AssertUnwindSafe(|| {
        rt.block_on(crate::chaos::workload::leader_index(
            &c,
            Duration::from_secs(30),
        ))
    });
    std::panic::catch_unwind(waited)
        .map_err(|p| BenchError::Setup(format!("janus cluster: {}", panic_message(p))))?;
    Ok(Server::JanusCluster(c))
}

/// Starts janus as one process (`members` 1) or a cluster.
pub fn start_janus_members(rt: &Runtime, bin: &Path, members: usize) -> Result<Server, BenchError> {
    if members > 1 {
        start_janus_cluster(rt, bin, members)
    } else {
        start_janus(bin)
    }
}

/// Starts the reference server for `workload`'s protocol: standalone
/// (`members` 1) or a cluster / ensemble of `members`.
pub fn start_reference(workload: Workload, members: usize) -> Result<Server, BenchError> {
    let setup = |e: crate::reference::RefError| BenchError::Setup(e.to_string());
    match (workload, members) {
        (Workload::Etcd(_), 0 | 1) => RealEtcd::start().map(Server::Etcd).map_err(setup),
        (Workload::Zk(_), 0 | 1) => RealZk::start().map(Server::Zk).map_err(setup),
        (Workload::Etcd(_), n) => RealEtcdCluster::start(n)
            .map(Server::EtcdCluster)
            .map_err(setup),
        (Workload::Zk(_), n) => RealZkEnsemble::start(n)
            .map(Server::ZkEnsemble)
            .map_err(setup),
    }
}

pub fn reference_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Etcd(_) => "etcd 3.4",
        Workload::Zk(_) => "ZooKeeper 3.8",
    }
}

/// The janus binary to benchmark: `JANUS_BIN`, else `janus` next to this
/// executable (`cargo build --release -p janus -p janus-conformance` puts
/// both in `target/release`).
pub fn default_janus_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("JANUS_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("janus");
    p.exists().then_some(p)
}

/// One concurrency level's pair of runs.
pub struct Row {
    pub level: usize,
    pub janus: RunResult,
    pub reference: RunResult,
    /// The same level against the gRPC floor, when asked for.
    pub grpc_floor: Option<RunResult>,
}

impl Row {
    pub fn throughput_ratio(&self) -> f64 {
        ratio(self.janus.throughput(), self.reference.throughput())
    }
    pub fn p99_ratio(&self) -> f64 {
        ratio(self.janus.p99_ms(), self.reference.p99_ms())
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Whether the gRPC floor answers `workload` (etcd's Put and Range only).
pub fn grpc_floor_serves(workload: Workload) -> bool {
    use super::EtcdWorkload as E;
    matches!(
        workload,
        Workload::Etcd(E::Put | E::Range | E::RangeSerializable)
    )
}

/// Runs `base` at every level in `levels` (as the client count; the
/// connection count is `min(base.connections, level)`), each time against a
/// fresh reference server and then a fresh janus, each of `members`
/// processes; with `grpc_floor` (the janus-bench binary), then also
/// against a fresh gRPC floor (one process).
pub fn compare(
    rt: &Runtime,
    base: &RunConfig,
    levels: &[usize],
    janus_bin: &Path,
    members: usize,
    grpc_floor: Option<&Path>,
) -> Result<Vec<Row>, BenchError> {
    if grpc_floor.is_some() && !grpc_floor_serves(base.workload) {
        return Err(BenchError::Setup(format!(
            "the gRPC floor answers etcd put, range and range-serializable, not {}",
            base.workload
        )));
    }
    let mut rows = Vec::new();
    for &level in levels {
        let mut cfg = base.clone();
        cfg.clients = level;
        cfg.connections = base.connections.clamp(1, level);
        let reference = {
            let server = start_reference(base.workload, members)?;
            cfg.endpoint = server.endpoint(base.workload);
            cfg.server_pids = server.pids();
            eprintln!(
                "== {} vs {}: {level} clients",
                reference_name(base.workload),
                cfg.workload
            );
            rt.block_on(run(&cfg))?
        };
        eprintln!("{reference}");
        let janus = {
            let server = start_janus_members(rt, janus_bin, members)?;
            cfg.endpoint = server.endpoint(base.workload);
            cfg.server_pids = server.pids();
            eprintln!("== janus: {level} clients");
            rt.block_on(run(&cfg))?
        };
        eprintln!("{janus}");
        let grpc_floor = match grpc_floor {
            Some(bin) => {
                let server = Server::GrpcFloor(GrpcFloor::start(bin, base.value_size)?);
                cfg.endpoint = server.endpoint(base.workload);
                cfg.server_pids = server.pids();
                eprintln!("== gRPC floor: {level} clients");
                let r = rt.block_on(run(&cfg))?;
                eprintln!("{r}");
                Some(r)
            }
            None => None,
        };
        rows.push(Row {
            level,
            janus,
            reference,
            grpc_floor,
        });
    }
    Ok(rows)
}

/// A markdown table of the rows.
pub fn table(workload: Workload, rows: &[Row]) -> String {
    let r = reference_name(workload);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| clients | conns | janus ops/s | {r} ops/s | ratio | janus p50 ms | {r} p50 ms | janus p99 ms | {r} p99 ms | p99 ratio | janus max ms | {r} max ms | janus CPU µs/op | {r} CPU µs/op | errors (janus/{r}) |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for row in rows {
        let (j, f) = (&row.janus, &row.reference);
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {:.0} | {}/{} |",
            row.level,
            j.connections,
            j.throughput(),
            f.throughput(),
            row.throughput_ratio(),
            j.p50_ms(),
            f.p50_ms(),
            j.p99_ms(),
            f.p99_ms(),
            row.p99_ratio(),
            j.max_ms(),
            f.max_ms(),
            j.cpu_us_per_op(),
            f.cpu_us_per_op(),
            j.errors,
            f.errors
        );
    }
    s
}

/// A markdown table of the gRPC floor's runs beside janus's and the
/// reference's, when the rows have them: `floor / reference` is the most
/// any server on janus's gRPC stack could reach against the reference here.
pub fn grpc_floor_table(workload: Workload, rows: &[Row]) -> Option<String> {
    let r = reference_name(workload);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| clients | gRPC floor ops/s | floor p50 ms | floor p99 ms | floor CPU µs/op | janus CPU µs/op | janus / floor | floor / {r} |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut any = false;
    for row in rows {
        let Some(f) = &row.grpc_floor else { continue };
        any = true;
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} |",
            row.level,
            f.throughput(),
            f.p50_ms(),
            f.p99_ms(),
            f.cpu_us_per_op(),
            row.janus.cpu_us_per_op(),
            ratio(row.janus.throughput(), f.throughput()),
            ratio(f.throughput(), row.reference.throughput()),
        );
    }
    any.then_some(s)
}

/// The SVG plot of the rows.
pub fn svg(workload: Workload, rows: &[Row]) -> String {
    let janus = Series {
        name: "janus".into(),
        points: rows
            .iter()
            .map(|r| (r.level, r.janus.throughput(), r.janus.p99_ms()))
            .collect(),
    };
    let reference = Series {
        name: reference_name(workload).into(),
        points: rows
            .iter()
            .map(|r| (r.level, r.reference.throughput(), r.reference.p99_ms()))
            .collect(),
    };
    let mut series = vec![janus, reference];
    if rows.iter().all(|r| r.grpc_floor.is_some()) {
        series.push(Series {
            name: "gRPC floor (no-op server)".into(),
            points: rows
                .iter()
                .filter_map(|r| r.grpc_floor.as_ref().map(|f| (r.level, f)))
                .map(|(level, f)| (level, f.throughput(), f.p99_ms()))
                .collect(),
        });
    }
    plot::render(
        &format!(
            "{workload}: janus vs {} (fsync on, same machine)",
            reference_name(workload)
        ),
        &series,
    )
}

/// What [`memory`] measured.
pub struct MemoryReport {
    pub system: String,
    pub keys: u64,
    pub value_size: usize,
    pub rss_idle: u64,
    pub rss_loaded: u64,
    /// Bytes allocated on disk by the whole data dir (WAL included) after
    /// loading and settling.
    pub disk: u64,
    pub load: RunResult,
}

/// Bytes allocated on disk under `dir` (what `du` counts: blocks, not
/// file lengths, so preallocated and sparse files count what they hold).
pub fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

impl std::fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "{}: {} keys x {} B: RSS idle {:.1} MiB, after load {:.1} MiB, disk {:.1} MiB (load: {:.0} puts/s, {} errors)",
            self.system,
            self.keys,
            self.value_size,
            mb(self.rss_idle),
            mb(self.rss_loaded),
            mb(self.disk),
            self.load.throughput(),
            self.load.errors
        )
    }
}

/// Starts `server`, writes `keys` distinct keys of `value_size` bytes over
/// the etcd API (each key once, `clients` at a time), waits `settle`, and
/// reads the server's VmRSS.
pub fn memory(
    rt: &Runtime,
    server: Server,
    system: &str,
    keys: u64,
    value_size: usize,
    clients: usize,
    settle: Duration,
) -> Result<MemoryReport, BenchError> {
    let pid = server
        .pid()
        .ok_or_else(|| BenchError::Setup("server has no pid".into()))?;
    let rss =
        |pid| rss_bytes(pid).map_err(|e| BenchError::Setup(format!("reading RSS of {pid}: {e}")));
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss(pid)?;
    let endpoint = server.endpoint(Workload::Etcd(super::EtcdWorkload::Put));
    let load = rt.block_on(etcd::load_distinct(
        &endpoint, "/mem/", keys, value_size, clients,
    ))?;
    std::thread::sleep(settle);
    let rss_loaded = rss(pid)?;
    let dir = server
        .data_dir()
        .ok_or_else(|| BenchError::Setup("server has no data dir".into()))?;
    let disk = disk_usage(&dir)
        .map_err(|e| BenchError::Setup(format!("disk usage of {}: {e}", dir.display())))?;
    drop(server);
    Ok(MemoryReport {
        system: system.to_string(),
        keys,
        value_size,
        rss_idle,
        rss_loaded,
        disk,
        load,
    })
}
