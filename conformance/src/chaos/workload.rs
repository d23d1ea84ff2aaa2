//! The clients of a fault run and the cluster queries around it: etcd
//! workers (get, put, txn compare-and-set), ZooKeeper workers (sync+getData,
//! setData with and without a version, multi), ZooKeeper lock contenders
//! (the ephemeral-sequential recipe), a monitor of ephemerals and lease
//! keys, abandoned sessions, etcd watchers that resume, and [`Workload`] to
//! start and stop them all, with the etcd lease clients of
//! [`super::etcd_leases`] and the watch-order clients of
//! [`super::zk_watch_order`].
//!
//! Choices (the checks in [`super::check`] rely on them):
//! - A register's value is a decimal u64, unique per write; its version is
//!   the etcd version (ZooKeeper version + 1, D3); the registers
//!   `/lin/r0..` are created by ZooKeeper with value 0 (version 1).
//! - ZooKeeper reads are only sequentially consistent, so a ZooKeeper read
//!   is recorded as `sync` followed by `getData` on the same session, with
//!   the interval from the sync's invocation to the getData's completion
//!   (janus's sync waits for a ReadIndex, D8).
//! - Any error other than a definite "compare failed" (etcd txn not
//!   succeeded, ZooKeeper BadVersion) leaves the outcome unknown: the
//!   operation is recorded as never completed.
//! - No session may expire during a run: every fault is shorter than the
//!   session timeout (D9); an expiry is recorded as a problem.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zookeeper_client as zk;

use super::etcd_leases::{abandoned_leases_gone, etcd_lock_contender, lease_worker, LEASE_TTL};
use super::record::{
    nanos, parse_value, reg_key, register_of, Applied, Clock, EphObs, EphOwner, Hold, MultiOp,
    Proto, Recorded, RegOp, WatchLog,
};
use super::zk_watch_order::watch_order_client;
use crate::cluster::Cluster;
use crate::linearizability::{RegisterInput, RegisterOutput};

/// Requested ZooKeeper session timeout (the cluster's maximum at
/// `--zk-tick-ms 500`); every fault is shorter.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-operation timeout; past it the outcome is unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(8);

