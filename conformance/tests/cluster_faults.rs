//! Fault tests with real janus processes forming a 3-member cluster on
//! loopback: kill -9 of the leader under write load from both protocols, a
//! leader cut off from the majority, a wiped member rejoining by snapshot,
//! learner add/promote and member removal under load, and a rolling restart.
//! Every acknowledged write must survive on every member, and members must
//! converge to identical history (HashKV).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, MemberAddOptions};
use janus_conformance::cluster::Cluster;
use zookeeper_client as zk;

async fn connect(eps: &[String]) -> Client {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2));
    Client::connect(eps, Some(opts))
        .await
        .expect("etcd connect")
}

/// The leader as seen by member `i` (0 if unknown or unreachable).
async fn leader_seen_by(c: &Cluster, i: usize) -> u64 {
    if !c.members[i].is_running() {
        return 0;
    }
    let ep = c.members[i].etcd_endpoint();
    let Ok(Ok(mut cl)) =
        tokio::time::timeout(Duration::from_secs(2), Client::connect([ep], None)).await
    else {
        return 0;
    };
    match tokio::time::timeout(Duration::from_secs(2), cl.status()).await {
        Ok(Ok(s)) => s.leader(),
        _ => 0,
    }
}

async fn member_id(c: &Cluster, i: usize) -> u64 {
    let mut cl = connect(&[c.members[i].etcd_endpoint()]).await;
    cl.status()
        .await
        .expect("status")
        .header()
        .expect("header")
        .member_id()
}

/// Waits until every running member agrees on a leader.
async fn agreed_leader(c: &Cluster, within: Duration) -> u64 {
    agreed_leader_except(c, within, 0).await
}

