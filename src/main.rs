//! `janus`: one member of a janus cluster, serving the etcd v3 API and the
//! ZooKeeper protocol on the same replicated store.
//!
//! Flags keep etcd's names and meaning (D12); each also reads a `JANUS_`
//! environment variable (`--data-dir` ↔ `JANUS_DATA_DIR`), as etcd's read
//! `ETCD_`.

mod config;
mod logging;
mod migrate;
mod snapshot_cli;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;

use config::Args;

/// mimalloc instead of glibc's malloc: apply allocates on its own thread
/// what tokio's workers free (events, replies), and glibc's per-thread
/// arenas spent about a fifth of the apply thread's time in `_int_malloc`
/// and `malloc_consolidate` under write load (perf, zk set at 256 clients).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `janus migrate ...` and `janus snapshot ...` are tools of their own;
    // every other command line starts a member.
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => {
            logging::init("info", "text")?;
            return migrate::main(std::env::args().skip(2));
        }
        Some("snapshot") => return snapshot_cli::main(std::env::args()),
        _ => {}
    }
    let args = Args::parse();
    logging::init(&args.log_level, &args.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    args.jwt()?;
    let node_cfg = args.node_config()?;
    let (retention, compaction_interval) = args.compaction()?;
    let corrupt_check_time = args.corrupt_check_time()?;
    tracing::info!(
        name = %node_cfg.name,
        member_id = format!("{:x}", node_cfg.member_id),
        data_dir = %node_cfg.data_dir.display(),
        "starting janus"
    );
    let node = janus_core::Node::start(node_cfg)
        .with_context(|| format!("cannot open data dir {}", args.data_dir().display()))?;

    if args.experimental_initial_corrupt_check {
        // Before serving clients, as etcd checks before it starts serving.
        if let Err(e) = janus_core::corrupt_check::initial_check(&node).await {
            let n = node.clone();
            let _ = tokio::task::spawn_blocking(move || n.stop()).await;
            return Err(anyhow::anyhow!("initial corruption check failed: {e}"));
        }
    }
    // Aborted when dropped, before the node stops.
    let corrupt_check = corrupt_check_time.map(|t| {
        AbortOnDrop(tokio::spawn(janus_core::corrupt_check::run(
            node.clone(),
            t,
        )))
    });
    let compactor = retention.map(|r| {
        tracing::info!(retention = ?r, "auto-compaction on");
        AbortOnDrop(tokio::spawn(janus_core::compactor::run(
            node.clone(),
            r,
            compaction_interval,
        )))
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let mut tasks = tokio::task::JoinSet::new();
    for addr in args.client_listen_addrs()? {
        let listener = bind(addr)?;
        let cfg = args.etcd_config(addr);
        let node = node.clone();
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            janus_etcd::serve(node, cfg, listener, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    janus_core::metrics::register_node(node.clone());
    for addr in args.metrics_listen_addrs()? {
        let listener = bind(addr)?;
        let cfg = args.etcd_config(addr);
        let node = node.clone();
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            janus_etcd::serve_metrics(node, cfg, listener, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    if let Some(cfg) = args.zk_secure_config()? {
        let listener = bind(cfg.listen)?;
        let node = node.clone();
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            janus_zk::serve(node, cfg, listener, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let zk_cfg = args.zk_config()?;
    let listener = bind(zk_cfg.listen)?;
    {
        let node = node.clone();
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            janus_zk::serve(node, zk_cfg, listener, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(res) = tasks.join_next() => match res {
            Ok(Ok(())) => Err(anyhow::anyhow!("a frontend stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        },
        _ = raft_loop_failed(&node) => Err(anyhow::anyhow!(
            "the raft loop stopped after a storage failure (logged above): exiting so \
             that a supervisor restarts the member once the cause (e.g. a full disk) is fixed"
        )),
    };
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    drop(compactor);
    drop(corrupt_check);
    let n = node.clone();
    tokio::task::spawn_blocking(move || n.stop()).await?;
    tracing::info!("stopped");
    outcome
}

/// Resolves once the node's raft loop has stopped on its own (a storage
/// failure: WAL write or fsync error, full disk). The process then exits
/// non-zero instead of lingering with every request refused: fail-stop, as
/// etcd exits on a failed WAL sync, and a restart after the disk is fixed
/// replays the WAL, so nothing acknowledged is lost.
async fn raft_loop_failed(node: &janus_core::Node) {
    while !node.has_stopped() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    janus_core::sockets::listen(addr).with_context(|| format!("cannot listen on {addr}"))
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
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