pub async fn etcd_connect(eps: &[String]) -> Client {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(4))
        .with_connect_timeout(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(eps, Some(opts.clone())).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "etcd connect: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

pub async fn zk_session(cs: &str, detached: bool) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = zk::Client::connector();
        c.session_timeout(SESSION_TIMEOUT);
        if detached {
            c.detached();
        }
        match tokio::time::timeout(Duration::from_secs(10), c.connect(cs)).await {
            Ok(Ok(cl)) => return cl,
            e => {
                assert!(Instant::now() < deadline, "zk connect: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

pub fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

pub fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// Creates the session's ephemeral (retrying through connection loss) and
/// registers its owner; `alive_until` is filled in at the end.
pub async fn own_ephemeral(
    cl: &zk::Client,
    path: &str,
    clock: Clock,
    rec: &Mutex<Recorded>,
    abandoned: bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(OP_TIMEOUT, cl.create(path, b"", &ephemeral())).await {
            Ok(Ok(_)) | Ok(Err(zk::Error::NodeExists)) => break,
            e => {
                assert!(Instant::now() < deadline, "create {path}: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let mut r = rec.lock().unwrap();
    r.owners.push(EphOwner {
        path: path.to_string(),
        created: clock.now(),
        alive_until: 0,
        abandoned,
    });
    r.owners.len() - 1
}

pub struct Shared {
    pub clock: Clock,
    pub rec: Mutex<Recorded>,
    pub stop: AtomicBool,
    pub stop_monitor: AtomicBool,
    pub seed: u64,
    /// Number of registers (`/lin/r0..`).
    pub registers: usize,
    /// Completed register operations so far (progress reports).
    pub done: AtomicU64,
}

impl Shared {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    pub fn push(&self, op: RegOp) {
        if op.completed.is_some() {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        self.rec.lock().unwrap().ops.push(op);
    }
    pub fn problem(&self, p: String) {
        eprintln!("PROBLEM: {p}");
        self.rec.lock().unwrap().problems.push(p);
    }
}

pub fn value_of(client: u64, seq: u64) -> u64 {
    client * 1_000_000_000 + seq
}

pub async fn etcd_worker(id: u64, eps: Vec<String>, sh: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cl = etcd_connect(&eps).await;
    let mut known = vec![1i64; sh.registers];
    let mut seq = 0u64;
    while !sh.stopped() {
        let r = rng.gen_range(0..sh.registers);
        let key = reg_key(r);
        let kind = rng.gen_range(0..10);
        let mut op = RegOp {
            register: r,
            client: id,
            proto: Proto::Etcd,
            input: RegisterInput::Read,
            output: None,
            invoked: 0,
            completed: None,
            revision: None,
        };
        let mut failed = false;
        if kind < 4 {
            op.invoked = sh.clock.now();
            match tokio::time::timeout(OP_TIMEOUT, cl.get(key.as_str(), None)).await {
                Ok(Ok(resp)) => {
                    op.completed = Some(sh.clock.now());
                    let (value, version, rev) = match resp.kvs().first() {
                        Some(kv) => (
                            Some(parse_value(kv.value())),
                            kv.version(),
                            Some(kv.mod_revision()),
                        ),
                        None => (None, 0, None),
                    };
                    known[r] = version;
                    op.output = Some(RegisterOutput::Read {
                        value,
                        version: Some(version),
                    });
                    op.revision = rev;
                }
                _ => failed = true,
            }
        } else {
            seq += 1;
            let value = value_of(id, seq);
            let data = value.to_string();
            if kind < 7 {
                op.input = RegisterInput::Write(value);
                op.invoked = sh.clock.now();
                let put = cl.put(
                    key.as_str(),
                    data.as_str(),
                    Some(PutOptions::new().with_prev_key()),
                );
                match tokio::time::timeout(OP_TIMEOUT, put).await {
                    Ok(Ok(resp)) => {
                        op.completed = Some(sh.clock.now());
                        let version = resp.prev_key().map(|p| p.version() + 1);
                        if let Some(v) = version {
                            known[r] = v;
                        }
                        op.output = Some(RegisterOutput::Written { version });
                        op.revision = resp.header().map(|h| h.revision());
                    }
                    _ => failed = true,
                }
            } else {
                let expected = known[r];
                op.input = RegisterInput::CompareAndSet {
                    expected_version: expected,
                    value,
                };
                let txn = Txn::new()
                    .when([Compare::version(key.as_str(), CompareOp::Equal, expected)])
                    .and_then([TxnOp::put(key.as_str(), data.as_str(), None)])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                op.invoked = sh.clock.now();
                match tokio::time::timeout(OP_TIMEOUT, cl.txn(txn)).await {
                    Ok(Ok(resp)) => {
                        op.completed = Some(sh.clock.now());
                        if resp.succeeded() {
                            known[r] = expected + 1;
                            op.output = Some(RegisterOutput::Cas {
                                ok: true,
                                version: Some(expected + 1),
                            });
                            op.revision = resp.header().map(|h| h.revision());
                        } else {
                            op.output = Some(RegisterOutput::Cas {
                                ok: false,
                                version: None,
                            });
                            for o in resp.op_responses() {
                                if let TxnOpResponse::Get(g) = o {
                                    if let Some(kv) = g.kvs().first() {
                                        known[r] = kv.version();
                                    }
                                }
                            }
                        }
                    }
                    _ => failed = true,
                }
            }
        }
        sh.push(op);
        if failed {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A ZooKeeper client on its own session. Returns the session (still open)
/// and its ephemeral's owner index, for the end-of-run checks.
pub async fn zk_worker(id: u64, cs: String, sh: Arc<Shared>) -> (zk::Client, usize) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cl = zk_session(&cs, false).await;
    let mut owner = own_ephemeral(&cl, &format!("/lin-eph/zk{id}"), sh.clock, &sh.rec, false).await;
    let mut known = vec![1i64; sh.registers];
    let mut seq = 0u64;
    let mut sessions = 1;
    while !sh.stopped() {
        let r = rng.gen_range(0..sh.registers);
        let key = reg_key(r);
        let kind = rng.gen_range(0..12);
        if kind >= 10 && sh.registers > 1 {
            seq += 2;
            let r2 = (r + rng.gen_range(1..sh.registers)) % sh.registers;
            let err = zk_multi(&cl, &sh, id, (r, r2), seq, &mut known).await;
            if let Some(e) = err {
                if e == zk::Error::SessionExpired {
                    sh.problem(format!(
                        "ZooKeeper session of client {id} expired at {:.3}s (multi)",
                        sh.clock.secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        }
        let kind = kind % 10;
        let mut op = RegOp {
            register: r,
            client: id,
            proto: Proto::Zk,
            input: RegisterInput::Read,
            output: None,
            invoked: 0,
            completed: None,
            revision: None,
        };
        let mut err = None;
        if kind < 4 {
            // sync, then getData: recorded as one linearizable read.
            op.invoked = sh.clock.now();
            match tokio::time::timeout(OP_TIMEOUT, cl.sync(&key)).await {
                Ok(Ok(())) => match tokio::time::timeout(OP_TIMEOUT, cl.get_data(&key)).await {
                    Ok(Ok((data, stat))) => {
                        op.completed = Some(sh.clock.now());
                        let version = stat.version as i64 + 1;
                        known[r] = version;
                        op.output = Some(RegisterOutput::Read {
                            value: Some(parse_value(&data)),
                            version: Some(version),
                        });
                        op.revision = Some(stat.mzxid);
                    }
                    Ok(Err(zk::Error::NoNode)) => {
                        op.completed = Some(sh.clock.now());
                        op.output = Some(RegisterOutput::Read {
                            value: None,
                            version: Some(0),
                        });
                    }
                    Ok(Err(e)) => err = Some(e),
                    Err(_) => err = Some(zk::Error::Timeout),
                },
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some(zk::Error::Timeout),
            }
        } else {
            seq += 1;
            let value = value_of(id, seq);
            let data = value.to_string();
            let expected = (kind >= 7).then_some(known[r]);
            op.input = match expected {
                None => RegisterInput::Write(value),
                Some(v) => RegisterInput::CompareAndSet {
                    expected_version: v,
                    value,
                },
            };
            op.invoked = sh.clock.now();
            let zk_expected = expected.map(|v| (v - 1) as i32);
            match tokio::time::timeout(OP_TIMEOUT, cl.set_data(&key, data.as_bytes(), zk_expected))
                .await
            {
                Ok(Ok(stat)) => {
                    op.completed = Some(sh.clock.now());
                    let version = stat.version as i64 + 1;
                    known[r] = version;
                    op.output = Some(match expected {
                        None => RegisterOutput::Written {
                            version: Some(version),
                        },
                        Some(_) => RegisterOutput::Cas {
                            ok: true,
                            version: Some(version),
                        },
                    });
                    op.revision = Some(stat.mzxid);
                }
                Ok(Err(zk::Error::BadVersion)) if expected.is_some() => {
                    op.completed = Some(sh.clock.now());
                    op.output = Some(RegisterOutput::Cas {
                        ok: false,
                        version: None,
                    });
                }
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some(zk::Error::Timeout),
            }
        }
        sh.push(op);
        match err {
            None => {}
            Some(zk::Error::SessionExpired) => {
                sh.problem(format!(
                    "ZooKeeper session of client {id} expired at {:.3}s (no fault outlasts the session timeout)",
                    sh.clock.secs()
                ));
                // The expired session's ephemeral is no longer protected.
                let t = sh.rec.lock().unwrap().owners[owner].created;
                sh.rec.lock().unwrap().owners[owner].alive_until = t;
                sessions += 1;
                cl = zk_session(&cs, false).await;
                owner = own_ephemeral(
                    &cl,
                    &format!("/lin-eph/zk{id}-{sessions}"),
                    sh.clock,
                    &sh.rec,
                    false,
                )
                .await;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    (cl, owner)
}

/// A ZooKeeper multi on registers `a` and `b`: check `a`'s version (the
/// last one this client saw), set `a`, set `b`. Recorded as a
/// compare-and-set of `a` and a write of `b` with the multi's interval (in
/// the linearizability check, register by register) and as a [`MultiOp`]
/// (its atomicity). A failed check writes nothing, so only the failed
/// compare-and-set is recorded. Returns the error of an unknown outcome.
async fn zk_multi(
    cl: &zk::Client,
    sh: &Shared,
    id: u64,
    (a, b): (usize, usize),
    seq: u64,
    known: &mut [i64],
) -> Option<zk::Error> {
    let (va, vb) = (value_of(id, seq - 1), value_of(id, seq));
    let expected = known[a];
    let (ka, kb) = (reg_key(a), reg_key(b));
    let mut w = cl.new_multi_writer();
    let built = w
        .add_check_version(&ka, (expected - 1) as i32)
        .and_then(|_| w.add_set_data(&ka, va.to_string().as_bytes(), None))
        .and_then(|_| w.add_set_data(&kb, vb.to_string().as_bytes(), None));
    if let Err(e) = built {
        sh.problem(format!("test bug: multi not built: {e}"));
        return None;
    }
    let mut op_a = RegOp {
        register: a,
        client: id,
        proto: Proto::Zk,
        input: RegisterInput::CompareAndSet {
            expected_version: expected,
            value: va,
        },
        output: None,
        invoked: sh.clock.now(),
        completed: None,
        revision: None,
    };
    let mut op_b = RegOp {
        register: b,
        input: RegisterInput::Write(vb),
        ..op_a.clone()
    };
    let res = tokio::time::timeout(OP_TIMEOUT, w.commit()).await;
    let mut multi = MultiOp {
        client: id,
        a: (a, va),
        b: (b, vb),
        ok: None,
    };
    let mut err = None;
    match res {
        Ok(Ok(results)) => {
            let now = sh.clock.now();
            let stats: Vec<zk::Stat> = results
                .into_iter()
                .filter_map(|r| match r {
                    zk::MultiWriteResult::SetData { stat } => Some(stat),
                    _ => None,
                })
                .collect();
            if let [sa, sb] = stats[..] {
                multi.ok = Some(true);
                for (op, st) in [(&mut op_a, sa), (&mut op_b, sb)] {
                    op.completed = Some(now);
                    op.revision = Some(st.mzxid);
                    known[op.register] = st.version as i64 + 1;
                }
                op_a.output = Some(RegisterOutput::Cas {
                    ok: true,
                    version: Some(sa.version as i64 + 1),
                });
                op_b.output = Some(RegisterOutput::Written {
                    version: Some(sb.version as i64 + 1),
                });
            } else {
                sh.problem(format!(
                    "multi of client {id} answered {} setData results, not 2",
                    stats.len()
                ));
            }
        }
        Ok(Err(zk::MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::BadVersion,
        })) => {
            multi.ok = Some(false);
            op_a.completed = Some(sh.clock.now());
            op_a.output = Some(RegisterOutput::Cas {
                ok: false,
                version: None,
            });
            sh.push(op_a);
            sh.rec.lock().unwrap().multis.push(multi);
            return None;
        }
        Ok(Err(zk::MultiWriteError::RequestFailed { source })) => err = Some(source),
        Ok(Err(zk::MultiWriteError::OperationFailed { source, .. })) => {
            sh.problem(format!("multi of client {id}: unexpected failure {source}"));
        }
        Err(_) => err = Some(zk::Error::Timeout),
    }
    sh.push(op_a);
    sh.push(op_b);
    sh.rec.lock().unwrap().multis.push(multi);
    err
}

pub fn seq_of(child: &str) -> i64 {
    child
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX)
}

/// Deletes a lock node, retrying through connection loss.
pub async fn release(cl: &zk::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(OP_TIMEOUT, cl.delete(path, None)).await {
            Ok(Ok(())) | Ok(Err(zk::Error::NoNode)) | Ok(Err(zk::Error::SessionExpired)) => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A lock contender: the ephemeral-sequential recipe (lowest sequence
/// holds), polling the children. Returns its session and ephemeral owner.
pub async fn lock_contender(id: u64, cs: String, sh: Arc<Shared>) -> (zk::Client, usize) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (0x10c0 + id));
    let cl = zk_session(&cs, false).await;
    let owner = own_ephemeral(&cl, &format!("/lin-eph/lock{id}"), sh.clock, &sh.rec, false).await;
    let mut attempt = 0u64;
    'attempts: while !sh.stopped() {
        if cl.state() == zk::SessionState::Expired {
            sh.problem(format!(
                "lock contender {id}: session expired at {:.3}s",
                sh.clock.secs()
            ));
            let t = sh.rec.lock().unwrap().owners[owner].created;
            sh.rec.lock().unwrap().owners[owner].alive_until = t;
            break;
        }
        attempt += 1;
        let prefix = format!("c{id}-{attempt}-");
        let path = format!("/lin-lock/{prefix}");
        let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let me = match tokio::time::timeout(OP_TIMEOUT, cl.create(&path, b"", &opts)).await {
            Ok(Ok((_, seq))) => format!("{prefix}{seq}"),
            Ok(Err(zk::Error::SessionExpired)) => continue,
            _ => {
                // Unknown: the node may exist; found (or cleaned up) below
                // as one of this contender's stale nodes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Wait until ours is the lowest.
        let start = loop {
            if sh.stopped() {
                release(&cl, &format!("/lin-lock/{me}")).await;
                break 'attempts;
            }
            match tokio::time::timeout(OP_TIMEOUT, cl.list_children("/lin-lock")).await {
                Ok(Ok(children)) => {
                    let done = sh.clock.now();
                    if !children.contains(&me) {
                        // Our node is gone (the session expired): start over.
                        continue 'attempts;
                    }
                    for stale in children
                        .iter()
                        .filter(|c| c.starts_with(&format!("c{id}-")) && **c != me)
                    {
                        release(&cl, &format!("/lin-lock/{stale}")).await;
                    }
                    let lowest = children.iter().min_by_key(|c| seq_of(c));
                    if lowest == Some(&me) && cl.state() == zk::SessionState::SyncConnected {
                        break done;
                    }
                }
                Ok(Err(zk::Error::SessionExpired)) => continue 'attempts,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Hold it, unless the session stops being connected.
        let until = Instant::now() + Duration::from_millis(rng.gen_range(20..150));
        let mut lost = false;
        while Instant::now() < until {
            if cl.state() != zk::SessionState::SyncConnected {
                lost = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let end = sh.clock.now();
        sh.rec.lock().unwrap().holds.push(Hold {
            contender: id,
            start,
            end,
            lost,
        });
        release(&cl, &format!("/lin-lock/{me}")).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
    }
    (cl, owner)
}

/// Polls every ephemeral under `/lin-eph/` and every lease worker's key
/// under `/lease/` with linearizable etcd reads.
pub async fn monitor(eps: Vec<String>, sh: Arc<Shared>) {
    let mut cl = etcd_connect(&eps).await;
    while !sh.stop_monitor.load(Ordering::Relaxed) {
        if let Some(obs) = observe_prefix(&mut cl, "/lin-eph/", &sh).await {
            sh.rec.lock().unwrap().observations.push(obs);
        }
        if let Some(obs) = observe_prefix(&mut cl, "/lease/", &sh).await {
            sh.rec.lock().unwrap().lease_observations.push(obs);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// One linearizable read of the keys under `prefix`, with its times.
async fn observe_prefix(cl: &mut Client, prefix: &str, sh: &Shared) -> Option<EphObs> {
    let invoked = sh.clock.now();
    let get = cl.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_keys_only()),
    );
    let resp = tokio::time::timeout(OP_TIMEOUT, get).await.ok()?.ok()?;
    let completed = sh.clock.now();
    let present = resp
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    Some(EphObs {
        invoked,
        completed,
        present,
    })
}

/// A session that goes away without closing: its ephemeral must stay until
/// last contact + session timeout, then go.
pub async fn abandon_session(name: String, cs: String, sh: Arc<Shared>) {
    let cl = zk_session(&cs, true).await;
    let owner = own_ephemeral(&cl, &format!("/lin-eph/{name}"), sh.clock, &sh.rec, true).await;
    let timeout = cl.session_timeout();
    // Last contact: a request's invocation (any request refreshes the
    // session, as in ZooKeeper).
    let mut last = sh.rec.lock().unwrap().owners[owner].created;
    loop {
        let t = sh.clock.now();
        if let Ok(Ok(_)) = tokio::time::timeout(OP_TIMEOUT, cl.check_stat("/lin")).await {
            last = t;
            break;
        }
        if sh.clock.now() > last + nanos(timeout) / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(cl); // detached: no closeSession
    sh.rec.lock().unwrap().owners[owner].alive_until = last + nanos(timeout);
    eprintln!(
        "[{:.1}s] abandoned session {name} (timeout {timeout:?})",
        sh.clock.secs()
    );
}

/// Status of member `i`: (its id, the leader it sees), if it answers.
pub async fn status_of(c: &Cluster, i: usize) -> Option<(u64, u64)> {
    if !c.members[i].is_running() {
        return None;
    }
    let ep = c.members[i].etcd_endpoint();
    let mut cl = tokio::time::timeout(Duration::from_secs(2), Client::connect([ep], None))
        .await
        .ok()?
        .ok()?;
    let s = tokio::time::timeout(Duration::from_secs(2), cl.status())
        .await
        .ok()?
        .ok()?;
    Some((s.header()?.member_id(), s.leader()))
}

/// Index of the leader every running member agrees on (panics after
/// `within`).
pub async fn leader_index(c: &Cluster, within: Duration) -> usize {
    match agreed_leader(c, within).await {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

/// Index of the leader every running member agrees on, or what they saw
/// when `within` ran out.
pub async fn agreed_leader(c: &Cluster, within: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = Vec::new();
        for i in 0..c.members.len() {
            if c.members[i].is_running() {
                seen.push((i, status_of(c, i).await));
            }
        }
        let leaders: BTreeSet<u64> = seen.iter().map(|(_, s)| s.map_or(0, |s| s.1)).collect();
        if leaders.len() == 1 && !leaders.contains(&0) {
            if let Some(&l) = leaders.first() {
                if let Some((i, _)) = seen.iter().find(|(_, s)| s.is_some_and(|s| s.0 == l)) {
                    return Ok(*i);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no agreed leader within {within:?}: {seen:x?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member `ep`'s history of every register: an etcd watch from revision 1
/// up to `target` (the last register change).
pub async fn applied_history(
    ep: &str,
    target: i64,
    registers: usize,
) -> Result<Vec<Vec<Applied>>, String> {
    let mut cl = etcd_connect(&[ep.to_string()]).await;
    let (_watcher, mut stream) = cl
        .watch(
            "/lin/r",
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let mut out = vec![Vec::new(); registers];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .map_err(|_| format!("watch on {ep}: revision {target} not reached"))?
            .map_err(|e| format!("watch on {ep}: {e}"))?
            .ok_or_else(|| format!("watch on {ep} ended"))?;
        if msg.compact_revision() > 0 || msg.canceled() {
            return Err(format!(
                "watch on {ep} canceled (compacted at {}): {}",
                msg.compact_revision(),
                msg.cancel_reason()
            ));
        }
        let mut done = false;
        for ev in msg.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(r) = register_of(kv.key(), registers) else {
                continue;
            };
            out[r].push(Applied {
                revision: kv.mod_revision(),
                version: kv.version(),
                value: match ev.event_type() {
                    EventType::Put => Some(parse_value(kv.value())),
                    EventType::Delete => None,
                },
            });
            done |= kv.mod_revision() >= target;
        }
        if done {
            return Ok(out);
        }
    }
}

/// An etcd watcher of every register from revision 1. It resumes from the
/// revision after the last event it got whenever the stream fails, and
/// also cancels and resumes on purpose every few seconds (possibly on
/// another member), so that resumption is exercised without faults too.
pub async fn watcher(id: u64, eps: Vec<String>, sh: Arc<Shared>) -> WatchLog {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (0x3a7c_0000 + id));
    let mut log = WatchLog {
        client: id,
        ..WatchLog::default()
    };
    let mut next_rev = 1i64;
    let mut first = true;
    while !sh.stop_monitor.load(Ordering::Relaxed) {
        if !first {
            log.resumes += 1;
        }
        first = false;
        let ep = eps[rng.gen_range(0..eps.len())].clone();
        let Ok(Ok(mut cl)) = tokio::time::timeout(
            Duration::from_secs(3),
            Client::connect(
                [ep],
                Some(ConnectOptions::new().with_connect_timeout(Duration::from_secs(2))),
            ),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next_rev);
        let Ok(Ok((mut w, mut stream))) =
            tokio::time::timeout(Duration::from_secs(3), cl.watch("/lin/r", Some(opts))).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let until = Instant::now() + Duration::from_millis(rng.gen_range(1000..5000));
        loop {
            if sh.stop_monitor.load(Ordering::Relaxed) || Instant::now() > until {
                let _ = w.cancel().await;
                break;
            }
            let msg = match tokio::time::timeout(Duration::from_millis(500), stream.message()).await
            {
                Err(_) => continue,
                Ok(Ok(Some(m))) => m,
                Ok(_) => break, // stream failed or ended: resume
            };
            if msg.compact_revision() > 0 {
                sh.problem(format!(
                    "watcher {id}: compacted at {} while resuming from {next_rev}",
                    msg.compact_revision()
                ));
                return log;
            }
            if msg.canceled() {
                break;
            }
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                let Some(r) = register_of(kv.key(), sh.registers) else {
                    continue;
                };
                let value = match ev.event_type() {
                    EventType::Put => Some(parse_value(kv.value())),
                    EventType::Delete => None,
                };
                log.events.push((kv.mod_revision(), r, kv.version(), value));
                next_rev = next_rev.max(kv.mod_revision() + 1);
            }
        }
    }
    log
}

/// What a run is made of.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub registers: usize,
    pub etcd_clients: u64,
    pub zk_clients: u64,
    pub lock_contenders: u64,
    pub watchers: u64,
    /// etcd lease workers.
    pub lease_clients: u64,
    /// Contenders for the etcd lock.
    pub etcd_lock_contenders: u64,
    /// ZooKeeper watch-order clients.
    pub watch_order_clients: u64,
}

/// A running workload: every client task of a run.
pub struct Workload {
    pub sh: Arc<Shared>,
    eps: Vec<String>,
    etcd_tasks: Vec<tokio::task::JoinHandle<()>>,
    zk_tasks: Vec<tokio::task::JoinHandle<(zk::Client, usize)>>,
    watch_tasks: Vec<tokio::task::JoinHandle<WatchLog>>,
    abandon_tasks: Vec<tokio::task::JoinHandle<()>>,
    monitor: tokio::task::JoinHandle<()>,
    idle: (zk::Client, usize),
    abandoned: usize,
}

impl Workload {
    /// Creates the registers and parents (by ZooKeeper) and starts every
    /// client against the cluster's endpoints.
    pub async fn start(c: &Cluster, cfg: &WorkloadConfig) -> Workload {
        let eps = c.etcd_endpoints();
        let cs = c.zk_connect_string();
        let admin = zk_session(&cs, false).await;
        for p in ["/lin", "/lin-eph", "/lin-lock"] {
            match admin.create(p, b"", &persistent()).await {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(e) => panic!("create {p}: {e}"),
            }
        }
        let mut initial = Vec::new();
        for r in 0..cfg.registers {
            let (stat, _) = admin
                .create(&reg_key(r), b"0", &persistent())
                .await
                .expect("create register");
            initial.push((0u64, stat.version as i64 + 1));
        }
        drop(admin);
        let sh = Arc::new(Shared {
            clock: Clock(Instant::now()),
            rec: Mutex::new(Recorded {
                initial,
                ..Recorded::default()
            }),
            stop: AtomicBool::new(false),
            stop_monitor: AtomicBool::new(false),
            seed: cfg.seed,
            registers: cfg.registers,
            done: AtomicU64::new(0),
        });
        let monitor = tokio::spawn(monitor(eps.clone(), Arc::clone(&sh)));
        let mut etcd_tasks: Vec<_> = (1..=cfg.etcd_clients)
            .map(|id| tokio::spawn(etcd_worker(id, eps.clone(), Arc::clone(&sh))))
            .collect();
        let mut zk_tasks: Vec<_> = (1..=cfg.zk_clients)
            .map(|id| tokio::spawn(zk_worker(100 + id, cs.clone(), Arc::clone(&sh))))
            .collect();
        for id in 1..=cfg.lock_contenders {
            zk_tasks.push(tokio::spawn(lock_contender(
                id,
                cs.clone(),
                Arc::clone(&sh),
            )));
        }
        for id in 1..=cfg.lease_clients {
            etcd_tasks.push(tokio::spawn(lease_worker(
                300 + id,
                eps.clone(),
                Arc::clone(&sh),
            )));
        }
        for id in 1..=cfg.etcd_lock_contenders {
            etcd_tasks.push(tokio::spawn(etcd_lock_contender(
                400 + id,
                eps.clone(),
                Arc::clone(&sh),
            )));
        }
        for id in 1..=cfg.watch_order_clients {
            etcd_tasks.push(tokio::spawn(watch_order_client(
                700 + id,
                cs.clone(),
                Arc::clone(&sh),
            )));
        }
        let watch_tasks = (1..=cfg.watchers)
            .map(|id| tokio::spawn(watcher(500 + id, eps.clone(), Arc::clone(&sh))))
            .collect();
        // An idle session: pings only.
        let idle = zk_session(&cs, false).await;
        let idle_owner = own_ephemeral(&idle, "/lin-eph/idle", sh.clock, &sh.rec, false).await;
        let mut w = Workload {
            sh,
            eps,
            etcd_tasks,
            zk_tasks,
            watch_tasks,
            abandon_tasks: Vec::new(),
            monitor,
            idle: (idle, idle_owner),
            abandoned: 0,
        };
        w.abandon_one(c);
        w
    }

    /// Starts a session that goes away without closing (its ephemeral must
    /// expire on time).
    pub fn abandon_one(&mut self, c: &Cluster) {
        self.abandoned += 1;
        self.abandon_tasks.push(tokio::spawn(abandon_session(
            format!("abandoned{}", self.abandoned),
            c.zk_connect_string(),
            Arc::clone(&self.sh),
        )));
    }

    /// Notes a fault in the recording (and prints it).
    pub fn fault(&self, what: String) {
        eprintln!("[{:.1}s] {what}", self.sh.clock.secs());
        self.sh.rec.lock().unwrap().faults.push(what);
    }

    /// Stops the clients, makes the final reads of every register through
    /// both protocols on every running member (part of the checked
    /// history), waits (bounded) for abandoned sessions to expire, checks
    /// that live sessions kept their ephemerals, and collects every
    /// running member's applied history. The cluster must have a leader.
    pub async fn finish(self, c: &Cluster) -> Recorded {
        let sh = self.sh;
        sh.stop.store(true, Ordering::Relaxed);
        eprintln!("[{:.1}s] stopping the workload", sh.clock.secs());
        for t in self.etcd_tasks {
            t.await.expect("etcd worker panicked");
        }
        let mut sessions = Vec::new();
        for t in self.zk_tasks {
            sessions.push(t.await.expect("ZooKeeper worker panicked"));
        }
        sessions.push(self.idle);
        for t in self.abandon_tasks {
            t.await.expect("abandon task panicked");
        }
        eprintln!("[{:.1}s] every client stopped", sh.clock.secs());
        leader_index(c, Duration::from_secs(30)).await;
        // A new leader restarts every session's clock (D9), so an
        // abandoned session may live a full timeout past the last fault.
        let settled = sh.clock.now();
        let running: Vec<usize> = (0..c.members.len())
            .filter(|&i| c.members[i].is_running())
            .collect();
        let eps: Vec<String> = running
            .iter()
            .map(|&i| c.members[i].etcd_endpoint())
            .collect();
        let _ = self.eps;

        let mut fin = etcd_connect(&eps).await;
        for r in 0..sh.registers {
            let invoked = sh.clock.now();
            let resp = fin.get(reg_key(r), None).await.expect("final get");
            let kv = resp.kvs().first().expect("register exists");
            sh.push(RegOp {
                register: r,
                client: 900,
                proto: Proto::Etcd,
                input: RegisterInput::Read,
                output: Some(RegisterOutput::Read {
                    value: Some(parse_value(kv.value())),
                    version: Some(kv.version()),
                }),
                invoked,
                completed: Some(sh.clock.now()),
                revision: Some(kv.mod_revision()),
            });
        }
        for &i in &running {
            let m = &c.members[i];
            let zc = zk_session(&m.zk.to_string(), false).await;
            for r in 0..sh.registers {
                let key = reg_key(r);
                let invoked = sh.clock.now();
                zc.sync(&key).await.expect("final sync");
                let (data, stat) = zc.get_data(&key).await.expect("final getData");
                sh.push(RegOp {
                    register: r,
                    client: 910 + i as u64,
                    proto: Proto::Zk,
                    input: RegisterInput::Read,
                    output: Some(RegisterOutput::Read {
                        value: Some(parse_value(&data)),
                        version: Some(stat.version as i64 + 1),
                    }),
                    invoked,
                    completed: Some(sh.clock.now()),
                    revision: Some(stat.mzxid),
                });
            }
        }

        // Abandoned sessions and leases must expire: wait (bounded) until
        // their ephemerals and keys are gone from an observation.
        let abandoned: Vec<(String, u64)> = sh
            .rec
            .lock()
            .unwrap()
            .owners
            .iter()
            .filter(|o| o.abandoned)
            .map(|o| (o.path.clone(), o.alive_until))
            .collect();
        let latest = abandoned.iter().map(|a| a.1).max().unwrap_or(0);
        let deadline = latest.max(settled + nanos(SESSION_TIMEOUT.max(LEASE_TTL)))
            + nanos(Duration::from_secs(25));
        loop {
            let gone = {
                let r = sh.rec.lock().unwrap();
                abandoned.iter().all(|(p, _)| {
                    r.observations
                        .last()
                        .is_some_and(|x| !x.present.contains(p))
                })
            };
            if (gone && abandoned_leases_gone(&sh)) || sh.clock.now() > deadline {
                eprintln!(
                    "[{:.1}s] abandoned sessions and leases {}",
                    sh.clock.secs(),
                    if gone && abandoned_leases_gone(&sh) {
                        "expired"
                    } else {
                        "not all expired (the checks will say which)"
                    }
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sh.stop_monitor.store(true, Ordering::Relaxed);
        self.monitor.await.expect("monitor panicked");
        for t in self.watch_tasks {
            let log = t.await.expect("watcher panicked");
            sh.rec.lock().unwrap().watches.push(log);
        }

        // Live sessions: still alive, their ephemeral still the one they
        // created.
        for (cl, owner) in &sessions {
            let path = sh.rec.lock().unwrap().owners[*owner].path.clone();
            if sh.rec.lock().unwrap().owners[*owner].alive_until != 0 {
                continue; // expired during the run (already a problem)
            }
            let t = sh.clock.now();
            match tokio::time::timeout(OP_TIMEOUT, cl.check_stat(&path)).await {
                Ok(Ok(Some(stat))) if stat.ephemeral_owner == cl.session_id().0 => {
                    sh.rec.lock().unwrap().owners[*owner].alive_until = t;
                }
                other => sh.problem(format!(
                    "live session {:x}: its ephemeral {path} at the end: {other:?}",
                    cl.session_id().0
                )),
            }
        }

        // Every running member's applied history of the registers.
        let target = fin
            .get("/lin/r", Some(GetOptions::new().with_prefix()))
            .await
            .expect("final range")
            .kvs()
            .iter()
            .map(|kv| kv.mod_revision())
            .max()
            .expect("registers");
        for &i in &running {
            let m = &c.members[i];
            match applied_history(&m.etcd_endpoint(), target, sh.registers).await {
                Ok(h) => sh.rec.lock().unwrap().applied.push((m.name.clone(), h)),
                Err(e) => sh.problem(format!("member {}: {e}", m.name)),
            }
        }
        drop(sessions);
        let rec = sh.rec.lock().unwrap().clone();
        rec
    }
}
