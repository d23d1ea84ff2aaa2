//! etcd workloads over the `etcd-client` crate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse,
};
use futures::stream::{self, StreamExt};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::{timed, value, BenchError, Control, EtcdWorkload, RunConfig, TaskStats};

/// Connections and data shared by the tasks of one run.
#[derive(Clone)]
pub struct Prepared {
    conns: Vec<Client>,
    workload: EtcdWorkload,
    value: Arc<Vec<u8>>,
}

/// Key prefix of every key the benchmark writes.
pub const PREFIX: &str = "/bench/";

fn key(workload: &str, n: u64) -> String {
    format!("{PREFIX}{workload}/k{n:08}")
}

pub async fn connect(endpoint: &str) -> Result<Client, BenchError> {
    let eps: Vec<&str> = endpoint.split(',').map(str::trim).collect();
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    Client::connect(eps, Some(opts))
        .await
        .map_err(|e| BenchError::Connect {
            endpoint: endpoint.to_string(),
            msg: e.to_string(),
        })
}

pub(super) async fn prepare(
    cfg: &RunConfig,
    workload: EtcdWorkload,
) -> Result<Prepared, BenchError> {
    let mut conns = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        conns.push(connect(&cfg.endpoint).await?);
    }
    let value = Arc::new(value(cfg.value_size));
    if matches!(
        workload,
        EtcdWorkload::Range | EtcdWorkload::RangeSerializable
    ) {
        preload(&conns, "range", cfg.keys, &value).await?;
    }
    Ok(Prepared {
        conns,
        workload,
        value,
    })
}

