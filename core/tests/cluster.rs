//! Multi-member behaviour with real members in one process: real fjall data
//! dirs, real TCP between members on loopback ports chosen at run time.

use std::time::{Duration, Instant};

use janus_core::kv::{PutRequest, RangeRequest};
use janus_core::members::member_id_for;
use janus_core::{Command, CommandResult, CoreError, Member, Node, NodeConfig};

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Spec {
    name: String,
    peer_url: String,
    dir: std::path::PathBuf,
}

fn config(spec: &Spec, members: &[Member], join: bool) -> NodeConfig {
    let mut c = NodeConfig::single(&spec.dir);
    c.name = spec.name.clone();
    c.peer_urls = vec![spec.peer_url.clone()];
    c.member_id = member_id_for(&c.peer_urls, &c.cluster_token);
    c.peer_listen = Some(spec.peer_url.trim_start_matches("http://").parse().unwrap());
    c.tick = Duration::from_millis(20);
    c.election_ticks = 10;
    c.log_keep = 50;
    c.initial_members = members.to_vec();
    c.join_existing = join;
    c
}

fn specs(root: &std::path::Path, n: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            name: format!("m{i}"),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            dir: root.join(format!("m{i}")),
        })
        .collect()
}

fn members_of(specs: &[Spec]) -> Vec<Member> {
    specs
        .iter()
        .map(|s| Member {
            id: member_id_for(std::slice::from_ref(&s.peer_url), "janus-cluster"),
            name: s.name.clone(),
            peer_urls: vec![s.peer_url.clone()],
            client_urls: vec![],
            is_learner: false,
        })
        .collect()
}

/// Starts the initial members `specs` (members `ms`), each config adjusted
/// by `tweak` first.
fn start_members(specs: &[Spec], ms: &[Member], tweak: impl Fn(&mut NodeConfig)) -> Vec<Node> {
    specs
        .iter()
        .map(|sp| {
            let mut c = config(sp, ms, false);
            tweak(&mut c);
            Node::start(c).unwrap()
        })
        .collect()
}

async fn wait_leader(nodes: &[&Node]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<u64> = nodes.iter().map(|n| n.leader()).collect();
        if leaders[0] != 0
            && leaders.iter().all(|l| *l == leaders[0])
            && nodes.iter().any(|n| n.is_leader())
        {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(node: &Node, key: &str, value: &str) -> Result<i64, CoreError> {
    let a = node
        .propose(Command::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }))
        .await?;
    assert!(matches!(a.result, CommandResult::Put(Ok(_))));
    Ok(a.revision)
}

