//! Differential check: one scripted session, byte-level, against a fresh
//! real ZooKeeper 3.8 (Debian `zookeeper`) and against janus. Results,
//! error codes, stats and notifications must match after normalizing
//! absolute zxids (mapped to their order of first appearance), times and
//! session ids.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{mh, Raw};
use janus_conformance::differential::fields::{self, Field};
use janus_conformance::harness::Janus;
use janus_conformance::reference::RealZk;
use janus_core::znode::{Acl, Id, Stat};
use janus_zk::proto::jute::{self, Writer};
use janus_zk::proto::op;

/// Maps absolute zxids to ordinals so two servers' transcripts compare.
#[derive(Default)]
struct Norm {
    zxids: HashMap<i64, usize>,
    sessions: HashMap<i64, String>,
}

impl Norm {
    fn z(&mut self, z: i64) -> String {
        if z == 0 {
            return "0".into();
        }
        let n = self.zxids.len() + 1;
        format!("z{}", self.zxids.entry(z).or_insert(n))
    }
    fn owner(&mut self, o: i64) -> String {
        if o <= 0 {
            return format!("{o:#x}");
        }
        let n = self.sessions.len() + 1;
        self.sessions
            .entry(o)
            .or_insert_with(|| format!("session{n}"))
            .clone()
    }
    fn stat(&mut self, s: &Option<Stat>) -> String {
        let Some(s) = s else { return "-".into() };
        format!(
            "czxid={} mzxid={} pzxid={} v={} cv={} av={} owner={} len={} nc={} ctime{}mtime",
            self.z(s.czxid),
            self.z(s.mzxid),
            self.z(s.pzxid),
            s.version,
            s.cversion,
            s.aversion,
            self.owner(s.ephemeral_owner),
            s.data_length,
            s.num_children,
            ctime_vs_mtime(s),
        )
    }
}

/// How a stat's ctime and mtime relate. A node never written since its
/// create has them equal on both servers; after a write they are equal
/// only if the write came in the create's millisecond, which is timing,
/// not behaviour, so that case prints `<=` (and a write that moved mtime
/// below ctime still prints `>`).
fn ctime_vs_mtime(s: &Stat) -> &'static str {
    match (s.ctime.cmp(&s.mtime), s.version) {
        (std::cmp::Ordering::Greater, _) => ">",
        (std::cmp::Ordering::Equal, 0) => "=",
        (std::cmp::Ordering::Less, 0) => "<",
        (_, _) => "<=",
    }
}

fn digest_acl(user_pass: &str) -> Vec<Acl> {
    vec![Acl {
        perms: 31,
        id: Id::new(
            "digest",
            &janus_zk::session::digest_id(user_pass.as_bytes()),
        ),
    }]
}