/// Writes keys 0..n of `workload`'s key space, 32 at a time.
async fn preload(conns: &[Client], workload: &str, n: u64, value: &[u8]) -> Result<(), BenchError> {
    let results: Vec<Result<(), String>> = stream::iter(0..n)
        .map(|i| {
            let mut c = conns[i as usize % conns.len()].clone();
            let k = key(workload, i);
            let v = value.to_vec();
            async move {
                c.put(k, v, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(BenchError::Setup(format!("preloading {n} keys: {e}"))),
        None => Ok(()),
    }
}

/// Per-task state that outlives single operations.
enum State {
    None,
    Cas {
        key: String,
        version: i64,
    },
    Watch {
        key: String,
        stream: etcd_client::WatchStream,
        _watcher: etcd_client::Watcher,
    },
    Lease {
        keeper: etcd_client::LeaseKeeper,
        stream: etcd_client::LeaseKeepAliveStream,
    },
}

pub(super) async fn task(p: Prepared, cfg: RunConfig, task: usize, ctl: Arc<Control>) -> TaskStats {
    let mut stats = TaskStats::new();
    let mut client = p.conns[task % p.conns.len()].clone();
    let mut rng = SmallRng::seed_from_u64(0x006a_616e_7573 ^ task as u64);
    let mut state = match setup_task(&mut client, p.workload, task).await {
        Ok(s) => s,
        Err(e) => {
            ctl.error(true, format!("task {task} setup: {e}"));
            return stats;
        }
    };
    let keys = cfg.keys.max(1);
    while let Some(measured) = ctl.next_op() {
        let t0 = Instant::now();
        let r: Result<Option<Instant>, String> = match (&mut state, p.workload) {
            (_, EtcdWorkload::Put) => {
                let k = key("put", rng.gen_range(0..keys));
                timed(&ctl, client.put(k, p.value.to_vec(), None))
                    .await
                    .map(|_| None)
            }
            (_, EtcdWorkload::Range) | (_, EtcdWorkload::RangeSerializable) => {
                let k = key("range", rng.gen_range(0..keys));
                let opts = (p.workload == EtcdWorkload::RangeSerializable)
                    .then(|| GetOptions::new().with_serializable());
                match timed(&ctl, client.get(k.clone(), opts)).await {
                    Ok(r) if r.kvs().len() == 1 => Ok(None),
                    Ok(r) => Err(format!("range {k}: {} kvs, expected 1", r.kvs().len())),
                    Err(e) => Err(e),
                }
            }
            (State::Cas { key, version }, EtcdWorkload::TxnCas) => {
                let txn = Txn::new()
                    .when([Compare::version(key.as_str(), CompareOp::Equal, *version)])
                    .and_then([TxnOp::put(key.as_str(), p.value.to_vec(), None)])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                match timed(&ctl, client.txn(txn)).await {
                    Ok(r) if r.succeeded() => {
                        *version += 1;
                        Ok(None)
                    }
                    Ok(r) => {
                        // Lost the race (only possible with a shared key):
                        // learn the version and count the conflict.
                        stats.note("cas_conflicts", 1);
                        for op in r.op_responses() {
                            if let TxnOpResponse::Get(g) = op {
                                *version = g.kvs().first().map(|kv| kv.version()).unwrap_or(0);
                            }
                        }
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            (State::Watch { key, stream, .. }, EtcdWorkload::Watch) => {
                // Poll the put and the stream together so the event's
                // arrival is timed even when it precedes the put response.
                let put = timed(&ctl, client.put(key.as_str(), p.value.to_vec(), None));
                match tokio::join!(put, wait_event(&ctl, stream)) {
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    (Ok(_), Ok(at)) => Ok(at),
                }
            }
            (State::Lease { keeper, stream }, EtcdWorkload::LeaseKeepalive) => {
                match timed(&ctl, keeper.keep_alive()).await {
                    Err(e) => Err(e),
                    Ok(()) => match timed(&ctl, stream.message()).await {
                        Ok(Some(r)) if r.ttl() > 0 => Ok(None),
                        Ok(Some(r)) => Err(format!("keepalive answered ttl {}", r.ttl())),
                        Ok(None) => Err("keepalive stream closed".to_string()),
                        Err(e) => Err(e),
                    },
                }
            }
            _ => Err("internal: task state does not match the workload".to_string()),
        };
        match r {
            Ok(at) => stats.record(&ctl, measured, at.unwrap_or_else(Instant::now) - t0),
            Err(e) => {
                ctl.error(measured, e);
                if matches!(state, State::Watch { .. } | State::Lease { .. }) {
                    // A broken stream stays broken: stop this task.
                    break;
                }
            }
        }
    }
    if let State::Lease { keeper, .. } = &state {
        let _ = client.lease_revoke(keeper.id()).await;
    }
    stats
}

/// Waits for the next put event on a watch stream; returns its arrival time.
async fn wait_event(
    ctl: &Control,
    stream: &mut etcd_client::WatchStream,
) -> Result<Option<Instant>, String> {
    loop {
        match timed(ctl, stream.message()).await {
            Ok(Some(r)) if r.canceled() => {
                return Err(format!("watch canceled: {}", r.cancel_reason()))
            }
            Ok(Some(r)) if !r.events().is_empty() => return Ok(Some(Instant::now())),
            Ok(Some(_)) => continue, // progress notification
            Ok(None) => return Err("watch stream closed".to_string()),
            Err(e) => return Err(e),
        }
    }
}

async fn setup_task(
    client: &mut Client,
    workload: EtcdWorkload,
    task: usize,
) -> Result<State, String> {
    match workload {
        EtcdWorkload::TxnCas => {
            let key = key("cas", task as u64);
            let r = client
                .get(key.as_str(), None)
                .await
                .map_err(|e| e.to_string())?;
            let version = r.kvs().first().map(|kv| kv.version()).unwrap_or(0);
            Ok(State::Cas { key, version })
        }
        EtcdWorkload::Watch => {
            let key = key("watch", task as u64);
            let (watcher, stream) = client
                .watch(key.as_str(), None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(State::Watch {
                key,
                stream,
                _watcher: watcher,
            })
        }
        EtcdWorkload::LeaseKeepalive => {
            let lease = client
                .lease_grant(60, None)
                .await
                .map_err(|e| e.to_string())?;
            let (keeper, stream) = client
                .lease_keep_alive(lease.id())
                .await
                .map_err(|e| e.to_string())?;
            Ok(State::Lease { keeper, stream })
        }
        _ => Ok(State::None),
    }
}

/// Writes `n` distinct keys `{prefix}{i:08}` of `value_size` bytes, each
/// once, `clients` at a time over up to 8 connections; returns the
/// measurements (used by the memory benchmark).
pub async fn load_distinct(
    endpoint: &str,
    prefix: &str,
    n: u64,
    value_size: usize,
    clients: usize,
) -> Result<super::RunResult, BenchError> {
    let clients = clients.max(1);
    let conns_n = clients.min(8);
    let mut conns = Vec::with_capacity(conns_n);
    for _ in 0..conns_n {
        conns.push(connect(endpoint).await?);
    }
    let value = Arc::new(value(value_size));
    let started = Instant::now();
    let results: Vec<Result<Duration, String>> = stream::iter(0..n)
        .map(|i| {
            let mut c = conns[i as usize % conns.len()].clone();
            let k = format!("{prefix}{i:08}");
            let v = value.to_vec();
            async move {
                let t0 = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), c.put(k, v, None)).await {
                    Ok(Ok(_)) => Ok(t0.elapsed()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out after 10s".to_string()),
                }
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut stats = TaskStats::new();
    let mut errors = 0;
    let mut first_errors = Vec::new();
    for r in results {
        match r {
            Ok(d) => {
                let _ = stats.hist.record((d.as_micros() as u64).max(1));
            }
            Err(e) => {
                errors += 1;
                if first_errors.len() < 5 {
                    first_errors.push(e);
                }
            }
        }
    }
    Ok(super::RunResult {
        workload: super::Workload::Etcd(EtcdWorkload::Put),
        clients,
        connections: conns_n,
        ops: stats.hist.len(),
        errors,
        elapsed,
        latency_us: stats.hist,
        first_errors,
        notes: Vec::new(),
        server_cpu: None,
    })
}
