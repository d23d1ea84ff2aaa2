//! HashKV of a big store while writes go on: the hash scans a
//! point-in-time view of the store without the state lock, so writes keep
//! completing during it, and its number is the one taken with no writes
//! going on (writes above the hashed revision do not enter it).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use janus_core::kv::{PutRequest, RequestOp, TxnRequest};
use janus_core::{Command, CommandResult};

/// Records in the store: `TXNS` txns of `PER_TXN` puts of 100-byte values.
const TXNS: usize = 200;
const PER_TXN: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_a_big_store_does_not_stall_writes() {
    let t = common::start();
    let value = vec![b'v'; 100];
    for i in 0..TXNS {
        let success = (0..PER_TXN)
            .map(|j| {
                RequestOp::Put(PutRequest {
                    key: format!("/big/{i:04}/{j:04}").into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                })
            })
            .collect();
        let a = common::propose(
            &t,
            Command::Txn(TxnRequest {
                success,
                ..Default::default()
            }),
        )
        .await;
        assert!(matches!(a.result, CommandResult::Txn(Ok(_))), "{a:?}");
    }
    let rev = t.revision();

    // The reference: the hash at `rev` with nothing else going on.
    let node = t.node.clone();
    let started = Instant::now();
    let quiet = tokio::task::spawn_blocking(move || node.hash_kv_at(rev))
        .await
        .expect("hash task")
        .expect("hash");
    let quiet_took = started.elapsed();
    assert_eq!(quiet.revision, rev);

    // A writer putting one key after another, each latency recorded with
    // the instant the put finished.
    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let writer = {
        let node = t.node.clone();
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                common::put(&node, &format!("/w/{i}"), "x").await;
                let end = Instant::now();
                done.lock().expect("lock").push((end, end - t0));
                i += 1;
            }
        })
    };
    // Writes flow before the hash starts.
    while done.lock().expect("lock").len() < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let node = t.node.clone();
    let hash_start = Instant::now();
    let busy = tokio::task::spawn_blocking(move || node.hash_kv_at(rev))
        .await
        .expect("hash task")
        .expect("hash");
    let hash_end = Instant::now();
    let took = hash_end - hash_start;
    // One more write after the hash, so a write stalled by it is measured.
    let after = done.lock().expect("lock").len();
    while done.lock().expect("lock").len() < after + 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    let done = done.lock().expect("lock").clone();
    // Writes that finished during the hash, and the longest latency of any
    // write that was in flight at some point of it.
    let during = done
        .iter()
        .filter(|(end, _)| *end >= hash_start && *end <= hash_end)
        .count();
    let longest = done
        .iter()
        .filter(|(end, lat)| *end >= hash_start && *end - *lat <= hash_end)
        .map(|(_, lat)| *lat)
        .max()
        .unwrap_or_default();
    eprintln!(
        "hash of {} records: {quiet_took:?} alone, {took:?} under writes; \
         {during} writes finished during it, longest write latency {longest:?}",
        TXNS * PER_TXN
    );
    assert!(
        took >= Duration::from_millis(200),
        "the hash took {took:?}: too short to show anything"
    );
    assert_eq!(busy.hash, quiet.hash, "hash at {rev} changed under writes");
    assert_eq!(busy.revision, rev);
    assert!(busy.current_revision >= rev);
    assert!(during >= 5, "only {during} writes finished during the hash");
    assert!(
        longest * 4 < took,
        "a write waited {longest:?} during a hash of {took:?}"
    );

    // And again once the writes are over: the same number at `rev`.
    assert_eq!(t.hash_kv(rev).expect("hash").0, quiet.hash);
}
