//! ZooKeeper behaviour that needs several servers: `/zookeeper/config`
//! watches on every member of a janus cluster, and read-only sessions side
//! by side with a real ZooKeeper 3.8 ensemble (Debian `zookeeper`,
//! `readonlymode.enabled`) when two of three servers are down.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Raw;
use janus_conformance::cluster::{Cluster, ClusterOptions};
use janus_conformance::harness::etcdctl;
use janus_conformance::reference::{four_letter, RealZk, RealZkEnsemble};
use janus_zk::proto::event_type;
use janus_zk::proto::jute;

const CONFIG: &str = "/zookeeper/config";

/// The next notification on an otherwise idle connection, waiting at most
/// `limit`: (type, path). A reply or a closed connection is a failure.
fn next_notification(c: &mut Raw, limit: Duration) -> Option<(i32, String)> {
    c.s.set_read_timeout(Some(limit)).ok()?;
    let b = common::read_frame(&mut c.s);
    let _ = c.s.set_read_timeout(Some(Duration::from_secs(20)));
    let b = b?;
    let (i, xid) = jute::int(&b).ok()?;
    assert_eq!(xid, -1, "a notification, not a reply");
    let (i, _zxid) = jute::long(i).ok()?;
    let (i, _err) = jute::int(i).ok()?;
    let (i, t) = jute::int(i).ok()?;
    let (i, _state) = jute::int(i).ok()?;
    let (_, p) = jute::ustring(i).ok()?;
    Some((t, p))
}

/// A membership change made through etcd's Cluster API on one member
/// fires the getConfig watches of idle sessions on the other members (as
/// each ZooKeeper server fires its own when it applies a reconfig), and
/// every member then shows the same version and a real mtime.
#[test]
fn config_watches_fire_on_every_member() {
    let mut cluster = Cluster::start(3);
    for i in 0..3 {
        cluster.wait_up(i);
    }
    let zk: Vec<SocketAddr> = cluster.members.iter().map(|m| m.zk).collect();
    // Members publish their ZooKeeper server lines a moment after they
    // start (each a config change): let them settle first.
    std::thread::sleep(Duration::from_secs(2));
    let mut data_watcher = Raw::connect(zk[1], 30000);
    let mut exists_watcher = Raw::connect(zk[2], 30000);
    let (err, before, _) = data_watcher.get_data(CONFIG, true);
    assert_eq!(err, 0);
    let (err, stat) = exists_watcher.exists(CONFIG, true);
    assert_eq!(err, 0);
    assert!(stat.is_some());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let learner = add_learner(&cluster.members[0].etcd_endpoint(), "extra");
    for (name, c) in [("data", &mut data_watcher), ("exists", &mut exists_watcher)] {
        assert_eq!(
            next_notification(c, Duration::from_secs(10)),
            Some((event_type::NODE_DATA_CHANGED, CONFIG.to_string())),
            "the {name} watch on another member fires"
        );
    }
    let mut stats = Vec::new();
    for (i, addr) in zk.iter().enumerate() {
        let mut c = Raw::connect(*addr, 30000);
        let (err, after, stat) = c.get_data(CONFIG, false);
        assert_eq!(err, 0);
        assert_ne!(after, before, "member {i} shows the new configuration");
        assert!(
            String::from_utf8_lossy(&after).contains(&learner[7..]),
            "member {i}: {}",
            String::from_utf8_lossy(&after)
        );
        stats.push(stat.expect("stat"));
    }
    for s in &stats {
        assert_eq!(s.mzxid, stats[0].mzxid, "one version on every member");
        assert_eq!(s.mtime, stats[0].mtime, "one change time on every member");
    }
    let mtime = stats[0].mtime;
    assert!(
        mtime >= since - 5_000 && mtime <= since + 60_000,
        "mtime {mtime} is when the change was made (~{since})"
    );
    // One-shot: a second change fires nothing more on them.
    add_learner(&cluster.members[0].etcd_endpoint(), "extra2");
    std::thread::sleep(Duration::from_millis(500));
    for c in [&mut data_watcher, &mut exists_watcher] {
        assert!(c.ping().is_some());
        assert_eq!(c.take_events(), Vec::<(i32, String)>::new());
    }
}

