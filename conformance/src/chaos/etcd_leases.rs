//! The etcd lease clients of a fault run: lease workers (grant, put a key
//! bound to the lease, keep it alive for a while, then revoke it or let it
//! expire) and contenders for the etcd lock recipe (a key per attempt bound
//! to a lease; the lowest create revision under `/elock/` holds the lock,
//! as etcd's `concurrency.Mutex` decides).
//!
//! Choices (the checks in [`super::check`] rely on them):
//! - A lease's deadline on the leader is at least the invocation of its
//!   grant or last positively answered keepalive plus its TTL, so the key
//!   must be present in every linearizable read until then (less the
//!   leader's lease-clock jumps, [`super::record::Recorded::jump_allowance`]).
//! - A lock hold starts at the completion of the linearizable range that
//!   showed the contender's key lowest (from then on no key can come before
//!   it) and ends before its key is deleted, or, if that comes first, half a
//!   TTL after the lease was last renewed (after which it could expire).

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, PutOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::record::{nanos, Hold, LeaseEnd, LeaseLife};
use super::workload::{etcd_connect, Shared, OP_TIMEOUT};

/// TTL of every workload lease, as long as the ZooKeeper session timeout:
/// every fault is shorter.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a kept lease is renewed.
const KEEPALIVE_EVERY: Duration = Duration::from_millis(1000);

/// Grants a lease of [`LEASE_TTL`]; returns it and the grant's invocation.
async fn grant(cl: &mut Client, sh: &Shared) -> Option<(i64, u64)> {
    let t = sh.clock.now();
    match tokio::time::timeout(OP_TIMEOUT, cl.lease_grant(LEASE_TTL.as_secs() as i64, None)).await {
        Ok(Ok(r)) if r.ttl() > 0 => Some((r.id(), t)),
        _ => None,
    }
}

/// One keepalive round trip: `Some(ttl)` if answered (0: no such lease).
async fn keepalive_once(cl: &mut Client, lease: i64) -> Option<i64> {
    let round = async {
        let (mut keeper, mut stream) = cl.lease_keep_alive(lease).await.ok()?;
        keeper.keep_alive().await.ok()?;
        let resp = stream.message().await.ok()??;
        Some(resp.ttl())
    };
    tokio::time::timeout(OP_TIMEOUT, round).await.ok()?
}

/// Revokes a lease, retrying through errors for a few seconds; returns the
/// invocation and completion of the revoke that succeeded.
async fn revoke(cl: &mut Client, sh: &Shared, lease: i64) -> Option<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let t = sh.clock.now();
        match tokio::time::timeout(OP_TIMEOUT, cl.lease_revoke(lease)).await {
            Ok(Ok(_)) => return Some((t, sh.clock.now())),
            // Already gone (an earlier attempt did it): the key is gone too,
            // but when is not known.
            Ok(Err(e)) if e.to_string().contains("lease not found") => return None,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// A lease worker: one lease and key at a time.
pub async fn lease_worker(id: u64, eps: Vec<String>, sh: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (0x1ea5_e000 + id));
    let mut cl = etcd_connect(&eps).await;
    let mut n = 0u64;
    while !sh.stopped() {
        let Some((lease, granted)) = grant(&mut cl, &sh).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        n += 1;
        let key = format!("/lease/k{id}-{n}");
        let put = cl.put(key.as_str(), "x", Some(PutOptions::new().with_lease(lease)));
        let bound = match tokio::time::timeout(OP_TIMEOUT, put).await {
            Ok(Ok(_)) => Some(sh.clock.now()),
            _ => None,
        };
        let idx = {
            let mut r = sh.rec.lock().unwrap();
            r.leases.push(LeaseLife {
                client: id,
                lease,
                key: key.clone(),
                ttl: LEASE_TTL,
                bound,
                renewed: granted,
                reported_gone: None,
                end: LeaseEnd::Kept,
            });
            r.leases.len() - 1
        };
        // Keep it alive for a while.
        let keep = Instant::now() + Duration::from_millis(rng.gen_range(2000..6000));
        let mut gone = false;
        while Instant::now() < keep && !sh.stopped() {
            tokio::time::sleep(KEEPALIVE_EVERY).await;
            let t = sh.clock.now();
            match keepalive_once(&mut cl, lease).await {
                Some(ttl) if ttl > 0 => sh.rec.lock().unwrap().leases[idx].renewed = t,
                Some(_) => {
                    sh.rec.lock().unwrap().leases[idx].reported_gone = Some(sh.clock.now());
                    gone = true;
                    break;
                }
                None => {}
            }
        }
        if sh.stopped() {
            break;
        }
        let end = if gone || rng.gen_bool(0.5) {
            LeaseEnd::Abandoned
        } else {
            match revoke(&mut cl, &sh, lease).await {
                Some((invoked, completed)) => LeaseEnd::Revoked { invoked, completed },
                None => LeaseEnd::Abandoned,
            }
        };
        sh.rec.lock().unwrap().leases[idx].end = end;
    }
}