/// Waits until every running member agrees on a leader other than `except`.
async fn agreed_leader_except(c: &Cluster, within: Duration, except: u64) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = Vec::new();
        for i in 0..c.members.len() {
            if c.members[i].is_running() {
                seen.push(leader_seen_by(c, i).await);
            }
        }
        if !seen.is_empty()
            && seen[0] != 0
            && seen[0] != except
            && seen.iter().all(|l| *l == seen[0])
        {
            return seen[0];
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {within:?}: {seen:x?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn index_of(c: &Cluster, id: u64) -> usize {
    for i in 0..c.members.len() {
        if c.members[i].is_running() && member_id(c, i).await == id {
            return i;
        }
    }
    panic!("no running member has id {id:x}");
}

/// Writers on both protocols; they record what was acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    etcd: Arc<Mutex<Vec<String>>>,
    zk: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_load(c: &Cluster) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let etcd_acked = Arc::new(Mutex::new(Vec::new()));
    let zk_acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // etcd writer, balanced over every endpoint.
    {
        let eps = c.etcd_endpoints();
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&etcd_acked));
        tasks.push(tokio::spawn(async move {
            let mut cl = connect(&eps).await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/load/e/{i:06}");
                match cl.put(key.as_str(), "v", None).await {
                    Ok(_) => {
                        acked.lock().unwrap().push(key);
                        i += 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    // ZooKeeper writer on one session over every member; the session's
    // ephemeral must survive every fault.
    {
        let connect_string = c.zk_connect_string();
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&zk_acked));
        let open = || zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let zc = zk::Client::connector()
            .session_timeout(Duration::from_secs(8))
            .connect(&connect_string)
            .await
            .expect("zk connect");
        for p in ["/load", "/load/z"] {
            match zc.create(p, b"", &open()).await {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(e) => panic!("create {p}: {e}"),
            }
        }
        zc.create(
            "/load/session",
            b"",
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("ephemeral");
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/load/z/{i:06}");
                match zc.create(&path, b"z", &open()).await {
                    Ok(_) | Err(zk::Error::NodeExists) => {
                        acked.lock().unwrap().push(path);
                        i += 1;
                    }
                    Err(zk::Error::SessionExpired) => {
                        panic!("ZooKeeper session expired during a fault")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            // Keep the session (and its ephemeral) for the checks.
            std::mem::forget(zc);
        }));
    }
    Load {
        stop,
        etcd: etcd_acked,
        zk: zk_acked,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load task panicked");
        }
        let e = self.etcd.lock().unwrap().clone();
        let z = self.zk.lock().unwrap().clone();
        (e, z)
    }
}

/// Every acknowledged key is on every running member (serializable reads,
/// after each member caught up to the cluster's revision), and HashKV
/// agrees across members.
async fn check_converged(c: &Cluster, etcd_acked: &[String], zk_acked: &[String]) {
    assert!(
        etcd_acked.len() > 20,
        "too few etcd writes acknowledged: {}",
        etcd_acked.len()
    );
    assert!(
        zk_acked.len() > 20,
        "too few ZooKeeper writes acknowledged: {}",
        zk_acked.len()
    );
    let running: Vec<usize> = (0..c.members.len())
        .filter(|i| c.members[*i].is_running())
        .collect();
    let mut lin = connect(
        &running
            .iter()
            .map(|i| c.members[*i].etcd_endpoint())
            .collect::<Vec<_>>(),
    )
    .await;
    let target = lin
        .get("/load", None)
        .await
        .expect("linearizable get")
        .header()
        .expect("header")
        .revision();
    let mut hashes = Vec::new();
    for &i in &running {
        let mut cl = connect(&[c.members[i].etcd_endpoint()]).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let present: BTreeSet<String> = loop {
            let r = cl
                .get(
                    "/load/",
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_keys_only()
                            .with_serializable(),
                    ),
                )
                .await
                .expect("serializable get");
            let rev = r.header().expect("header").revision();
            if rev >= target {
                break r
                    .kvs()
                    .iter()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "member {} stuck at revision {rev} < {target}",
                c.members[i].name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for k in etcd_acked.iter().chain(zk_acked) {
            assert!(
                present.contains(k),
                "acknowledged {k} missing on member {}",
                c.members[i].name
            );
        }
        assert!(
            present.contains("/load/session"),
            "the ZooKeeper session's ephemeral vanished"
        );
        hashes.push((
            c.members[i].name.clone(),
            cl.hash_kv(target).await.expect("hashkv").hash(),
        ));
    }
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "HashKV differs: {hashes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_leader_under_load_then_rejoin_wiped_member() {
    let mut c = Cluster::start(3);
    let leader = agreed_leader(&c, Duration::from_secs(10)).await;
    let load = start_load(&c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // kill -9 the leader: a new one within a few seconds, load continues.
    let li = index_of(&c, leader).await;
    c.kill(li);
    let killed_at = Instant::now();
    let new_leader = agreed_leader_except(&c, Duration::from_secs(5), leader).await;
    assert_ne!(new_leader, leader);
    eprintln!("new leader after {:?}", killed_at.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = load.etcd.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        load.etcd.lock().unwrap().len() > before,
        "writes did not continue after failover"
    );

    // The old leader comes back with its data and catches up.
    c.restart(li);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (e, z) = load.finish().await;
    check_converged(&c, &e, &z).await;

    // A member whose data dir was wiped rejoins by snapshot and serves reads.
    // As with etcd, a member that lost its data is removed and added back
    // first: raft must not mistake the empty member for the one that had
    // acknowledged entries.
    let victim = (li + 1) % 3;
    let vid = member_id(&c, victim).await;
    let others: Vec<String> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| c.members[i].etcd_endpoint())
        .collect();
    let mut admin = connect(&others).await;
    admin.member_remove(vid).await.expect("member remove");
    c.kill(victim);
    // raft drops a conf change proposed while the previous one is not yet
    // applied on the leader: retry (an add that did land answers "Peer URLs
    // already exists" and shows up in the member list).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = admin.member_add([c.members[victim].peer_url()], None).await;
        let list = admin
            .member_list()
            .await
            .map(|l| l.members().iter().map(|m| m.id()).collect::<Vec<_>>());
        if list.is_ok_and(|ids| ids.contains(&vid)) {
            break;
        }
        assert!(Instant::now() < deadline, "could not add the member back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.wipe_and_rejoin(victim);
    check_converged(&c, &e, &z).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_leader_stops_acknowledging_and_cluster_heals() {
    let mut c = Cluster::start(3);
    let leader = agreed_leader(&c, Duration::from_secs(10)).await;
    let li = index_of(&c, leader).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    // Cut the leader off from the majority: the followers hear and say
    // nothing (SIGSTOP); the leader is alone on its side.
    for &f in &followers {
        c.pause(f);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // > election timeout: check-quorum steps down
    let mut lone = connect(&[c.members[li].etcd_endpoint()]).await;
    let r = tokio::time::timeout(Duration::from_secs(4), lone.put("/minority", "x", None)).await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "a leader without a quorum acknowledged a write"
    );
    for &f in &followers {
        c.resume(f);
    }
    let load = start_load(&c).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // Now the old leader is paused: the majority elects a leader and goes on.
    c.pause(li);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = load.etcd.lock().unwrap().len();
    // Clients whose request went to the paused member wait out their
    // timeout first, so allow several timeouts for progress.
    let deadline = Instant::now() + Duration::from_secs(15);
    while load.etcd.lock().unwrap().len() <= before {
        assert!(Instant::now() < deadline, "the majority did not continue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.resume(li);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (e, z) = load.finish().await;
    check_converged(&c, &e, &z).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_promote_remove_and_rolling_restart_under_load() {
    let mut c = Cluster::start(3);
    agreed_leader(&c, Duration::from_secs(10)).await;
    let load = start_load(&c).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Add a learner, start it, promote it once it caught up.
    let ni = c.prepare_member("m3");
    let mut admin = connect(&c.etcd_endpoints()[..3]).await;
    let added = admin
        .member_add(
            [c.members[ni].peer_url()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add");
    let new_id = added.member().expect("member").id();
    c.start_joining(ni);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match admin.member_promote(new_id).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "learner never promotable: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // Remove an old member that is not the leader.
    let leader = agreed_leader(&c, Duration::from_secs(10)).await;
    let mut victim = None;
    for i in 0..3 {
        let id = member_id(&c, i).await;
        if id != leader {
            victim = Some((i, id));
            break;
        }
    }
    let (vi, vid) = victim.expect("a follower");
    let list = admin.member_remove(vid).await.expect("member remove");
    assert_eq!(list.members().len(), 3);
    c.kill(vi);

    // Rolling restart of every remaining member.
    for i in 0..c.members.len() {
        if !c.members[i].is_running() {
            continue;
        }
        c.restart(i);
        agreed_leader(&c, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (e, z) = load.finish().await;
    check_converged(&c, &e, &z).await;
    let members = connect(&[c.members[ni].etcd_endpoint()])
        .await
        .member_list()
        .await
        .expect("list");
    assert!(members.members().iter().all(|m| !m.is_learner()));
    assert!(!members.members().iter().any(|m| m.id() == vid));
}

/// A member killed with -9 under load and started again at once on the same
/// peer and client ports (no pause for TIME_WAIT to drain) binds every
/// listener, rejoins and catches up; done for the leader, then a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_member_restarts_at_once_on_its_ports_under_load() {
    let mut c = Cluster::start(3);
    agreed_leader(&c, Duration::from_secs(10)).await;
    let load = start_load(&c).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for round in 0..2 {
        let leader = agreed_leader(&c, Duration::from_secs(10)).await;
        let li = index_of(&c, leader).await;
        let victim = if round % 2 == 0 { li } else { (li + 1) % 3 };
        let ports = (
            c.members[victim].peer,
            c.members[victim].etcd,
            c.members[victim].zk,
        );
        let started = Instant::now();
        // `restart` kills -9 and spawns at once; `wait_up` panics if the
        // process exits (e.g. a listener that cannot bind).
        tokio::task::block_in_place(|| c.restart(victim));
        assert_eq!(
            ports,
            (
                c.members[victim].peer,
                c.members[victim].etcd,
                c.members[victim].zk
            )
        );
        let log = c.members[victim].log();
        assert!(
            !log.contains("Address already in use"),
            "a listener failed to bind: {log}"
        );
        agreed_leader(&c, Duration::from_secs(10)).await;
        eprintln!(
            "round {round}: {} back and agreeing on a leader after {:?}",
            c.members[victim].name,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (e, z) = load.finish().await;
    check_converged(&c, &e, &z).await;
}
