//! The corruption check (etcd's `--experimental-corrupt-check-time` and
//! `--experimental-initial-corrupt-check`) on a real 3-member cluster: a
//! healthy cluster under writes raises nothing and a member passes the
//! initial check; then one follower's store is made to diverge (stopped,
//! one MVCC record removed from its fjall keyspace, restarted), and the
//! leader raises CORRUPT for it within a few check periods: `etcdctl alarm
//! list` shows it, writes are refused on both protocols, reads go on, and
//! the diverged member refuses to start with the initial check.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use janus_conformance::cluster::{Cluster, ClusterOptions};
use janus_core::engine::{Engine, Space};
use zookeeper_client as zk;

async fn connect(ep: &str) -> Client {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(3));
    Client::connect([ep], Some(opts))
        .await
        .expect("etcd connect")
}

fn etcdctl_alarm_list(ep: &str) -> String {
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", ep, "alarm", "list"])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl alarm list: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (member id, leader id) as member `i` reports them.
async fn ids(c: &Cluster, i: usize) -> (u64, u64) {
    let mut cl = connect(&c.members[i].etcd_endpoint()).await;
    let s = cl.status().await.expect("status");
    (s.header().expect("header").member_id(), s.leader())
}

/// Waits until every member knows the same leader.
async fn wait_leader(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut leaders = Vec::new();
        for i in 0..c.members.len() {
            leaders.push(ids(c, i).await.1);
        }
        if leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
            return;
        }
        assert!(Instant::now() < deadline, "no leader: {}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every running member has applied revision `rev`.
async fn wait_revision(c: &Cluster, rev: i64) {
    for m in c.members.iter().filter(|m| m.is_running()) {
        let mut cl = connect(&m.etcd_endpoint()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = cl
                .get(
                    "/",
                    Some(etcd_client::GetOptions::new().with_serializable()),
                )
                .await
                .expect("get");
            if r.header().expect("header").revision() >= rev {
                break;
            }
            assert!(Instant::now() < deadline, "{} stuck below {rev}", m.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Removes the MVCC record of `revision` from a stopped member's store:
/// its history now differs from the others' below the current revision.
fn remove_record(data_dir: &std::path::Path, revision: i64) {
    let engine = std::sync::Arc::new(Engine::open(data_dir).expect("open store"));
    let key = engine
        .scan_all(Space::Revs)
        .map(|r| r.expect("scan").0)
        .find(|k| k.len() == 12 && k[..8] == (revision as u64).to_be_bytes())
        .expect("record of the revision");
    let mut b = engine.batch();
    b.remove(Space::Revs, key);
    engine.commit(b).expect("commit");
    engine.sync().expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_diverged_member_raises_corrupt_and_fails_the_initial_check() {
    let mut c = Cluster::start_with(
        3,
        ClusterOptions {
            extra: vec!["--experimental-corrupt-check-time".into(), "1s".into()],
            ..Default::default()
        },
    );
    let ep0 = c.members[0].etcd_endpoint();
    wait_leader(&c).await;
    let mut cl = connect(&ep0).await;
    let first = cl.put("/x", "v1", None).await.expect("put");
    let old_rev = first.header().expect("header").revision();
    let mut last = 0;
    // Writes while the leader checks: a moving revision is no mismatch.
    for i in 0..30 {
        let r = cl
            .put(format!("/k{}", i % 5), "v", None)
            .await
            .expect("put");
        last = r.header().expect("header").revision();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cl.put("/x", "v2", None).await.expect("put");
    wait_revision(&c, last + 1).await;
    assert_eq!(etcdctl_alarm_list(&ep0), "", "{}", c.logs());

    // A healthy member passes the initial check and starts.
    c.terminate(0);
    c.spawn_with(0, "new", &["--experimental-initial-corrupt-check"]);
    c.wait_up(0);
    wait_leader(&c).await;
    assert!(
        c.members[0]
            .log()
            .contains("initial corruption checking passed"),
        "{}",
        c.members[0].log()
    );

    // Diverge a follower (of the member that leads now).
    let (_, leader) = ids(&c, 0).await;
    let mut victim = None;
    for i in 0..3 {
        let (id, _) = ids(&c, i).await;
        if id != leader {
            victim = Some((i, id));
            break;
        }
    }
    let (v, victim_id) = victim.expect("a follower");
    let others: Vec<usize> = (0..3).filter(|i| *i != v).collect();
    // ZooKeeper sessions open before the alarm: under CORRUPT a new one
    // cannot open (a session is a lease, and etcd refuses lease grants
    // under CORRUPT), an open one keeps reading.
    let mut sessions = Vec::new();
    for &i in &others {
        let z = zk::Client::connect(&c.members[i].zk.to_string())
            .await
            .expect("zk");
        sessions.push((i, z));
    }
    c.terminate(v);
    remove_record(&c.members[v].data_dir, old_rev);
    c.spawn_with(v, "new", &[]);
    c.wait_up(v);
    wait_leader(&c).await;

    let ep = c.members[others[0]].etcd_endpoint();
    let expected = format!("memberID:{victim_id} alarm:CORRUPT");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = etcdctl_alarm_list(&ep);
        if list.trim() == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CORRUPT alarm (alarm list {list:?}); logs:\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every member applied it: each refuses writes and serves reads.
    for i in 0..3 {
        let m = &c.members[i];
        let mut cl = connect(&m.etcd_endpoint()).await;
        // Ordered after the alarm in the log: refused wherever it lands.
        let err = match cl.put("/after", "v", None).await {
            Err(etcd_client::Error::GRpcStatus(s)) => s,
            other => panic!("{}: put under CORRUPT answered {other:?}", m.name),
        };
        assert_eq!(err.message(), "etcdserver: corrupt cluster", "{}", m.name);
        let got = cl.get("/x", None).await.expect("linearizable get");
        assert_eq!(got.kvs()[0].value(), b"v2", "{}", m.name);
    }
    for (i, z) in &sessions {
        let name = &c.members[*i].name;
        let (data, _) = z.get_data("/x").await.expect("zk read");
        assert_eq!(data, b"v2", "{name}");
        let create = z
            .create(
                "/refused",
                b"",
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await;
        assert!(
            matches!(create, Err(zk::Error::UnexpectedErrorCode(-1))),
            "{name}: zk create under CORRUPT answered {create:?} (SystemError, -1, expected)",
        );
    }

    // The diverged member refuses to start with the initial check.
    c.terminate(v);
    c.spawn_with(v, "new", &["--experimental-initial-corrupt-check"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = c.exited(v) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "diverged member started; log:\n{}",
            c.members[v].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status}");
    assert!(
        c.members[v]
            .log()
            .contains("found data inconsistency with peers"),
        "{}",
        c.members[v].log()
    );
}
