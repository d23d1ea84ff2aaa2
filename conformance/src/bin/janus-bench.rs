//! janus-bench: etcd and ZooKeeper workloads against any endpoint, a
//! side-by-side comparison of janus with the real servers, and janus's
//! memory use.
//!
//! ```text
//! janus-bench etcd put --endpoint http://127.0.0.1:2379 --clients 64 --connections 8 --duration 10s
//! janus-bench zk set --endpoint 127.0.0.1:2181 --clients 16 --ops 10000
//! janus-bench compare etcd put --levels 1,8,32,128 --duration 10s --svg put.svg
//! janus-bench memory --keys 100000 --value-size 256
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use janus_conformance::bench::compare::{self, Server};
use janus_conformance::bench::{
    self, parse_duration, EtcdWorkload, Limit, RunConfig, Workload, ZkWorkload,
};
use janus_conformance::bench::{floor, grpc_floor};
use janus_conformance::reference::RealEtcd;

#[derive(Parser)]
#[command(
    name = "janus-bench",
    about = "Benchmark driver for janus, etcd and ZooKeeper"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an etcd workload against an etcd-API endpoint (janus or etcd).
    Etcd {
        workload: EtcdWorkload,
        /// etcd endpoint(s), comma-separated.
        #[arg(long, default_value = "http://127.0.0.1:2379")]
        endpoint: String,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Run a ZooKeeper workload against a ZooKeeper endpoint (janus or ZooKeeper).
    Zk {
        workload: ZkWorkload,
        /// ZooKeeper connect string.
        #[arg(long, default_value = "127.0.0.1:2181")]
        endpoint: String,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Start fresh reference servers and a fresh janus, run the same workload
    /// on each at every concurrency level, print the ratio janus/reference
    /// and write an SVG plot.
    Compare {
        #[command(subcommand)]
        proto: CompareProto,
    },
    /// Start janus, write many distinct keys over the etcd API and report
    /// janus's resident memory (VmRSS).
    Memory {
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        /// Concurrent puts while loading.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Wait this long after loading before reading RSS.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        settle: Duration,
        /// Also measure a fresh real etcd the same way, for reference.
        #[arg(long)]
        reference: bool,
        /// The janus binary [default: $JANUS_BIN, else `janus` next to this program].
        #[arg(long)]
        janus_bin: Option<PathBuf>,
        /// Fail (exit 1) if janus's loaded RSS exceeds this many MiB.
        #[arg(long)]
        limit_mib: Option<f64>,
    },
    /// Serve the gRPC floor: etcd's KV.Put and KV.Range answered at once,
    /// nothing stored (what the gRPC stack alone costs per request).
    GrpcFloor {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Bytes of the value every Range answers.
        #[arg(long, default_value_t = 256)]
        value_size: usize,
    },
}

#[derive(Subcommand)]
enum CompareProto {
    /// janus vs real etcd 3.4.
    Etcd {
        workload: EtcdWorkload,
        #[command(flatten)]
        c: CompareOpts,
    },
    /// janus vs real ZooKeeper 3.8.
    Zk {
        workload: ZkWorkload,
        #[command(flatten)]
        c: CompareOpts,
    },
}

#[derive(Args, Clone)]
struct RunOpts {
    /// Concurrent clients (closed-loop tasks).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Connections (etcd channels / ZooKeeper sessions) shared by the clients.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[command(flatten)]
    common: CommonOpts,
}

#[derive(Args, Clone)]
struct CompareOpts {
    /// Concurrency levels (client counts), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    levels: Vec<usize>,
    /// Connections per level (capped at the level's client count).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Members of each system: 1 (standalone servers) or a cluster of this
    /// many processes on loopback, clients spread over all of them.
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// Where to write the SVG plot [default: bench-<proto>-<workload>.svg].
    #[arg(long)]
    svg: Option<PathBuf>,
    /// The janus binary [default: $JANUS_BIN, else `janus` next to this program].
    #[arg(long)]
    janus_bin: Option<PathBuf>,
    /// etcd put / range: also run every level against the gRPC floor (a
    /// no-op KV server on janus's gRPC stack, `janus-bench grpc-floor`).
    #[arg(long)]
    grpc_floor: bool,
    #[command(flatten)]
    common: CommonOpts,
}

#[derive(Args, Clone)]
struct CommonOpts {
    /// Measured time per run (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Measured operations per run, instead of --duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Unmeasured warmup before each run.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Key space for put / range / get.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Per-operation timeout; slower operations count as errors.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    op_timeout: Duration,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
    /// ZooKeeper workloads: extra sessions, each watching a znode of its own
    /// that the load never writes, open during the run.
    #[arg(long, default_value_t = 0)]
    watching_sessions: usize,
}

impl CommonOpts {
    fn config(
        &self,
        workload: Workload,
        endpoint: String,
        clients: usize,
        connections: usize,
    ) -> RunConfig {
        RunConfig {
            workload,
            endpoint,
            clients,
            connections,
            limit: match self.ops {
                Some(n) => Limit::Ops(n),
                None => Limit::Duration(self.duration),
            },
            warmup: self.warmup,
            value_size: self.value_size,
            keys: self.keys,
            progress: !self.quiet,
            op_timeout: self.op_timeout,
            watching_sessions: self.watching_sessions,
            server_pids: Vec::new(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("janus-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match real_main(&rt, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("janus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn janus_bin(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = explicit.or_else(compare::default_janus_bin).ok_or_else(|| {
        anyhow::anyhow!("no janus binary: build it with `cargo build --release -p janus` and pass --janus-bin or set JANUS_BIN")
    })?;
    anyhow::ensure!(
        bin.exists(),
        "janus binary {} does not exist",
        bin.display()
    );
    if bin.components().any(|c| c.as_os_str() == "debug") {
        eprintln!(
            "janus-bench: warning: {} looks like a debug build; benchmark a release build",
            bin.display()
        );
    }
    Ok(bin)
}

fn real_main(rt: &tokio::runtime::Runtime, cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Etcd {
            workload,
            endpoint,
            opts,
        } => {
            let cfg = opts.common.config(
                Workload::Etcd(workload),
                endpoint,
                opts.clients,
                opts.connections,
            );
            single(rt, &cfg)
        }
        Cmd::Zk {
            workload,
            endpoint,
            opts,
        } => {
            let cfg = opts.common.config(
                Workload::Zk(workload),
                endpoint,
                opts.clients,
                opts.connections,
            );
            single(rt, &cfg)
        }
        Cmd::Compare { proto } => {
            let (workload, c) = match proto {
                CompareProto::Etcd { workload, c } => (Workload::Etcd(workload), c),
                CompareProto::Zk { workload, c } => (Workload::Zk(workload), c),
            };
            let bin = janus_bin(c.janus_bin.clone())?;
            let base = c.common.config(workload, String::new(), 1, c.connections);
            let floor_bin = match c.grpc_floor {
                true => Some(std::env::current_exe()?),
                false => None,
            };
            let rows =
                compare::compare(rt, &base, &c.levels, &bin, c.members, floor_bin.as_deref())?;
            let svg_path = c.svg.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "bench-{}.svg",
                    workload.to_string().replace(' ', "-")
                ))
            });
            std::fs::write(&svg_path, compare::svg(workload, &rows))?;
            println!(
                "\n{workload} ({}, value {} B, {} per level, warmup {:?}; ratio = janus / {})\n",
                match c.common.ops {
                    Some(n) => format!("{n} ops"),
                    None => format!("{:?}", c.common.duration),
                },
                c.common.value_size,
                match c.common.ops {
                    Some(_) => "ops",
                    None => "measured time",
                },
                c.common.warmup,
                compare::reference_name(workload)
            );
            print!("{}", compare::table(workload, &rows));
            if let Some(t) = compare::grpc_floor_table(workload, &rows) {
                println!("\ngRPC floor (etcd's KV answered at once on janus's gRPC stack, nothing stored):\n");
                print!("{t}");
            }
            if let Some(one) = rows.iter().find(|r| r.level == 1) {
                // The data directories' file system: the servers' temp dirs.
                let floor = floor::measure(&std::env::temp_dir(), 500)?;
                println!(
                    "\nfloor of one write: {floor}\n1 client p50: janus {:.3} ms ({:.2}x the floor), {} {:.3} ms",
                    one.janus.p50_ms(),
                    one.janus.p50_ms() / floor.p50_ms(),
                    compare::reference_name(workload),
                    one.reference.p50_ms()
                );
            }
            println!("\nplot: {}", svg_path.display());
            let errors: u64 = rows
                .iter()
                .map(|r| r.janus.errors + r.reference.errors)
                .sum();
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Cmd::Memory {
            keys,
            value_size,
            clients,
            settle,
            reference,
            janus_bin: bin,
            limit_mib,
        } => {
            let bin = janus_bin(bin)?;
            let server = compare::start_janus(&bin)?;
            let j = compare::memory(rt, server, "janus", keys, value_size, clients, settle)?;
            println!("{j}");
            if reference {
                let server = Server::Etcd(RealEtcd::start()?);
                let e = compare::memory(rt, server, "etcd 3.4", keys, value_size, clients, settle)?;
                println!("{e}");
                println!(
                    "janus / etcd 3.4: RSS after load {:.2}x, disk {:.2}x",
                    j.rss_loaded as f64 / e.rss_loaded.max(1) as f64,
                    j.disk as f64 / e.disk.max(1) as f64
                );
            }
            let mib = j.rss_loaded as f64 / (1024.0 * 1024.0);
            let ok = j.load.errors == 0 && !matches!(limit_mib, Some(l) if mib > l);
            if let Some(l) = limit_mib {
                println!(
                    "janus RSS {mib:.1} MiB {} the {l} MiB limit",
                    if mib <= l { "within" } else { "OVER" }
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::GrpcFloor { listen, value_size } => {
            rt.block_on(grpc_floor::run(listen, value_size))
                .map_err(|e| anyhow::anyhow!("gRPC floor: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn single(rt: &tokio::runtime::Runtime, cfg: &RunConfig) -> anyhow::Result<ExitCode> {
    let r = rt.block_on(bench::run(cfg))?;
    println!("{r}");
    Ok(if r.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
