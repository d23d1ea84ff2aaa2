//! `janus migrate`: copies a live ZooKeeper ensemble or etcd cluster into
//! an empty janus with every revision and stat kept, optionally follows the
//! source's changes until cut-over, and verifies both sides are equal.
//!
//! The target side is janus's Import service (core's import commands
//! through the raft log): it holds a migration lock under which janus
//! refuses client writes, so the only revisions janus takes are the
//! source's. Everything is read from the source as an ordinary client
//! (ZooKeeper: `sync`, then a walk with a persistent recursive watch
//! registered before it; etcd: one revision, paginated, then a watch from
//! it), checked whole before the lock is taken (sizes, ACLs), and written
//! in atomic batches that are safe to send twice. What a ZooKeeper client
//! is never told (whether a node is a container or TTL node) comes from the
//! source's own files when the operator names them (`zk_files`).

mod etcd;
mod progress;
mod target;
mod verify;
mod zk_files;
mod zk_null;
mod zookeeper;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `janus migrate ...`
#[derive(Parser, Debug)]
#[command(
    name = "janus migrate",
    about = "Copy a live ZooKeeper or etcd into janus"
)]
pub struct MigrateCli {
    #[command(subcommand)]
    source: Source,
}

#[derive(Subcommand, Debug)]
enum Source {
    /// From a ZooKeeper ensemble (3.5+; persistent recursive watches need 3.6+).
    Zookeeper(ZkArgs),
    /// From an etcd v3 cluster.
    Etcd(EtcdArgs),
}

/// What both sources share.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// janus client URL (its etcd port, where the Import service lives).
    #[arg(long)]
    to: String,
    /// Keep applying the source's changes until SIGINT/SIGTERM (or
    /// --until-idle), then verify.
    #[arg(long)]
    follow: bool,
    /// With --follow: stop after this many seconds without a change.
    #[arg(long, value_name = "SECONDS")]
    until_idle: Option<u64>,
    /// Import into a non-empty janus (its keys are deleted first).
    #[arg(long)]
    force: bool,
    /// Only compare the source and janus; write nothing.
    #[arg(long)]
    verify_only: bool,
    /// Largest batch sent to janus at once, in bytes (one node larger than
    /// this goes alone).
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
    /// No progress bar (logs and the summary only).
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn idle(&self) -> Option<Duration> {
        self.until_idle.map(Duration::from_secs)
    }
}

#[derive(Args, Debug, Clone)]
pub struct ZkArgs {
    /// Source ensemble: HOST:PORT[,HOST:PORT...].
    #[arg(long)]
    from: String,
    /// janus's ZooKeeper endpoint, for verification.
    #[arg(long, default_value = "127.0.0.1:2181")]
    to_zk: String,
    /// Subtree to copy.
    #[arg(long, default_value = "/")]
    path: String,
    /// Authenticate to the source (and janus, for verification) as this
    /// digest user (`user:password`); the ensemble's super user reads every
    /// node and its unmasked ACL.
    #[arg(long)]
    digest: Option<String>,
    /// The source server's dataDir (the folder holding `version-2/`), read
    /// only, to learn which nodes are containers and TTL nodes (ZooKeeper
    /// never tells its clients). Without it they arrive as persistent nodes.
    #[arg(long, value_name = "DIR")]
    source_data_dir: Option<std::path::PathBuf>,
    /// The source's dataLogDir, when its transaction logs are not in its
    /// dataDir.
    #[arg(long, value_name = "DIR", requires = "source_data_dir")]
    source_data_log_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Source client URL(s), comma-separated.
    #[arg(long)]
    from: String,
    /// Key prefix to copy (all keys if empty).
    #[arg(long, default_value = "")]
    prefix: String,
    #[command(flatten)]
    common: Common,
}

/// Runs `janus migrate` with `args` (the words after `migrate`); the
/// process exit code is the result's.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let cli = MigrateCli::parse_from(std::iter::once("janus migrate".to_string()).chain(args));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        match cli.source {
            Source::Zookeeper(a) => zookeeper::run(a).await,
            Source::Etcd(a) => etcd::run(a).await,
        }
    })?;
    println!("{summary}");
    if summary.equal() {
        Ok(())
    } else {
        anyhow::bail!("source and janus differ ({} entries)", summary.differences)
    }
}

/// What a migration did and found, printed at the end.
#[derive(Debug, Default)]
pub struct Summary {
    pub copied: u64,
    pub bytes: u64,
    pub followed: u64,
    pub skipped: Vec<String>,
    /// What was done about node kinds (ZooKeeper containers and TTL nodes).
    pub kinds: Option<String>,
    pub source: verify::Digest,
    pub target: verify::Digest,
    pub differences: u64,
    pub first_differences: Vec<String>,
    pub seconds: f64,
}

impl Summary {
    fn equal(&self) -> bool {
        self.differences == 0 && self.source == self.target
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 {
            self.copied as f64 / self.seconds
        } else {
            0.0
        };
        writeln!(
            f,
            "copied {} entries ({} bytes) in {:.1}s ({rate:.0}/s), followed {} changes",
            self.copied, self.bytes, self.seconds, self.followed
        )?;
        if !self.skipped.is_empty() {
            let shown: Vec<&str> = self.skipped.iter().take(10).map(|s| s.as_str()).collect();
            writeln!(
                f,
                "skipped {} ephemeral nodes (their sessions live on the source): {}{}",
                self.skipped.len(),
                shown.join(", "),
                if self.skipped.len() > 10 { ", ..." } else { "" }
            )?;
        }
        if let Some(k) = &self.kinds {
            writeln!(f, "{k}")?;
        }
        writeln!(f, "source: {}", self.source)?;
        writeln!(f, "janus:  {}", self.target)?;
        if self.equal() {
            write!(f, "verified: equal")
        } else {
            writeln!(f, "DIFFERENT: {} entries differ", self.differences)?;
            for d in &self.first_differences {
                writeln!(f, "  {d}")?;
            }
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
