//! Leases: grant, revoke (attached keys deleted at one revision), keepalive,
//! time-to-live with keys, expiry decided by the leader (D9) and observed
//! through range.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, get, grant, propose, put, put_lease};
use janus_core::kv::{LeaseGrantResponse, PutRequest};
use janus_core::{Command, CommandResult, KvError};

#[tokio::test]
async fn grant_revoke_time_to_live() {
    let n = common::start();
    let a = propose(
        &n,
        Command::LeaseGrant {
            id: 5,
            ttl_ms: 10_500,
        },
    )
    .await;
    assert_eq!(
        a.result,
        CommandResult::LeaseGrant(Ok(LeaseGrantResponse { id: 5, ttl: 11 }))
    );
    assert_eq!(a.revision, 1, "a grant takes no revision");
    let again = propose(
        &n,
        Command::LeaseGrant {
            id: 5,
            ttl_ms: 1000,
        },
    )
    .await;
    assert_eq!(
        again.result,
        CommandResult::LeaseGrant(Err(KvError::LeaseExists))
    );
    let huge = propose(
        &n,
        Command::LeaseGrant {
            id: 6,
            ttl_ms: 9_000_000_000_001,
        },
    )
    .await;
    assert_eq!(
        huge.result,
        CommandResult::LeaseGrant(Err(KvError::LeaseTtlTooLarge))
    );
    assert!(!n.lease_exists(6));
    grant(&n, 7, 60_000).await;
    let mut ids = n.leases();
    ids.sort();
    assert_eq!(ids, vec![5, 7]);

    // Keys attach; a missing lease is refused.
    let bad = propose(
        &n,
        Command::Put(PutRequest {
            key: b"k".to_vec(),
            lease: 404,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(bad.result, CommandResult::Put(Err(KvError::LeaseNotFound)));
    put_lease(&n, "k2", "b", 5).await;
    put_lease(&n, "k1", "a", 5).await;
    put_lease(&n, "other", "c", 7).await;
    let info = n.lease_time_to_live(5, true).unwrap();
    assert_eq!(info.id, 5);
    assert_eq!(info.granted_ttl, 11);
    assert!(info.ttl > 0 && info.ttl <= 11, "{info:?}");
    assert_eq!(info.keys, vec![b"k1".to_vec(), b"k2".to_vec()]);
    assert!(n.lease_time_to_live(5, false).unwrap().keys.is_empty());
    assert_eq!(n.lease_time_to_live(404, true), Err(KvError::LeaseNotFound));
    assert_eq!(get(&n, "k1").unwrap().lease, 5);
    // Moving a key to another lease detaches it from the first.
    put_lease(&n, "k2", "b", 7).await;
    assert_eq!(
        n.lease_time_to_live(5, true).unwrap().keys,
        vec![b"k1".to_vec()]
    );

    // Revoke deletes the attached keys at one revision.
    let before = n.revision();
    let r = propose(&n, Command::LeaseRevoke { id: 7 }).await;
    assert_eq!(r.result, CommandResult::LeaseRevoke(Ok(())));
    assert_eq!(r.revision, before + 1);
    assert!(get(&n, "k2").is_none());
    assert!(get(&n, "other").is_none());
    assert!(get(&n, "k1").is_some());
    assert!(!n.lease_exists(7));
    assert_eq!(n.lease_keepalive(7).await.ok(), Some(None));
    let r = propose(&n, Command::LeaseRevoke { id: 7 }).await;
    assert_eq!(
        r.result,
        CommandResult::LeaseRevoke(Err(KvError::LeaseNotFound))
    );
    // A lease without keys is revoked without a revision.
    grant(&n, 8, 60_000).await;
    let before = n.revision();
    let r = propose(&n, Command::LeaseRevoke { id: 8 }).await;
    assert_eq!(r.result, CommandResult::LeaseRevoke(Ok(())));
    assert_eq!(r.revision, before);
}

#[tokio::test]
async fn expiry_deletes_keys_after_ttl() {
    let n = common::start();
    grant(&n, 21, 400).await;
    grant(&n, 22, 60_000).await;
    let t0 = Instant::now();
    put_lease(&n, "e1", "x", 21).await;
    put_lease(&n, "e2", "y", 21).await;
    put_lease(&n, "keep", "z", 22).await;
    let before = n.revision();
    assert!(
        eventually(Duration::from_secs(5), || get(&n, "e1").is_none()).await,
        "expired lease's keys deleted"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(380),
        "not before the TTL"
    );
    assert!(get(&n, "e2").is_none());
    assert!(get(&n, "keep").is_some());
    assert!(!n.lease_exists(21));
    assert!(n.lease_exists(22));
    assert_eq!(
        n.revision(),
        before + 1,
        "both keys deleted at one revision"
    );
    let hist = n
        .range(&janus_core::kv::RangeRequest {
            key: b"e1".to_vec(),
            revision: before,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hist.kvs[0].lease, 21, "history keeps the leased value");
}

#[tokio::test]
async fn keepalive_keeps_a_lease_alive() {
    let n = common::start();
    grant(&n, 31, 600).await;
    put_lease(&n, "ka", "v", 31).await;
    let until = Instant::now() + Duration::from_millis(1800);
    while Instant::now() < until {
        assert_eq!(n.lease_keepalive(31).await.ok(), Some(Some(1)));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(get(&n, "ka").is_some(), "kept alive");
    }
    let info = n.lease_time_to_live(31, true).unwrap();
    assert_eq!(info.granted_ttl, 1);
    assert_eq!(info.keys, vec![b"ka".to_vec()]);
    // Stop refreshing: it expires.
    assert!(eventually(Duration::from_secs(5), || get(&n, "ka").is_none()).await);
    assert!(!n.lease_exists(31));
}

#[tokio::test]
async fn leases_survive_restart_and_still_expire() {
    let t = common::start();
    grant(&t, 41, 700).await;
    grant(&t, 42, 600_000).await;
    put_lease(&t, "r1", "v", 41).await;
    put_lease(&t, "r2", "v", 42).await;
    put(&t, "plain", "v").await;
    let t = common::restart(t);
    assert!(t.lease_exists(41));
    assert_eq!(
        t.lease_time_to_live(42, true).unwrap().keys,
        vec![b"r2".to_vec()]
    );
    assert_eq!(get(&t, "r1").unwrap().lease, 41);
    assert!(eventually(Duration::from_secs(5), || get(&t, "r1").is_none()).await);
    assert!(get(&t, "r2").is_some());
    assert!(get(&t, "plain").is_some());
    // Revoking the restored lease finds its keys.
    let r = propose(&t, Command::LeaseRevoke { id: 42 }).await;
    assert_eq!(r.result, CommandResult::LeaseRevoke(Ok(())));
    assert!(get(&t, "r2").is_none());
}