/// The script. Every step appends one normalized line.
fn script(addr: SocketAddr) -> Vec<String> {
    let mut t = Vec::new();
    let mut n = Norm::default();
    let mut a = Raw::connect(addr, 30000);
    let mut b = Raw::connect(addr, 30000);
    // Register both sessions in order so their names are stable.
    n.owner(a.session);
    n.owner(b.session);
    macro_rules! line { ($($x:tt)*) => { t.push(format!($($x)*)) } }

    let (e, p, s) = a.create("/d", b"x", 0);
    line!("create /d: {e} {p} {}", n.stat(&s));
    let (e, _, _) = a.create("/d", b"x", 0);
    line!("create /d again: {e}");
    let (e, _, _) = a.create("/nope/x", b"", 0);
    line!("create /nope/x: {e}");
    for bad in ["a/b", "/a/", "/a//b", "/a/./b", "/", ""] {
        let (e, _, _) = a.create(bad, b"", 0);
        line!("create {bad:?}: {e}");
    }
    let (e, _, _) = a.create("/bad-flags", b"", 99);
    line!("create bad flags: {e}");
    for i in 0..3 {
        let (e, p, s) = a.create("/d/s-", b"", 2);
        line!("seq {i}: {e} {p} {}", n.stat(&s));
    }
    line!("delete seq 1: {}", a.delete("/d/s-0000000001", -1));
    let (_, st) = a.exists("/d", false);
    line!("after delete: {}", n.stat(&st));
    let (e, p, _) = a.create("/d/s-", b"", 2);
    line!("seq after delete: {e} {p}");
    let (_, st) = a.exists("/d", false);
    line!("after re-create: {}", n.stat(&st));
    let (e, p, s) = a.create("/e", b"eph", 1);
    line!("ephemeral: {e} {p} {}", n.stat(&s));
    let (e, _, _) = a.create("/e/c", b"", 0);
    line!("child of ephemeral: {e}");
    let (e, s) = a.set_data("/d", b"y", 5);
    line!("setData bad version: {e} {}", n.stat(&s));
    let (e, s) = a.set_data("/d", b"yy", 0);
    line!("setData: {e} {}", n.stat(&s));
    line!("delete non-empty: {}", a.delete("/d", -1));
    line!("delete missing: {}", a.delete("/missing", -1));
    line!("delete bad version: {}", a.delete("/d/s-0000000000", 3));
    let (e, d, s) = a.get_data("/d", false);
    line!(
        "getData /d: {e} {:?} {}",
        String::from_utf8_lossy(&d),
        n.stat(&s)
    );
    let (e, c, s) = a.children2("/d", false);
    line!("children /d: {e} {c:?} {}", n.stat(&s));
    let (e, c, s) = a.children2("/", false);
    line!("children /: {e} {c:?} {}", n.stat(&s));
    let (e, s) = a.exists("/missing", false);
    line!("exists missing: {e} {}", n.stat(&s));

    // Watches: data, exist, child; notification precedes the next reply.
    a.get_data("/d", true);
    a.exists("/w", true);
    a.children2("/d", true);
    b.set_data("/d", b"z", -1);
    b.create("/w", b"", 0);
    b.create("/d/c", b"", 0);
    a.sync("/");
    line!("events after b's writes: {:?}", a.take_events());
    b.delete("/w", -1);
    b.set_data("/d", b"zz", -1);
    a.sync("/");
    line!("no events for fired one-shots: {:?}", a.take_events());
    a.get_data("/w", true);
    a.children2("/w", true);
    line!(
        "no watch left by reads of a missing node: {:?}",
        a.take_events()
    );

    // Multi: failure codes, then success.
    let (e, r) = a.multi(|w| {
        mh(w, op::CREATE)
            .ustring("/m")
            .buffer(b"")
            .acl_vec(&Acl::open())
            .int(0);
        mh(w, op::SET_DATA).ustring("/missing").buffer(b"").int(-1);
        mh(w, op::DELETE).ustring("/d").int(-1);
    });
    line!("multi failing: {e} {r:?}");
    let (e, _, _) = a.create("/m", b"", 0);
    line!("failed multi changed nothing: {e}");
    a.delete("/m", -1);
    let (e, r) = a.multi(|w| {
        mh(w, op::CREATE)
            .ustring("/m1")
            .buffer(b"")
            .acl_vec(&Acl::open())
            .int(0);
        mh(w, op::CREATE2)
            .ustring("/m1/a")
            .buffer(b"")
            .acl_vec(&Acl::open())
            .int(0);
        mh(w, op::SET_DATA).ustring("/m1").buffer(b"q").int(0);
        mh(w, op::CHECK).ustring("/m1").int(1);
        mh(w, op::DELETE).ustring("/m1/a").int(0);
    });
    line!("multi ok: {e} {r:?}");
    let (e, r) = a.multi(|w| {
        mh(w, op::CHECK).ustring("/m1").int(7);
    });
    line!("multi check bad version: {e} {r:?}");
    // Which op a failed multi names: ZooKeeper checks the ops in order, so
    // a tree failure before a bad TTL is the one reported, and the other
    // way round.
    let bad_ttl = |w: &mut Writer| {
        mh(w, op::CREATE_TTL)
            .ustring("/ttl-m")
            .buffer(b"")
            .acl_vec(&Acl::open())
            .int(5)
            .long(0);
    };
    let (e, r) = a.multi(|w| {
        mh(w, op::SET_DATA).ustring("/missing").buffer(b"").int(-1);
        bad_ttl(w);
    });
    line!("multi tree failure before bad TTL: {e} {r:?}");
    let (e, r) = a.multi(|w| {
        bad_ttl(w);
        mh(w, op::SET_DATA).ustring("/missing").buffer(b"").int(-1);
    });
    line!("multi bad TTL before tree failure: {e} {r:?}");
    let (e, r) = a.multi(|w| {
        mh(w, op::DELETE).ustring("/missing").int(-1);
        mh(w, op::CREATE)
            .ustring("/bad-flags-m")
            .buffer(b"")
            .acl_vec(&Acl::open())
            .int(99);
    });
    line!("multi tree failure before bad flags: {e} {r:?}");

    // ACLs and auth.
    let (e, acl, s) = a.get_acl("/d");
    line!("getACL /d: {e} {acl:?} {}", n.stat(&s));
    let (e, s) = a.set_acl("/d", &digest_acl("alice:secret"), 3);
    line!("setACL bad version: {e} {}", n.stat(&s));
    let (e, s) = a.set_acl("/d", &digest_acl("alice:secret"), 0);
    line!("setACL: {e} {}", n.stat(&s));
    let (e, _, _) = b.get_data("/d", false);
    line!("getData without auth: {e}");
    let (e, _) = b.set_data("/d", b"", -1);
    line!("setData without auth: {e}");
    line!("auth digest: {}", b.add_auth("digest", b"alice:secret"));
    let (e, d, _) = b.get_data("/d", false);
    line!("getData with auth: {e} {:?}", String::from_utf8_lossy(&d));
    let (e, acl, _) = b.get_acl("/d");
    line!("getACL with auth: {e} {acl:?}");
    let (e, _, _) = a.create_acl(
        "/bad-acl",
        b"",
        0,
        &[Acl {
            perms: 31,
            id: Id::new("auth", ""),
        }],
    );
    line!("auth ACL without credentials: {e}");
    let (e, _, _) = a.create_acl(
        "/bad-acl",
        b"",
        0,
        &[Acl {
            perms: 31,
            id: Id::new("nosuch", "x"),
        }],
    );
    line!("unknown ACL scheme: {e}");
    let (e, _, s) = b.create_acl(
        "/auth-acl",
        b"",
        0,
        &[Acl {
            perms: 31,
            id: Id::new("auth", ""),
        }],
    );
    line!("auth ACL with credentials: {e} {}", n.stat(&s));
    let (e, acl, _) = b.get_acl("/auth-acl");
    line!("auth ACL expanded: {e} {acl:?}");

    // TTL and container creation, system nodes.
    let (e, p, s) = a.create_ttl("/ttl", 5, 60000);
    line!("createTTL: {e} {p} {}", n.stat(&s));
    let (_, s) = a.exists("/ttl", false);
    line!("TTL node stat: {}", n.stat(&s));
    let (e, _, _) = a.create_ttl("/ttl0", 5, 0);
    line!("createTTL ttl 0: {e}");
    let (e, _, _) = a.create("/ttl1", b"", 5);
    line!("TTL mode through create2: {e}");
    let r = a
        .call(op::CREATE_CONTAINER, |w| {
            w.ustring("/ctr").buffer(b"").acl_vec(&Acl::open()).int(4);
        })
        .expect("reply");
    line!("createContainer: {}", r.err);
    let (_, s) = a.exists("/ctr", false);
    line!("container stat: {}", n.stat(&s));
    let (e, c, s) = a.children2("/zookeeper", false);
    line!("children /zookeeper: {e} {c:?} {}", n.stat(&s));
    let (e, d, s) = a.get_data("/zookeeper/config", false);
    line!("getData /zookeeper/config: {e} {d:?} {}", n.stat(&s));
    let (e, acl, _) = a.get_acl("/zookeeper/config");
    line!("getACL /zookeeper/config: {e} {acl:?}");
    let (e, _, _) = a.create("/zookeeper", b"", 0);
    line!("create /zookeeper: {e}");
    let (e, s) = a.exists("/zookeeper/quota", false);
    line!("exists /zookeeper/quota: {e} {}", n.stat(&s));

    // Reads that need no tree rules.
    let r = a.call(op::GET_ALL_CHILDREN_NUMBER, |w| {
        w.ustring("/d");
    });
    line!("getAllChildrenNumber /d: {:?}", r.map(|r| (r.err, r.body)));
    let r = b.call(op::GET_EPHEMERALS, |w| {
        w.ustring("/");
    });
    line!("getEphemerals (b): {:?}", r.map(|r| (r.err, r.body)));
    let r = a.call(op::CHECK_WATCHES, |w| {
        w.ustring("/nothing").int(3);
    });
    line!("checkWatches none: {:?}", r.map(|r| r.err));
    let r = a.call(op::REMOVE_WATCHES, |w| {
        w.ustring("/nothing").int(1);
    });
    line!("removeWatches none: {:?}", r.map(|r| r.err));

    // Persistent recursive watch.
    let r = a.call(op::ADD_WATCH, |w| {
        w.ustring("/r").int(1);
    });
    line!("addWatch: {:?}", r.map(|r| (r.err, r.body)));
    b.create("/r", b"", 0);
    b.create("/r/x", b"", 0);
    b.set_data("/r/x", b"1", -1);
    b.delete("/r/x", -1);
    a.sync("/");
    line!("recursive events: {:?}", a.take_events());

    // Closing b's session deletes its ephemerals and fires a's watches.
    b.create("/eb", b"", 1);
    a.exists("/eb", true);
    let r = b.call(op::CLOSE_SESSION, |_| {});
    line!("closeSession: {:?}", r.map(|r| r.err));
    std::thread::sleep(std::time::Duration::from_millis(300));
    a.sync("/");
    line!(
        "after close: {:?} {:?}",
        a.take_events(),
        a.exists("/eb", false).0
    );

    // Null data (a jute buffer of length -1) stays distinct from empty
    // data: getData answers what was written, the stat says 0 for both.
    let get_raw = |c: &mut Raw, n: &mut Norm, path: &str| -> String {
        let r = c.call(op::GET_DATA, |w| {
            w.ustring(path).boolean(false);
        });
        match r {
            None => "connection closed".into(),
            Some(r) if r.err != 0 => format!("err {}", r.err),
            Some(r) => match jute::nullable_buffer(&r.body) {
                Ok((rest, d)) => {
                    let st = jute::stat(rest).ok().map(|(_, s)| s);
                    format!("{d:?} {}", n.stat(&st))
                }
                Err(_) => "undecodable reply".into(),
            },
        }
    };
    let create_null = |c: &mut Raw, n: &mut Norm, path: &str| -> String {
        let r = c.call(op::CREATE2, |w| {
            w.ustring(path)
                .nullable_buffer(None)
                .acl_vec(&Acl::open())
                .int(0);
        });
        match r {
            None => "connection closed".into(),
            Some(r) if r.err != 0 => format!("err {}", r.err),
            Some(r) => {
                let st = jute::ustring(&r.body)
                    .ok()
                    .and_then(|(rest, _)| jute::stat(rest).ok())
                    .map(|(_, s)| s);
                format!("0 {}", n.stat(&st))
            }
        }
    };
    let set_null = |c: &mut Raw, n: &mut Norm, path: &str| -> String {
        let r = c.call(op::SET_DATA, |w| {
            w.ustring(path).nullable_buffer(None).int(-1);
        });
        match r {
            None => "connection closed".into(),
            Some(r) if r.err != 0 => format!("err {}", r.err),
            Some(r) => format!("0 {}", n.stat(&jute::stat(&r.body).ok().map(|(_, s)| s))),
        }
    };
    line!("create null: {}", create_null(&mut a, &mut n, "/null"));
    line!("getData null: {}", get_raw(&mut a, &mut n, "/null"));
    let (e, _, s) = a.create("/empty", b"", 0);
    line!("create empty: {e} {}", n.stat(&s));
    line!("getData empty: {}", get_raw(&mut a, &mut n, "/empty"));
    line!(
        "setData empty to null: {}",
        set_null(&mut a, &mut n, "/empty")
    );
    line!("getData set null: {}", get_raw(&mut a, &mut n, "/empty"));
    let (e, s) = a.set_data("/null", b"", -1);
    line!("setData null to empty: {e} {}", n.stat(&s));
    line!("getData set empty: {}", get_raw(&mut a, &mut n, "/null"));
    let (e, r) = a.multi(|w| {
        mh(w, op::CREATE)
            .ustring("/null-m")
            .nullable_buffer(None)
            .acl_vec(&Acl::open())
            .int(0);
    });
    line!("multi create null: {e} {r:?}");
    line!("getData multi null: {}", get_raw(&mut a, &mut n, "/null-m"));

    // Unknown opcode: error reply, then the connection closes.
    let r = a.call(999, |_| {});
    line!("unknown opcode: {:?}", r.map(|r| r.err));
    t
}

