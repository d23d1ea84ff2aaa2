//! etcd's Lock and Election services, driven by the `etcd-client` crate:
//! the same script against a fresh real etcd 3.4 and a fresh janus must
//! give the same transcript, revisions and error texts included. Lease ids
//! (random on both) are replaced by their role (`L1`, `L2`).

use std::time::Duration;

use etcd_client::{Client, Error, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use janus_conformance::harness::Janus;
use janus_conformance::reference::RealEtcd;

const T: Duration = Duration::from_secs(10);
/// Long enough for a waiter to have enqueued and (wrongly) not to have
/// been granted yet.
const SETTLE: Duration = Duration::from_millis(500);

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// Records lines with lease ids replaced by their names.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
    leases: Vec<(i64, &'static str)>,
}

impl Transcript {
    fn lease(&mut self, id: i64, name: &'static str) {
        self.leases.push((id, name));
    }
    fn push(&mut self, line: String) {
        let mut line = line;
        for (id, name) in &self.leases {
            line = line.replace(&format!("{id:x}"), name);
            line = line.replace(&id.to_string(), name);
        }
        self.lines.push(line);
    }
}

fn err(e: Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("error {:?} {:?}", s.code(), s.message()),
        other => format!("error {other:?}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn lock_script(endpoint: &str) -> Vec<String> {
    let mut t = Transcript::default();
    let mut c1 = connect(endpoint).await;
    let mut c2 = connect(endpoint).await;
    let l1 = c1.lease_grant(60, None).await.expect("grant").id();
    let l2 = c2.lease_grant(60, None).await.expect("grant").id();
    t.lease(l1, "L1");
    t.lease(l2, "L2");

    let r = c1
        .lock("mtx", Some(LockOptions::new().with_lease(l1)))
        .await
        .expect("uncontended lock");
    let key1 = r.key().to_vec();
    t.push(format!(
        "lock1 {} rev {}",
        text(&key1),
        r.header().map_or(0, |h| h.revision())
    ));

    // The second client waits while the first holds the lock.
    let mut c2b = c2.clone();
    let waiter = tokio::spawn(async move {
        c2b.lock("mtx", Some(LockOptions::new().with_lease(l2)))
            .await
    });
    tokio::time::sleep(SETTLE).await;
    t.push(format!("second waits: {}", !waiter.is_finished()));

    // Locking again with the held lease is the same acquisition.
    let r = c1
        .lock("mtx", Some(LockOptions::new().with_lease(l1)))
        .await
        .expect("relock");
    t.push(format!(
        "relock {} rev {}",
        text(r.key()),
        r.header().map_or(0, |h| h.revision())
    ));

    let r = c1.unlock(key1.clone()).await.expect("unlock");
    t.push(format!(
        "unlock rev {}",
        r.header().map_or(0, |h| h.revision())
    ));
    let r = tokio::time::timeout(T, waiter)
        .await
        .expect("second lock granted after unlock")
        .expect("task")
        .expect("second lock");
    t.push(format!(
        "lock2 {} rev {}",
        text(r.key()),
        r.header().map_or(0, |h| h.revision())
    ));

    // Now the first waits until the holder's lease is revoked.
    let mut c1b = c1.clone();
    let waiter = tokio::spawn(async move {
        c1b.lock("mtx", Some(LockOptions::new().with_lease(l1)))
            .await
    });
    tokio::time::sleep(SETTLE).await;
    t.push(format!("first waits: {}", !waiter.is_finished()));
    c2.lease_revoke(l2).await.expect("revoke");
    let r = tokio::time::timeout(T, waiter)
        .await
        .expect("lock granted after revoke")
        .expect("task")
        .expect("lock after revoke");
    t.push(format!(
        "lock3 {} rev {}",
        text(r.key()),
        r.header().map_or(0, |h| h.revision())
    ));

    // A lease that does not exist.
    let e = c1
        .lock("other", Some(LockOptions::new().with_lease(0x1234)))
        .await
        .map(|_| ())
        .map_err(err);
    t.push(format!("unknown lease: {e:?}"));
    let r = c1.unlock(key1).await.expect("unlock");
    t.push(format!(
        "unlock rev {}",
        r.header().map_or(0, |h| h.revision())
    ));
    let r = c1
        .get("mtx/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("get");
    t.push(format!("left: {}", r.kvs().len()));
    t.lines
}

fn leader_line(t: &mut Transcript, what: &str, l: &LeaderKey) {
    t.push(format!(
        "{what} name {} key {} rev {} lease {}",
        text(l.name()),
        text(l.key()),
        l.rev(),
        l.lease()
    ));
}

async fn election_script(endpoint: &str) -> Vec<String> {
    let mut t = Transcript::default();
    let mut c1 = connect(endpoint).await;
    let mut c2 = connect(endpoint).await;
    let l1 = c1.lease_grant(60, None).await.expect("grant").id();
    let l2 = c2.lease_grant(60, None).await.expect("grant").id();
    t.lease(l1, "L1");
    t.lease(l2, "L2");

    let e = c1.leader("el").await.map(|_| ()).map_err(err);
    t.push(format!("leader before: {e:?}"));

    let r = c1.campaign("el", "v1", l1).await.expect("campaign 1");
    let leader1 = r.leader().cloned().expect("leader key");
    leader_line(&mut t, "won", &leader1);
    t.push(format!("rev {}", r.header().map_or(0, |h| h.revision())));

    let mut obs = c1.observe("el").await.expect("observe");
    let observed = |t: &mut Transcript, m: Option<etcd_client::LeaderResponse>| {
        let m = m.expect("observe stream open");
        let kv = m.kv().expect("kv");
        t.push(format!(
            "observed {}={} create {} mod {} rev {}",
            text(kv.key()),
            text(kv.value()),
            kv.create_revision(),
            kv.mod_revision(),
            m.header().map_or(0, |h| h.revision())
        ));
    };
    let m = tokio::time::timeout(T, obs.message())
        .await
        .expect("observe in time");
    observed(&mut t, m.expect("observe ok"));

    let mut c2b = c2.clone();
    let campaign2 = tokio::spawn(async move { c2b.campaign("el", "v2", l2).await });
    tokio::time::sleep(SETTLE).await;
    t.push(format!("second campaigns: {}", !campaign2.is_finished()));

    let r = c2.leader("el").await.expect("leader");
    let kv = r.kv().expect("kv");
    t.push(format!(
        "leader {}={} rev {}",
        text(kv.key()),
        text(kv.value()),
        r.header().map_or(0, |h| h.revision())
    ));

    let r = c1
        .proclaim(
            "v1b",
            Some(ProclaimOptions::new().with_leader(leader1.clone())),
        )
        .await
        .expect("proclaim");
    t.push(format!(
        "proclaim rev {}",
        r.header().map_or(0, |h| h.revision())
    ));
    let m = tokio::time::timeout(T, obs.message())
        .await
        .expect("observe in time");
    observed(&mut t, m.expect("observe ok"));

    let r = c1
        .resign(Some(ResignOptions::new().with_leader(leader1.clone())))
        .await
        .expect("resign");
    t.push(format!(
        "resign rev {}",
        r.header().map_or(0, |h| h.revision())
    ));
    let r = tokio::time::timeout(T, campaign2)
        .await
        .expect("second wins after resign")
        .expect("task")
        .expect("campaign 2");
    let leader2 = r.leader().cloned().expect("leader key");
    leader_line(&mut t, "won", &leader2);
    t.push(format!("rev {}", r.header().map_or(0, |h| h.revision())));
    let m = tokio::time::timeout(T, obs.message())
        .await
        .expect("observe in time");
    observed(&mut t, m.expect("observe ok"));

    // The resigned leader may no longer proclaim; a missing leader key.
    let e = c1
        .proclaim("late", Some(ProclaimOptions::new().with_leader(leader1)))
        .await
        .map(|_| ())
        .map_err(err);
    t.push(format!("stale proclaim: {e:?}"));
    let e = c1.proclaim("none", None).await.map(|_| ()).map_err(err);
    t.push(format!("no leader key: {e:?}"));

    // The leader's lease goes: no leader at all.
    c2.lease_revoke(l2).await.expect("revoke");
    let e = c1.leader("el").await.map(|_| ()).map_err(err);
    t.push(format!("leader after revoke: {e:?}"));
    t.lines
}

#[tokio::test]
async fn lock_contention_matches_etcd() {
    let etcd = RealEtcd::start().expect("real etcd 3.4");
    let janus = Janus::start();
    let want = lock_script(&etcd.endpoint()).await;
    let got = lock_script(&janus.etcd_endpoint()).await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn election_matches_etcd() {
    let etcd = RealEtcd::start().expect("real etcd 3.4");
    let janus = Janus::start();
    let want = election_script(&etcd.endpoint()).await;
    let got = election_script(&janus.etcd_endpoint()).await;
    assert_eq!(got, want);
}

/// With auth on, every step runs with the caller's credentials: a user
/// with read-write on `allowed/` only may lock and campaign there and
/// nowhere else, and gets etcd's error text (code Unknown) elsewhere.
async fn auth_script(endpoint: &str) -> Vec<String> {
    use etcd_client::{ConnectOptions, Permission};
    let mut t = Transcript::default();
    let mut root = connect(endpoint).await;
    root.user_add("root", "rootpw", None).await.expect("root");
    root.user_grant_role("root", "root")
        .await
        .expect("root role");
    root.user_add("u", "upw", None).await.expect("user");
    root.role_add("r").await.expect("role");
    root.role_grant_permission("r", Permission::read_write("allowed/").with_prefix())
        .await
        .expect("perm");
    root.user_grant_role("u", "r").await.expect("grant");
    let lease = root
        .lease_grant(
            60,
            Some(etcd_client::LeaseGrantOptions::new().with_id(0x77)),
        )
        .await
        .expect("lease")
        .id();
    root.auth_enable().await.expect("auth enable");
    let mut u = Client::connect(
        [endpoint],
        Some(ConnectOptions::new().with_user("u", "upw")),
    )
    .await
    .expect("connect as u");

    let r = u
        .lock("allowed/m", Some(LockOptions::new().with_lease(lease)))
        .await
        .map(|r| text(r.key()))
        .map_err(err);
    t.push(format!("lock allowed: {r:?}"));
    let r = u
        .lock("denied", Some(LockOptions::new().with_lease(lease)))
        .await
        .map(|r| text(r.key()))
        .map_err(err);
    t.push(format!("lock denied: {r:?}"));
    let r = u
        .campaign("denied", "v", lease)
        .await
        .map(|_| ())
        .map_err(err);
    t.push(format!("campaign denied: {r:?}"));
    let r = u.leader("denied").await.map(|_| ()).map_err(err);
    t.push(format!("leader denied: {r:?}"));
    let r = u
        .leader("allowed/m")
        .await
        .map(|r| r.kv().map(|kv| text(kv.key())))
        .map_err(err);
    t.push(format!("leader allowed: {r:?}"));
    let mut obs = u.observe("denied").await.expect("observe");
    let m = tokio::time::timeout(T, obs.message())
        .await
        .expect("observe ends in time")
        .map(|m| m.is_some())
        .map_err(err);
    t.push(format!("observe denied: {m:?}"));
    t.lines
}

#[tokio::test]
async fn concurrency_services_respect_auth_as_etcd() {
    let etcd = RealEtcd::start().expect("real etcd 3.4");
    let janus = Janus::start();
    let want = auth_script(&etcd.endpoint()).await;
    let got = auth_script(&janus.etcd_endpoint()).await;
    assert_eq!(got, want);
    assert!(got[0].starts_with("lock allowed: Ok"), "{got:?}");
    assert!(got[1].contains("permission denied"), "{got:?}");
}

/// A waiter that goes away (the client cancels its Lock) leaves no key
/// behind, so it never blocks later waiters.
async fn cancel_script(endpoint: &str) -> Vec<String> {
    let mut t = Transcript::default();
    let mut c = connect(endpoint).await;
    let l1 = c.lease_grant(60, None).await.expect("grant").id();
    let l2 = c.lease_grant(60, None).await.expect("grant").id();
    t.lease(l1, "L1");
    t.lease(l2, "L2");
    let held = c
        .lock("cm", Some(LockOptions::new().with_lease(l1)))
        .await
        .expect("lock");
    let mut c2 = c.clone();
    let waiter =
        tokio::spawn(async move { c2.lock("cm", Some(LockOptions::new().with_lease(l2))).await });
    tokio::time::sleep(SETTLE).await;
    let waiting = |r: etcd_client::GetResponse| {
        r.kvs()
            .iter()
            .map(|kv| text(kv.key()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let opts = || {
        Some(etcd_client::GetOptions::new().with_prefix().with_sort(
            etcd_client::SortTarget::Create,
            etcd_client::SortOrder::Ascend,
        ))
    };
    t.push(format!(
        "queued: {}",
        waiting(c.get("cm/", opts()).await.expect("get"))
    ));
    waiter.abort();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = c.get("cm/", opts()).await.expect("get");
        if r.kvs().len() == 1 || tokio::time::Instant::now() > deadline {
            t.push(format!("after cancel: {}", waiting(r)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.unlock(held.key().to_vec()).await.expect("unlock");
    t.lines
}

#[tokio::test]
async fn cancelled_lock_leaves_no_key_as_etcd() {
    let etcd = RealEtcd::start().expect("real etcd 3.4");
    let janus = Janus::start();
    let want = cancel_script(&etcd.endpoint()).await;
    let got = cancel_script(&janus.etcd_endpoint()).await;
    assert_eq!(got, want);
    assert_eq!(got.last().map(String::as_str), Some("after cancel: cm/L1"));
}
