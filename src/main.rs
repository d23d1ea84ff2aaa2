//! `janus`: one member of a janus cluster, serving the etcd v3 API and the
//! ZooKeeper protocol on the same replicated store.
//!
//! Flags keep etcd's names and meaning (D12); each also reads a `JANUS_`
//! environment variable (`--data-dir` ↔ `JANUS_DATA_DIR`), as etcd's read
//! `ETCD_`.

mod config;
mod logging;
mod snapshot_cli;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;

use config::Args;

fn main() -> anyhow::Result<()> {
    // `janus snapshot ...`; anything else is the server's flags.
    if std::env::args().nth(1).as_deref() == Some("snapshot") {
        return snapshot_cli::main(std::env::args());
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
    tracing::info!(
        name = %node_cfg.name,
        member_id = format!("{:x}", node_cfg.member_id),
        data_dir = %node_cfg.data_dir.display(),
        "starting janus"
    );
    let node = janus_core::Node::start(node_cfg)
        .with_context(|| format!("cannot open data dir {}", args.data_dir().display()))?;

    // Aborted when dropped, before the node stops.
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
        let listener = bind(addr).await?;
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
        let listener = bind(addr).await?;
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
        let listener = bind(cfg.listen).await?;
        let node = node.clone();
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            janus_zk::serve(node, cfg, listener, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let zk_cfg = args.zk_config()?;
    let listener = bind(zk_cfg.listen).await?;
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
    };
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    drop(compactor);
    let n = node.clone();
    tokio::task::spawn_blocking(move || n.stop()).await?;
    tracing::info!("stopped");
    outcome
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
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