/// Differences owned by janus-core (reported to its owner, see the lead's
/// README compatibility table): (the transcript line's label, the one field
/// of that line that may differ, why). The rest of the line is compared
/// exactly; a field is a `NAME=value` word of the line (`cv`, `mzxid`, ...,
/// see `janus_conformance::differential::fields`) or `message`. Any other
/// difference fails the test, and so does a listed one that no longer
/// occurs. None remain.
const KNOWN_CORE_DIFFERENCES: &[(&str, &str, &str)] = &[];

/// Whether the difference between `e` and `g` is only in the fields listed
/// for `label`, and which of those entries were needed.
fn excused(label: &str, e: &str, g: &str) -> Option<Vec<usize>> {
    let listed: Vec<(usize, Field)> = KNOWN_CORE_DIFFERENCES
        .iter()
        .enumerate()
        .filter(|(_, (l, _, _))| *l == label)
        .filter_map(|(i, (_, f, _))| Field::parse(f).map(|f| (i, f)))
        .collect();
    let all: Vec<&Field> = listed.iter().map(|(_, f)| f).collect();
    if listed.is_empty() || fields::mask(e, &all) != fields::mask(g, &all) {
        return None;
    }
    Some(
        listed
            .iter()
            .filter(|(i, _)| {
                let others: Vec<&Field> = listed
                    .iter()
                    .filter(|(j, _)| j != i)
                    .map(|(_, f)| f)
                    .collect();
                fields::mask(e, &others) != fields::mask(g, &others)
            })
            .map(|(i, _)| *i)
            .collect(),
    )
}

