//! ZooKeeper workloads over the `zookeeper-client` crate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use zookeeper_client as zk;

use super::{timed, value, BenchError, Control, RunConfig, TaskStats, ZkWorkload};

/// Parent of every znode the benchmark writes.
pub const ROOT: &str = "/bench";

/// Sessions and data shared by the tasks of one run.
#[derive(Clone)]
pub struct Prepared {
    conns: Vec<zk::Client>,
    workload: ZkWorkload,
    value: Arc<Vec<u8>>,
    /// The watching sessions and their watches, kept for the run.
    _watching: Arc<Vec<(zk::Client, zk::OneshotWatcher)>>,
}

fn dir(workload: ZkWorkload) -> String {
    let name = match workload {
        ZkWorkload::Create => "create",
        ZkWorkload::Set => "set",
        ZkWorkload::Get => "get",
        ZkWorkload::EphemeralSeq => "eseq",
        ZkWorkload::Watch => "watch",
    };
    format!("{ROOT}/{name}")
}

pub async fn connect(endpoint: &str) -> Result<zk::Client, BenchError> {
    zk::Client::connector()
        .session_timeout(Duration::from_secs(30))
        .connect(endpoint)
        .await
        .map_err(|e| BenchError::Connect {
            endpoint: endpoint.to_string(),
            msg: e.to_string(),
        })
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Creates a persistent znode unless it exists.
async fn ensure(c: &zk::Client, path: &str, data: &[u8]) -> Result<(), BenchError> {
    match c.create(path, data, &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(BenchError::Setup(format!("create {path}: {e}"))),
    }
}

pub(super) async fn prepare(cfg: &RunConfig, workload: ZkWorkload) -> Result<Prepared, BenchError> {
    let mut conns = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        conns.push(connect(&cfg.endpoint).await?);
    }
    let value = Arc::new(value(cfg.value_size));
    let first = &conns[0];
    ensure(first, ROOT, b"").await?;
    let d = dir(workload);
    ensure(first, &d, b"").await?;
    match workload {
        ZkWorkload::Get => {
            let results: Vec<Result<(), BenchError>> = stream::iter(0..cfg.keys.max(1))
                .map(|i| {
                    let c = conns[i as usize % conns.len()].clone();
                    let path = format!("{d}/k{i:08}");
                    let v = value.clone();
                    async move { ensure(&c, &path, &v).await }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e);
            }
        }
        ZkWorkload::Set | ZkWorkload::Watch => {
            for t in 0..cfg.clients {
                ensure(first, &format!("{d}/t{t}"), &value).await?;
            }
        }
        ZkWorkload::Create | ZkWorkload::EphemeralSeq => {}
    }
    let watching = watching_sessions(cfg, first).await?;
    Ok(Prepared {
        conns,
        workload,
        value,
        _watching: Arc::new(watching),
    })
}

/// Opens [`RunConfig::watching_sessions`] sessions, each with an exists
/// watch on `/bench/idle/w<i>` (created first, never written).
async fn watching_sessions(
    cfg: &RunConfig,
    first: &zk::Client,
) -> Result<Vec<(zk::Client, zk::OneshotWatcher)>, BenchError> {
    if cfg.watching_sessions == 0 {
        return Ok(Vec::new());
    }
    let d = format!("{ROOT}/idle");
    ensure(first, &d, b"").await?;
    let results: Vec<Result<(zk::Client, zk::OneshotWatcher), BenchError>> =
        stream::iter(0..cfg.watching_sessions)
            .map(|i| {
                let (ep, path) = (cfg.endpoint.clone(), format!("{d}/w{i}"));
                let first = first.clone();
                async move {
                    ensure(&first, &path, b"").await?;
                    let c = connect(&ep).await?;
                    let (_, w) = c
                        .check_and_watch_stat(&path)
                        .await
                        .map_err(|e| BenchError::Setup(format!("exists+watch {path}: {e}")))?;
                    Ok((c, w))
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
    results.into_iter().collect()
}

pub(super) async fn task(p: Prepared, cfg: RunConfig, task: usize, ctl: Arc<Control>) -> TaskStats {
    let mut stats = TaskStats::new();
    let c = p.conns[task % p.conns.len()].clone();
    let mut rng = SmallRng::seed_from_u64(0x7a6b ^ task as u64);
    let d = dir(p.workload);
    let own = format!("{d}/t{task}");
    let keys = cfg.keys.max(1);
    let eseq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let mut i: u64 = 0;
    while let Some(measured) = ctl.next_op() {
        i += 1;
        let t0 = Instant::now();
        let r: Result<Option<Instant>, String> = match p.workload {
            ZkWorkload::Create => {
                let path = format!("{d}/t{task}-{i}");
                timed(&ctl, c.create(&path, &p.value, &persistent()))
                    .await
                    .map(|_| None)
            }
            ZkWorkload::Set => timed(&ctl, c.set_data(&own, &p.value, None))
                .await
                .map(|_| None),
            ZkWorkload::Get => {
                let path = format!("{d}/k{:08}", rng.gen_range(0..keys));
                match timed(&ctl, c.get_data(&path)).await {
                    Ok((data, _)) if data.len() == p.value.len() => Ok(None),
                    Ok((data, _)) => Err(format!(
                        "getData {path}: {} bytes, expected {}",
                        data.len(),
                        p.value.len()
                    )),
                    Err(e) => Err(e),
                }
            }
            ZkWorkload::EphemeralSeq => {
                let path = format!("{d}/n-");
                timed(&ctl, c.create(&path, &p.value, &eseq))
                    .await
                    .map(|_| None)
            }
            ZkWorkload::Watch => match timed(&ctl, c.get_and_watch_data(&own)).await {
                Err(e) => Err(format!("getData+watch: {e}")),
                Ok((_, _, watcher)) => {
                    let t1 = Instant::now();
                    let set = timed(&ctl, c.set_data(&own, &p.value, None));
                    let event = async {
                        match tokio::time::timeout(ctl.op_timeout, watcher.changed()).await {
                            Ok(ev) if ev.event_type == zk::EventType::NodeDataChanged => {
                                Ok(Instant::now())
                            }
                            Ok(ev) => Err(format!(
                                "unexpected watch event {:?} ({:?})",
                                ev.event_type, ev.session_state
                            )),
                            Err(_) => Err("no watch event before the timeout".to_string()),
                        }
                    };
                    match tokio::join!(set, event) {
                        (Err(e), _) | (_, Err(e)) => Err(e),
                        // Latency from the setData, not from the getData
                        // that armed the watch.
                        (Ok(_), Ok(at)) => Ok(Some(at - (t1 - t0))),
                    }
                }
            },
        };
        match r {
            Ok(at) => stats.record(&ctl, measured, at.unwrap_or_else(Instant::now) - t0),
            Err(e) => ctl.error(measured, e),
        }
    }
    stats
}
