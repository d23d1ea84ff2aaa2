//! janus-chaos: a seeded fault campaign against a cluster of real janus
//! processes, checked at the end (see `janus_conformance::chaos::campaign`).
//!
//! ```text
//! cargo build --release -p janus -p janus-conformance
//! target/release/janus-chaos                       # the default campaign
//! target/release/janus-chaos --seed 7 --ops 5000 --faults 6 --members 3
//! ```
//!
//! Exit status 0 only if every check passed. Needs root and `ip netns` for
//! the partition faults; without them it says why and runs the rest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use janus_conformance::chaos::campaign::{self, CampaignConfig};
use janus_conformance::chaos::workload::WorkloadConfig;

#[derive(Parser)]
#[command(
    name = "janus-chaos",
    about = "Seeded fault campaign against a janus cluster, linearizability-checked"
)]
struct Cli {
    /// Seed of the fault schedule and the operation mix [default: random].
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size (3 or 5).
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Keep going until this many register operations completed...
    #[arg(long, default_value_t = 100_000)]
    ops: u64,
    /// ...and this many faults were injected.
    #[arg(long, default_value_t = 50)]
    faults: usize,
    /// Hard limit on the fault phase, in seconds.
    #[arg(long, default_value_t = 1080)]
    max_seconds: u64,
    /// Registers the workload spreads over (each is checked on its own).
    #[arg(long, default_value_t = 64)]
    registers: usize,
    #[arg(long, default_value_t = 6)]
    etcd_clients: u64,
    #[arg(long, default_value_t = 6)]
    zk_clients: u64,
    #[arg(long, default_value_t = 3)]
    lock_contenders: u64,
    #[arg(long, default_value_t = 2)]
    watchers: u64,
    /// etcd lease workers (grant, put with lease, keepalive, revoke/expiry).
    #[arg(long, default_value_t = 3)]
    lease_clients: u64,
    /// Contenders for the etcd lock (lowest create revision holds).
    #[arg(long, default_value_t = 3)]
    etcd_lock_contenders: u64,
    /// ZooKeeper clients checking that watch events come before the data.
    #[arg(long, default_value_t = 2)]
    watch_order_clients: u64,
    /// Do not create network namespaces (no partition faults).
    #[arg(long)]
    no_netns: bool,
    /// The janus binary [default: $JANUS_BIN, else `janus` next to this program].
    #[arg(long)]
    janus_bin: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(rand::random::<u64>);
    let Some(bin) = cli
        .janus_bin
        .or_else(janus_conformance::bench::compare::default_janus_bin)
    else {
        eprintln!("no janus binary: build it with `cargo build --release -p janus` and pass --janus-bin or set JANUS_BIN");
        return ExitCode::from(2);
    };
    if !(3..=5).contains(&cli.members) {
        eprintln!("--members must be 3, 4 or 5");
        return ExitCode::from(2);
    }
    let cfg = CampaignConfig {
        seed,
        members: cli.members,
        min_ops: cli.ops,
        min_faults: cli.faults,
        max_duration: Duration::from_secs(cli.max_seconds),
        netns: !cli.no_netns,
        bin: Some(bin),
        workload: WorkloadConfig {
            seed,
            registers: cli.registers.max(1),
            etcd_clients: cli.etcd_clients,
            zk_clients: cli.zk_clients,
            lock_contenders: cli.lock_contenders,
            watchers: cli.watchers,
            lease_clients: cli.lease_clients,
            etcd_lock_contenders: cli.etcd_lock_contenders,
            watch_order_clients: cli.watch_order_clients,
        },
    };
    eprintln!("janus-chaos seed {seed}: {cfg:?}");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = rt.block_on(campaign::run(&cfg));
    let text = report.render();
    println!("{text}");
    if let Some(p) = cli.report {
        if let Err(e) = std::fs::write(&p, &text) {
            eprintln!("cannot write {}: {e}", p.display());
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