#[test]
fn same_transcript_as_zookeeper_3_8() {
    let zk = RealZk::start().expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
    let expected = script(zk.addr());
    drop(zk);
    let janus = Janus::start();
    let got = script(janus.zk_addr());
    let mut diffs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, (e, g)) in expected.iter().zip(got.iter()).enumerate() {
        if e != g {
            let label = e.split(':').next().unwrap_or_default();
            if let Some(used) = excused(label, e, g) {
                for k in used {
                    let (_, f, why) = KNOWN_CORE_DIFFERENCES[k];
                    println!(
                        "known difference in {f} ({why}) at step {i}:\n  zookeeper: {e}\n  janus:     {g}"
                    );
                    seen.insert(k);
                }
                continue;
            }
            diffs.push(format!("step {i}:\n  zookeeper: {e}\n  janus:     {g}"));
        }
    }
    // A listed difference that no longer occurs must go, so a regression
    // cannot hide behind it.
    for (k, (l, f, why)) in KNOWN_CORE_DIFFERENCES.iter().enumerate() {
        if !seen.contains(&k) {
            diffs.push(format!(
                "listed difference {f} of {l:?} ({why}) did not occur"
            ));
        }
    }
    if expected.len() != got.len() {
        diffs.push(format!(
            "lengths differ: {} vs {}",
            expected.len(),
            got.len()
        ));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The script against ZooKeeper alone (no janus needed): prints the
/// reference transcript, and checks the few facts docs/ARCHITECTURE.md relies on.
#[test]
fn zookeeper_reference_transcript() {
    let zk = RealZk::start().expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
    let t = script(zk.addr());
    for l in &t {
        println!("{l}");
    }
    assert!(t
        .iter()
        .any(|l| l == "multi failing: 0 [(-1, 0), (-1, -101), (-1, -2)]"));
    assert!(t
        .iter()
        .any(|l| l == "multi tree failure before bad TTL: 0 [(-1, -101), (-1, -2)]"));
    assert!(t
        .iter()
        .any(|l| l == "multi bad TTL before tree failure: 0 [(-1, -8), (-1, -2)]"));
}

/// A session resumed on a second connection while the first is still open
/// (a client reconnecting before the server noticed the old socket die):
/// what each connection's next write gets.
fn second_connection_script(addr: SocketAddr) -> Vec<String> {
    let create = |c: &mut Raw, p: &str| {
        c.call(op::CREATE2, |w| {
            w.ustring(p).buffer(b"").acl_vec(&Acl::open()).int(0);
        })
        .map_or("connection closed".to_string(), |r| {
            format!("err {}", r.err)
        })
    };
    let mut t = Vec::new();
    let mut a = Raw::connect(addr, 10000);
    t.push(format!("a create /x1: {}", create(&mut a, "/x1")));
    let mut b = Raw::resume(addr, a.session, &a.passwd, 10000).expect("resume");
    // The resend of a request the client never saw answered.
    t.push(format!("b create /x2: {}", create(&mut b, "/x2")));
    t.push(format!("a create /x3: {}", create(&mut a, "/x3")));
    t.push(format!("b create /x4: {}", create(&mut b, "/x4")));
    t.push(format!("b exists /x3: {}", b.exists("/x3", false).0));
    t
}

#[test]
fn second_connection_of_a_session_as_zookeeper() {
    let zk = RealZk::start().expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
    let expected = second_connection_script(zk.addr());
    drop(zk);
    let janus = Janus::start();
    let got = second_connection_script(janus.zk_addr());
    assert_eq!(got, expected, "janus (left) vs ZooKeeper 3.8 (right)");
}

/// Waits up to `within` for the next notification on `c` (replies are not
/// expected meanwhile): its type and path, and how long it took.
fn next_event(c: &mut Raw, within: Duration) -> Option<(i32, String, Duration)> {
    let start = Instant::now();
    if let Some((t, p)) = c.take_events().into_iter().next() {
        return Some((t, p, start.elapsed()));
    }
    c.s.set_read_timeout(Some(within)).ok()?;
    let b = common::read_frame(&mut c.s)?;
    let (i, xid) = jute::int(&b).ok()?;
    let (i, _zxid) = jute::long(i).ok()?;
    let (i, _err) = jute::int(i).ok()?;
    if xid != -1 {
        return None;
    }
    let (i, t) = jute::int(i).ok()?;
    let (i, _state) = jute::int(i).ok()?;
    let (_, p) = jute::ustring(i).ok()?;
    Some((t, p, start.elapsed()))
}

/// Whether the server closed `c` within `within` (end of stream or reset,
/// nothing else read).
fn closed_within(c: &mut Raw, within: Duration) -> bool {
    use std::io::Read;
    let _ = c.s.set_read_timeout(Some(within));
    let mut b = [0u8; 1];
    match c.s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// How a session's end reaches the clients: closed from a second
/// connection of the same session, and expired (its client silent): the
/// ephemeral's watcher gets NodeDeleted, the session's own connection is
/// closed, each within a bound (at once for a close; for an expiry not
/// before the timeout and within it plus two ticks, ZooKeeper's expiry
/// granularity).
fn session_end_script(addr: SocketAddr) -> Vec<String> {
    let mut t = Vec::new();
    let mut w = Raw::connect(addr, 30000);
    let mut a = Raw::connect(addr, 30000);
    let (e, _, _) = a.create("/se", b"", 1);
    t.push(format!("create ephemeral: {e}"));
    let (e, _) = w.exists("/se", true);
    t.push(format!("watch: {e}"));
    let mut b = Raw::resume(addr, a.session, &a.passwd, 30000).expect("resume");
    t.push(format!(
        "first connection after the session moved: closed={}",
        closed_within(&mut a, Duration::from_secs(2))
    ));
    let r = b.call(op::CLOSE_SESSION, |_| {});
    t.push(format!(
        "closeSession on the second: {:?}",
        r.map(|r| r.err)
    ));
    t.push(format!(
        "second connection after closeSession: closed={}",
        closed_within(&mut b, Duration::from_secs(2))
    ));
    match next_event(&mut w, Duration::from_secs(2)) {
        Some((ty, p, took)) => t.push(format!(
            "watcher: event {ty} {p} within 1s={}",
            took < Duration::from_secs(1)
        )),
        None => t.push("watcher: no event within 2s".into()),
    }

    // Expiry: a session whose client sends nothing.
    let mut d = Raw::connect(addr, 4000);
    let timeout = Duration::from_millis(d.timeout as u64);
    t.push(format!("negotiated timeout: {}", d.timeout));
    let (e, _, _) = d.create("/sx", b"", 1);
    t.push(format!("create ephemeral: {e}"));
    let (e, _) = w.exists("/sx", true);
    t.push(format!("watch: {e}"));
    let start = Instant::now();
    // tickTime 2000 in both (janus: --zk-tick-ms default).
    let bound = timeout + Duration::from_millis(4000);
    match next_event(&mut w, bound + Duration::from_secs(1)) {
        Some((ty, p, _)) => {
            let took = start.elapsed();
            t.push(format!(
                "expiry: event {ty} {p} not before the timeout={} within timeout + 2 ticks={}",
                took + Duration::from_millis(100) >= timeout,
                took <= bound
            ));
        }
        None => t.push("expiry: no event".into()),
    }
    t.push(format!(
        "expired session's connection: closed={}",
        closed_within(&mut d, Duration::from_secs(2))
    ));
    let (e, _) = w.exists("/sx", false);
    t.push(format!("ephemeral after expiry: {e}"));
    t
}

#[test]
fn session_end_is_delivered_as_zookeeper() {
    let zk = RealZk::start().expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
    let t0 = Instant::now();
    let expected = session_end_script(zk.addr());
    println!("zookeeper: {:?}", t0.elapsed());
    drop(zk);
    let janus = Janus::start();
    let t0 = Instant::now();
    let got = session_end_script(janus.zk_addr());
    println!("janus: {:?}", t0.elapsed());
    println!("{}", expected.join("\n"));
    assert_eq!(got, expected, "janus (left) vs ZooKeeper 3.8 (right)");
}

/// The version ZooKeeper reports in srvr / mntr / envi: `3.8.0` and the
/// rest of `Version.getFullVersion()`'s shape.
fn versions(addr: SocketAddr) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (word, prefix) in [
        ("srvr", "Zookeeper version: "),
        ("mntr", "zk_version\t"),
        ("envi", "zookeeper.version="),
    ] {
        let out = common::four_letter(addr, word);
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{word}: no {prefix:?} line in {out}"));
        // "3.8.0-<commit>, built on 2024-12-29 17:54 UTC"
        let (release, rest) = line.split_once('-').unwrap_or((line, ""));
        let built = rest.split_once(", built on ").map_or("", |x| x.1);
        let shape: String = built
            .chars()
            .map(|c| if c.is_ascii_digit() { 'D' } else { c })
            .collect();
        v.push((format!("{word} {release}"), shape));
    }
    v
}

#[test]
fn version_strings_as_zookeeper_3_8_0() {
    let zk = RealZk::start().expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
    let want = versions(zk.addr());
    drop(zk);
    let janus = Janus::start();
    assert_eq!(versions(janus.zk_addr()), want);
    assert_eq!(want[0].1, "DDDD-DD-DD DD:DD UTC");
    let srvr = common::four_letter(janus.zk_addr(), "srvr");
    let mntr = common::four_letter(janus.zk_addr(), "mntr");
    let v = env!("CARGO_PKG_VERSION");
    assert!(srvr.contains(&format!("\nJanus version: {v}\n")), "{srvr}");
    assert!(mntr.contains(&format!("\njanus_version\t{v}\n")), "{mntr}");
}