/// A contender for the etcd lock (`/elock/`, lowest create revision holds).
pub async fn etcd_lock_contender(id: u64, eps: Vec<String>, sh: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (0xe10c_0000 + id));
    let mut cl = etcd_connect(&eps).await;
    let mut attempt = 0u64;
    let safe = nanos(LEASE_TTL) / 2;
    'attempts: while !sh.stopped() {
        let Some((lease, mut renewed)) = grant(&mut cl, &sh).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        attempt += 1;
        let key = format!("/elock/c{id}-{attempt}");
        let put = cl.put(key.as_str(), "", Some(PutOptions::new().with_lease(lease)));
        if !matches!(tokio::time::timeout(OP_TIMEOUT, put).await, Ok(Ok(_))) {
            // Unknown: the key may exist; revoking the lease removes it.
            let _ = revoke(&mut cl, &sh, lease).await;
            continue;
        }
        // Wait until ours is the lowest, renewing the lease meanwhile.
        let mut last_renewal = Instant::now();
        let start = loop {
            if sh.stopped() {
                let _ = revoke(&mut cl, &sh, lease).await;
                break 'attempts;
            }
            if last_renewal.elapsed() >= KEEPALIVE_EVERY {
                let t = sh.clock.now();
                last_renewal = Instant::now();
                match keepalive_once(&mut cl, lease).await {
                    Some(ttl) if ttl > 0 => renewed = t,
                    Some(_) => continue 'attempts,
                    None => {}
                }
            }
            let get = cl.get("/elock/", Some(GetOptions::new().with_prefix()));
            if let Ok(Ok(resp)) = tokio::time::timeout(OP_TIMEOUT, get).await {
                let done = sh.clock.now();
                let mine = resp.kvs().iter().find(|kv| kv.key() == key.as_bytes());
                let Some(mine) = mine else {
                    // Our lease expired: start over.
                    continue 'attempts;
                };
                let lowest = resp.kvs().iter().map(|kv| kv.create_revision()).min();
                if lowest == Some(mine.create_revision()) && done < renewed + safe {
                    break done;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Hold it, but never past half a TTL after the last renewal.
        let until = Instant::now() + Duration::from_millis(rng.gen_range(20..150));
        while Instant::now() < until && sh.clock.now() < renewed + safe {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let now = sh.clock.now();
        let end = now.min(renewed + safe);
        sh.rec.lock().unwrap().etcd_holds.push(Hold {
            contender: id,
            start,
            end,
            lost: now > end,
        });
        // Release: revoking the lease deletes the key.
        let _ = revoke(&mut cl, &sh, lease).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
    }
}

/// Whether every lease worker's key under `/lease/` for an abandoned lease
/// is gone from the latest observation.
pub fn abandoned_leases_gone(sh: &Shared) -> bool {
    let r = sh.rec.lock().unwrap();
    let Some(last) = r.lease_observations.last() else {
        return r.leases.is_empty();
    };
    r.leases
        .iter()
        .filter(|l| l.end == LeaseEnd::Abandoned)
        .all(|l| !last.present.contains(&l.key))
}