async fn get(node: &Node, key: &str) -> Option<Vec<u8>> {
    node.read_barrier().await.ok()?;
    let r = node
        .range(&RangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .unwrap();
    r.kvs.first().map(|kv| kv.value.clone())
}

/// Retries a put until some member accepts it (during elections).
async fn put_any(nodes: &[&Node], key: &str, value: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for n in nodes {
            if let Ok(r) = put(n, key, value).await {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no member accepted the write of {key}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_fail_over_and_catch_up_by_snapshot() {
    init_log();
    let root = tempfile::tempdir().unwrap();
    let s = specs(root.path(), 3);
    let ms = members_of(&s);
    let nodes = start_members(&s, &ms, |_| {});
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = wait_leader(&all).await;

    // Writes through a follower are forwarded to the leader and answered.
    let follower = nodes.iter().find(|n| n.member_id() != leader).unwrap();
    let rev = put(follower, "/k0", "v0").await.unwrap();
    for n in &nodes {
        assert_eq!(
            get(n, "/k0").await.as_deref(),
            Some(&b"v0"[..]),
            "member {:x}",
            n.member_id()
        );
        assert!(n.revision() >= rev);
    }
    assert_eq!(nodes[0].members().len(), 3);

    // Kill the leader: the two others elect a new one and keep every write.
    let (dead, alive): (Vec<&Node>, Vec<&Node>) =
        nodes.iter().partition(|n| n.member_id() == leader);
    dead[0].stop();
    let new_leader = wait_leader(&alive).await;
    assert_ne!(new_leader, leader);
    for i in 1..=200 {
        put_any(&alive, &format!("/k{i}"), &format!("v{i}")).await;
    }
    for n in &alive {
        assert_eq!(get(n, "/k0").await.as_deref(), Some(&b"v0"[..]));
        assert_eq!(get(n, "/k200").await.as_deref(), Some(&b"v200"[..]));
    }

    // The old leader's data dir is wiped; it is removed and added back (as
    // etcd requires for a member that lost its data), rejoins empty and is
    // caught up by a snapshot (the log was truncated far past its end).
    let dead_idx = nodes.iter().position(|n| n.member_id() == leader).unwrap();
    let admin = alive.iter().find(|n| n.is_leader()).unwrap();
    admin.member_remove(leader).await.unwrap();
    let (m, _) = admin
        .member_add(vec![s[dead_idx].peer_url.clone()], false)
        .await
        .unwrap();
    assert_eq!(m.id, leader, "member ids derive from peer URLs");
    std::fs::remove_dir_all(&s[dead_idx].dir).unwrap();
    let rejoined = Node::start(config(&s[dead_idx], &ms, true)).unwrap();
    // A watch on the empty member from revision 2, ahead of its store: the
    // snapshot jumps over every revision it waits for, which it must still
    // get, from the installed history.
    let mut watch = rejoined
        .watch(janus_core::watch::WatchRequest {
            key: b"/k".to_vec(),
            range_end: b"/l".to_vec(),
            start_revision: 2,
            tree_events: false,
        })
        .unwrap();
    // And one from beyond everything the snapshot holds (a client that
    // has seen more resumes here): it must get nothing older than that.
    let ahead = alive[0].revision() + 3;
    let mut ahead_watch = rejoined
        .watch(janus_core::watch::WatchRequest {
            key: b"/m".to_vec(),
            range_end: b"/n".to_vec(),
            start_revision: ahead,
            tree_events: false,
        })
        .unwrap();
    // Polled from now on, as a client's stream is.
    let ahead_task = tokio::spawn(async move {
        let mut got = Vec::new();
        while !got.iter().any(|(k, _): &(Vec<u8>, i64)| k == b"/m5") {
            let evs = tokio::time::timeout(Duration::from_secs(30), ahead_watch.next())
                .await
                .expect("the watch from ahead got too few events")
                .unwrap();
            got.extend(evs.into_iter().map(|e| (e.kv.key, e.kv.mod_revision)));
        }
        got.into_iter().map(|(_, r)| r).collect::<Vec<i64>>()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = rejoined
            .range(&RangeRequest {
                key: b"/k200".to_vec(),
                ..Default::default()
            })
            .unwrap();
        if r.kvs.first().map(|kv| kv.value.as_slice()) == Some(b"v200") {
            break;
        }
        assert!(Instant::now() < deadline, "rejoined member never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 201 {
        let evs = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch on the rejoined member got no events from the snapshot")
            .unwrap();
        seen.extend(evs.into_iter().map(|e| e.kv.key));
    }
    let expected: Vec<Vec<u8>> = (0..=200).map(|i| format!("/k{i}").into_bytes()).collect();
    assert_eq!(seen, expected, "every put, once, in order");
    let mut later = Vec::new();
    for i in 0..6 {
        let rev = put_any(&alive, &format!("/m{i}"), "x").await;
        if rev >= ahead {
            later.push(rev);
        }
    }
    let got = ahead_task.await.unwrap();
    assert_eq!(got, later, "a watch from revision {ahead}");
    // Identical history on every live member.
    let target = alive[0].revision();
    let mut hashes = Vec::new();
    for n in alive.iter().copied().chain(std::iter::once(&rejoined)) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.revision() < target {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hashes.push(n.hash_kv(target).unwrap().0);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs: {hashes:?}"
    );
    for n in alive {
        n.stop();
    }
    rejoined.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_promoted_and_old_member_removed_under_writes() {
    init_log();
    let root = tempfile::tempdir().unwrap();
    let s = specs(root.path(), 4);
    let ms = members_of(&s[..3]);
    let nodes = start_members(&s[..3], &ms, |_| {});
    let all: Vec<&Node> = nodes.iter().collect();
    let leader_id = wait_leader(&all).await;
    let leader = nodes.iter().find(|n| n.member_id() == leader_id).unwrap();
    for i in 0..100 {
        put_any(&all, &format!("/a{i}"), "x").await;
    }
    let (m, list) = leader
        .member_add(vec![s[3].peer_url.clone()], true)
        .await
        .unwrap();
    assert!(m.is_learner);
    assert_eq!(list.len(), 4);
    let newcomer = Node::start(config(&s[3], &ms, true)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while newcomer.revision() < leader.revision() {
        assert!(Instant::now() < deadline, "learner never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = leader.member_promote(m.id).await.unwrap();
    assert!(list.iter().all(|m| !m.is_learner));
    // Remove a follower that is not the leader.
    let victim = nodes.iter().find(|n| n.member_id() != leader_id).unwrap();
    let list = leader.member_remove(victim.member_id()).await.unwrap();
    assert_eq!(list.len(), 3);
    victim.stop();
    let rest: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.member_id() != victim.member_id())
        .chain(std::iter::once(&newcomer))
        .collect();
    for i in 0..50 {
        put_any(&rest, &format!("/b{i}"), "y").await;
    }
    for n in &rest {
        assert_eq!(get(n, "/b49").await.as_deref(), Some(&b"y"[..]));
        assert_eq!(get(n, "/a99").await.as_deref(), Some(&b"x"[..]));
    }
    for n in rest {
        n.stop();
    }
}

/// The real file system, except that once `fail` is set every fdatasync of
/// a WAL segment answers EIO (a disk that stopped accepting writes).
#[derive(Debug, Default)]
struct FailingSyncFs {
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

struct FailingSyncFile {
    inner: Box<dyn janus_core::wal::WalFile>,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl janus_core::wal::WalFile for FailingSyncFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fdatasync failure (EIO)"));
        }
        self.inner.sync_data()
    }
}

impl janus_core::wal::WalFs for FailingSyncFs {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        janus_core::wal::OsFs.create_dir_all(dir)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        janus_core::wal::OsFs.list(dir)
    }
    fn read(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
        janus_core::wal::OsFs.read(path)
    }
    fn open(&self, path: &std::path::Path) -> std::io::Result<Box<dyn janus_core::wal::WalFile>> {
        Ok(Box::new(FailingSyncFile {
            inner: janus_core::wal::OsFs.open(path)?,
            fail: self.fail.clone(),
        }))
    }
    fn create_zeroed(
        &self,
        path: &std::path::Path,
        len: u64,
    ) -> std::io::Result<Box<dyn janus_core::wal::WalFile>> {
        Ok(Box::new(FailingSyncFile {
            inner: janus_core::wal::OsFs.create_zeroed(path, len)?,
            fail: self.fail.clone(),
        }))
    }
    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        janus_core::wal::OsFs.remove(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        janus_core::wal::OsFs.rename(from, to)
    }
}

/// An fdatasync error on the leader's WAL stops that member (fail-stop, as
/// etcd): it acknowledges nothing after the failure, refuses requests, and
/// the other two elect a leader and carry on with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_fsync_failure_stops_the_member_and_the_cluster_carries_on() {
    use janus_core::wal::WalOptions;
    use std::sync::atomic::Ordering;
    init_log();
    let root = tempfile::tempdir().unwrap();
    let s = specs(root.path(), 3);
    let ms = members_of(&s);
    let fs = std::sync::Arc::new(FailingSyncFs::default());
    let fail = fs.fail.clone();
    // m0 runs on the failing file system, leader or not.
    let mut nodes: Vec<Node> = Vec::new();
    nodes.push(Node::start_on(config(&s[0], &ms, false), fs, WalOptions::default()).unwrap());
    for sp in &s[1..] {
        nodes.push(Node::start(config(sp, &ms, false)).unwrap());
    }
    let all: Vec<&Node> = nodes.iter().collect();
    wait_leader(&all).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("/fs/{i}");
        put_any(&all, &key, "v").await;
        acked.push(key);
    }

    fail.store(true, Ordering::SeqCst);
    // Writes through m0 (forwarded if it is a follower) make every member
    // append and sync: m0's sync fails and its raft loop must stop. Whatever
    // is acknowledged meanwhile (by a quorum without m0) must survive.
    for i in 0..20 {
        let key = format!("/fs/after/{i}");
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(3), put(&nodes[0], &key, "x")).await
        {
            acked.push(key);
        }
        if nodes[0].has_stopped() {
            break;
        }
    }
    assert!(
        nodes[0].has_stopped(),
        "m0's raft loop kept running after fdatasync failed"
    );
    assert!(
        matches!(
            put(&nodes[0], "/fs/refused", "x").await,
            Err(CoreError::Stopped)
        ),
        "a stopped member must refuse writes"
    );

    // The other two carry on.
    let rest: Vec<&Node> = nodes[1..].iter().collect();
    wait_leader(&rest).await;
    for i in 0..10 {
        let key = format!("/fs/later/{i}");
        put_any(&rest, &key, "v").await;
        acked.push(key);
    }
    for key in &acked {
        assert!(
            get(rest[0], key).await.is_some(),
            "acknowledged {key} missing after m0 failed"
        );
    }
    for n in &nodes {
        n.stop();
    }
}

/// A follower answers a keepalive only once the leader has renewed the
/// lease (only the leader's clock expires leases): kept alive through a
/// follower alone, a lease outlives its TTL twice over; when the leader
/// goes, the follower's keepalive reaches the new one; with no quorum left
/// it fails, instead of telling the client of a renewal nobody made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_keepalive_counts_only_once_the_leader_renewed() {
    init_log();
    let root = tempfile::tempdir().unwrap();
    let s = specs(root.path(), 3);
    let ms = members_of(&s);
    let nodes = start_members(&s, &ms, |c| c.request_timeout = Duration::from_secs(2));
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = wait_leader(&all).await;
    let lead = nodes.iter().position(|n| n.member_id() == leader).unwrap();
    let granted = nodes[lead]
        .propose(Command::LeaseGrant {
            id: 77,
            ttl_ms: 1000,
        })
        .await
        .unwrap();
    assert!(matches!(granted.result, CommandResult::LeaseGrant(Ok(_))));
    let f = (lead + 1) % 3;
    let other = (lead + 2) % 3;

    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert_eq!(nodes[f].lease_keepalive(77).await.unwrap(), Some(1));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        nodes[lead].lease_exists(77),
        "the leader expired a lease a follower kept alive"
    );
    assert_eq!(nodes[f].lease_keepalive(12345).await.unwrap(), None);

    nodes[lead].stop();
    assert_eq!(
        nodes[f].lease_keepalive(77).await.unwrap(),
        Some(1),
        "a keepalive after the leader stopped did not reach the new leader"
    );

    nodes[other].stop();
    // Let a lone leader notice it lost its quorum (check-quorum).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let alone = nodes[f].lease_keepalive(77).await;
    assert!(
        matches!(alone, Err(CoreError::Timeout)),
        "a member without a quorum answered a keepalive: {alone:?}"
    );
    nodes[f].stop();
}

/// ZooKeeper's reconfig of a participant as an observer: the voter becomes
/// a learner through a simple conf change, the leader too (it hands
/// leadership to a voter), and the cluster keeps writing with the
/// remaining voters while the learners still receive every write. Every
/// member announces the new configuration version and records the same
/// change time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_demoted_to_learners_leader_included() {
    use janus_core::{Joining, ReconfigRequest, ZkServer};
    init_log();
    let root = tempfile::tempdir().unwrap();
    let s = specs(root.path(), 4);
    let ms = members_of(&s);
    let nodes = start_members(&s, &ms, |_| {});
    let all: Vec<&Node> = nodes.iter().collect();
    let leader_id = wait_leader(&all).await;
    put_any(&all, "/before", "x").await;
    let mut versions: Vec<_> = nodes.iter().map(|n| n.config_versions()).collect();
    let before = nodes[0].config_version();
    let as_observer = |i: usize| Joining {
        peer_urls: vec![s[i].peer_url.clone()],
        is_learner: true,
        zk: ZkServer::default(),
    };
    let demote = |id: u64| ReconfigRequest {
        from_version: None,
        leaving: vec![],
        joining: vec![as_observer(ms.iter().position(|m| m.id == id).unwrap())],
        min_voters: 2,
    };
    // A follower first.
    let follower = ms.iter().find(|m| m.id != leader_id).unwrap().id;
    let leader = nodes.iter().find(|n| n.member_id() == leader_id).unwrap();
    let plan = leader.reconfig_plan(&demote(follower)).expect("plan");
    assert!(!plan.is_empty());
    let list = leader.reconfigure(plan).await.expect("demote a follower");
    assert!(list.iter().any(|m| m.id == follower && m.is_learner));
    // Every member announces the change and records when it happened.
    let after = leader.config_version();
    assert!(after > before);
    for rx in versions.iter_mut() {
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| *v >= after))
            .await
            .expect("config version announced on every member")
            .expect("hub alive");
    }
    let t0 = nodes[0].config_time_ms();
    assert!(t0 > 0, "the change time is recorded");
    for n in &nodes {
        assert_eq!(n.config_time_ms(), t0, "every member agrees on the time");
        assert_eq!(n.config_version(), nodes[0].config_version());
    }
    // Then the leader: leadership moves to a voter.
    let plan = leader.reconfig_plan(&demote(leader_id)).expect("plan");
    leader.reconfigure(plan).await.expect("demote the leader");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = nodes[0].leader();
        if l != 0 && l != leader_id && l != follower && nodes.iter().all(|n| n.leader() == l) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leadership stayed with a learner"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in &nodes {
        let learners: Vec<u64> = n
            .members()
            .iter()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect();
        assert_eq!(learners.len(), 2, "{learners:?}");
        assert!(learners.contains(&leader_id) && learners.contains(&follower));
    }
    // Two voters of two: one more demotion would leave one, which
    // ZooKeeper's two-voter minimum refuses.
    let voter = ms
        .iter()
        .find(|m| m.id != leader_id && m.id != follower)
        .unwrap()
        .id;
    assert!(matches!(
        nodes[0].reconfig_plan(&demote(voter)),
        Err(CoreError::Membership(
            janus_core::MembershipError::TooFewVoters(2)
        ))
    ));
    put_any(&all, "/after", "y").await;
    for n in &nodes {
        assert_eq!(get(n, "/after").await.as_deref(), Some(&b"y"[..]));
    }
    for n in nodes {
        n.stop();
    }
}