/// What a client sees of read-only mode on one server, as text lines.
fn read_only_transcript(servers: &mut dyn Servers) -> Vec<String> {
    let mut t = Vec::new();
    let last = servers.client(2);
    // Written while the quorum is there, read back later.
    let mut rw = connect_retrying(servers.client(0));
    let (err, _, _) = rw.create("/ro", b"before", 0);
    assert_eq!(err, 0);
    assert_eq!(connect_retrying(last).sync("/ro"), 0);
    drop(rw);
    servers.stop(0);
    servers.stop(1);
    wait_isro(last, "ro", 60, servers);
    let (mut ro, flag) = connect_read_only_retrying(last, servers);
    t.push(format!("connect canBeReadOnly: readOnly={flag:?}"));
    let (err, data, stat) = ro.get_data("/ro", false);
    t.push(format!(
        "getData /ro: err={err} data={:?} version={:?}",
        String::from_utf8_lossy(&data),
        stat.map(|s| s.version)
    ));
    let (err, _, _) = ro.create("/ro2", b"x", 0);
    t.push(format!("create /ro2: err={err}"));
    let (err, _) = ro.exists("/ro2", false);
    t.push(format!("exists /ro2: err={err}"));
    t.push(format!(
        "isro: {}",
        four_letter(last, "isro").unwrap_or_default().trim()
    ));
    servers.start(0);
    servers.start(1);
    // The server closes the read-only session once it is in a quorum.
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = loop {
        if ro.ping().is_none() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    t.push(format!("read-only session closed by the server: {closed}"));
    wait_isro(last, "rw", 60, servers);
    let (mut again, flag) = connect_read_only_retrying(last, servers);
    t.push(format!("reconnect canBeReadOnly: readOnly={flag:?}"));
    let (err, _, _) = again.create("/ro2", b"x", 0);
    t.push(format!("create /ro2: err={err}"));
    t.push(format!(
        "isro: {}",
        four_letter(last, "isro").unwrap_or_default().trim()
    ));
    t
}

/// A `canBeReadOnly` session, retrying while the server closes
/// connections (it is between modes).
fn connect_read_only_retrying(addr: SocketAddr, servers: &dyn Servers) -> (Raw, Option<bool>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(c) = common::connect_read_only(addr, 10000) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} never gave a session; logs:\n{}",
            servers.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A read-write session, retrying while the server is not serving yet.
fn connect_retrying(addr: SocketAddr) -> Raw {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, r) = common::connect_raw(addr, 30000, 0, &[0; 16]);
        if let Some((timeout, session, passwd)) = r {
            drop(s);
            if session != 0 {
                return Raw::resume(addr, session, &passwd, timeout).expect("resume");
            }
        }
        assert!(Instant::now() < deadline, "{addr} never served");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_isro(addr: SocketAddr, want: &str, secs: u64, servers: &dyn Servers) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = four_letter(addr, "isro").unwrap_or_default();
        if got.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "isro on {addr} never said {want} (last {got:?}); logs:\n{}",
            servers.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Three servers that can be stopped and started again.
trait Servers {
    fn client(&self, i: usize) -> SocketAddr;
    fn stop(&mut self, i: usize);
    fn start(&mut self, i: usize);
    fn logs(&self) -> String;
}

impl Servers for RealZkEnsemble {
    fn client(&self, i: usize) -> SocketAddr {
        RealZkEnsemble::client(self, i)
    }
    fn stop(&mut self, i: usize) {
        self.kill(i);
    }
    fn start(&mut self, i: usize) {
        self.respawn(i).expect("restart ZooKeeper");
    }
    fn logs(&self) -> String {
        (0..3).map(|i| self.log(i)).collect::<Vec<_>>().join("\n")
    }
}

impl Servers for Cluster {
    fn client(&self, i: usize) -> SocketAddr {
        self.members[i].zk
    }
    fn stop(&mut self, i: usize) {
        self.kill(i);
    }
    fn start(&mut self, i: usize) {
        self.spawn_with(i, "new", &[]);
        self.wait_up(i);
    }
    fn logs(&self) -> String {
        Cluster::logs(self)
    }
}

/// Read-only mode against ZooKeeper 3.8.0: two of three servers stopped,
/// a `canBeReadOnly` client on the third gets a read-only session (flag,
/// reads, NotReadOnly for writes, `isro`), which the server closes when
/// the quorum returns; a new session is read-write. Both transcripts are
/// printed side by side and must be equal.
#[test]
fn read_only_sessions_match_zookeeper() {
    if !RealZk::available() {
        eprintln!("skipping: ZooKeeper is not installed (apt-get install zookeeper)");
        return;
    }
    // ZooKeeper 3.8's read-only server creates only local sessions: with
    // localSessionsEnabled off (the default) it answers a new read-only
    // client's ConnectRequest with a NotReadOnly reply header instead of a
    // ConnectResponse, so no client gets a read-only session there.
    let mut zk = RealZkEnsemble::start_with(
        3,
        &["localSessionsEnabled=true"],
        &["-Dreadonlymode.enabled=true"],
    )
    .expect("start the ZooKeeper ensemble");
    let expected = read_only_transcript(&mut zk);
    drop(zk);
    let mut janus = Cluster::start_with(
        3,
        ClusterOptions {
            extra: vec!["--zk-read-only".into()],
            ..ClusterOptions::default()
        },
    );
    for i in 0..3 {
        janus.wait_up(i);
    }
    let got = read_only_transcript(&mut janus);
    let logs = janus.logs();
    let width = expected.iter().map(String::len).max().unwrap_or(0);
    println!("{:width$} | janus", "ZooKeeper 3.8.0");
    let mut same = expected.len() == got.len();
    for i in 0..expected.len().max(got.len()) {
        let e = expected.get(i).map_or("", String::as_str);
        let g = got.get(i).map_or("", String::as_str);
        same &= e == g;
        println!("{e:width$} {} {g}", if e == g { "|" } else { "X" });
    }
    assert!(same, "janus differs from ZooKeeper; janus logs:\n{logs}");
}

/// ZooKeeper's `reconfig -add server.N=...:observer` for a current
/// participant: through the ZooKeeper frontend of a three-member cluster,
/// the member becomes a learner, every member's `/zookeeper/config` says
/// observer, the member reports itself an observer, and writes go on.
/// (The one-server reference of `zk_reconfig.scn` cannot show this: its
/// only participant cannot become an observer.)
#[test]
fn a_participant_becomes_an_observer() {
    let digest = janus_zk::session::digest_id(b"super:test");
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            extra: vec!["--zk-reconfig".into(), "--zk-super-digest".into(), digest],
            ..ClusterOptions::default()
        },
    );
    for i in 0..3 {
        cluster.wait_up(i);
    }
    let zk: Vec<SocketAddr> = cluster.members.iter().map(|m| m.zk).collect();
    // Members publish their ZooKeeper addresses a moment after they start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let mut c = Raw::connect(zk[0], 30000);
        let (_, data, _) = c.get_data(CONFIG, false);
        let text = String::from_utf8_lossy(&data).into_owned();
        let own = format!(";{}", zk[2]);
        if let Some(l) = text.lines().find(|l| l.ends_with(&own)) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "member 2 never published: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(line.contains(":participant;"), "{line}");
    let observer = line.replace(":participant;", ":observer;");
    let mut c = Raw::connect(zk[0], 30000);
    assert_eq!(c.add_auth("digest", b"super:test"), 0);
    let r = c
        .call(janus_zk::proto::op::RECONFIG, |w| {
            w.ustring(&observer);
            w.nullable_buffer(None);
            w.nullable_buffer(None);
            w.long(-1);
        })
        .expect("reconfig reply");
    assert_eq!(r.err, 0, "reconfig answered {}", r.err);
    for (i, addr) in zk.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut c = Raw::connect(*addr, 30000);
            let (_, data, _) = c.get_data(CONFIG, false);
            let text = String::from_utf8_lossy(&data).into_owned();
            if text.lines().any(|l| l == observer) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} does not show {observer}: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let srvr = four_letter(zk[2], "srvr").unwrap_or_default();
        if srvr.contains("Mode: observer") {
            break;
        }
        assert!(Instant::now() < deadline, "member 2 says: {srvr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut w = Raw::connect(zk[0], 30000);
    assert_eq!(w.create("/after-demotion", b"x", 0).0, 0);
    let mut r = Raw::connect(zk[2], 30000);
    assert_eq!(r.sync("/after-demotion"), 0);
    assert_eq!(r.get_data("/after-demotion", false).1, b"x");
}

/// Adds a learner named `name` on a fresh loopback peer URL through etcd's
/// Cluster API (a membership change, so a new config version); returns
/// the URL.
fn add_learner(endpoint: &str, name: &str) -> String {
    let url = format!(
        "http://127.0.0.1:{}",
        janus_conformance::harness::free_port()
    );
    etcdctl(
        endpoint,
        &["member", "add", name, "--learner", "--peer-urls", &url],
    );
    url
}
