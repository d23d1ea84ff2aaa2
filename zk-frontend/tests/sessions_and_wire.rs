//! janus only, over the raw wire: sessions (expiry, resume, bad password),
//! four-letter words, frame limits, malformed input, pipelining and the
//! notification-before-reply ordering (D6).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{connect_raw, four_letter, read_frame, write_frame, Raw};
use janus_conformance::harness::Janus;
use janus_zk::proto::jute::Writer;
use janus_zk::proto::op;

#[test]
fn silent_client_loses_session_and_ephemerals_reconnecting_client_keeps_them() {
    let j = Janus::start();
    let addr = j.zk_addr();
    // Smallest negotiable timeout (2 x tick) keeps the test short.
    let mut quiet = Raw::connect(addr, 4000);
    assert_eq!(quiet.timeout, 4000);
    assert_eq!(quiet.create("/gone", b"", 1).0, 0);
    let mut keeper = Raw::connect(addr, 4000);
    assert_eq!(keeper.create("/kept", b"", 1).0, 0);
    let mut observer = Raw::connect(addr, 30000);
    assert_eq!(observer.exists("/gone", true).0, 0);

    // `keeper` drops its socket and resumes on a new one within the timeout.
    let (sid, pw) = (keeper.session, keeper.passwd.clone());
    drop(keeper);
    std::thread::sleep(Duration::from_millis(1500));
    let mut keeper = Raw::resume(addr, sid, &pw, 4000).expect("session resumed in time");
    assert_eq!(keeper.session, sid);

    // `quiet` sends nothing; `keeper` pings; after the timeout the ephemeral
    // of `quiet` is gone and the observer was told.
    let start = Instant::now();
    while observer.exists("/gone", false).0 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "session did not expire"
        );
        keeper.ping().expect("ping reply");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(2000),
        "expired too early: {:?}",
        start.elapsed()
    );
    observer.sync("/");
    assert_eq!(observer.take_events(), vec![(2, "/gone".to_string())]);
    assert_eq!(
        observer.exists("/kept", false).0,
        0,
        "a pinging session keeps its ephemeral"
    );
    // The expired session cannot be resumed: timeout 0, session 0.
    let (_, r) = connect_raw(addr, 4000, quiet.session, &quiet.passwd);
    let (to, sid, pw) = r.expect("an answer before close");
    assert_eq!((to, sid, pw), (0, 0, vec![0u8; 16]));
    // And its old connection has been closed by the server.
    assert!(quiet.ping().is_none());
}

#[test]
fn wrong_password_is_refused_and_close_session_deletes_ephemerals() {
    let j = Janus::start();
    let addr = j.zk_addr();
    let mut a = Raw::connect(addr, 10000);
    assert_eq!(a.create("/e1", b"", 1).0, 0);
    assert_eq!(a.create("/e2", b"", 3).0, 0);
    let (_, r) = connect_raw(addr, 10000, a.session, &[7; 16]);
    assert_eq!(r.expect("answer"), (0, 0, vec![0u8; 16]));
    let mut b = Raw::connect(addr, 10000);
    let r = a.call(op::CLOSE_SESSION, |_| {}).expect("close reply");
    assert_eq!(r.err, 0);
    assert_eq!(b.exists("/e1", false).0, -101);
    let (e, c, _) = b.children2("/", false);
    assert_eq!(e, 0);
    assert_eq!(c, vec!["zookeeper".to_string()]);
}

#[test]
fn timeouts_are_negotiated_between_min_and_max() {
    let j = Janus::start();
    assert_eq!(Raw::connect(j.zk_addr(), 1).timeout, 4000);
    assert_eq!(Raw::connect(j.zk_addr(), 10_000_000).timeout, 40000);
    assert_eq!(Raw::connect(j.zk_addr(), 12345).timeout, 12345);
}

#[test]
fn four_letter_words() {
    let j = Janus::start();
    let a = j.zk_addr();
    assert_eq!(four_letter(a, "ruok"), "imok");
    assert_eq!(four_letter(a, "isro"), "rw");
    let _held = Raw::connect(a, 10000);
    let srvr = four_letter(a, "srvr");
    assert!(srvr.starts_with("Zookeeper version: 3.8"), "{srvr}");
    assert!(
        srvr.contains("Mode: standalone") && srvr.contains("Node count: 5"),
        "{srvr}"
    );
    // Connections of earlier four-letter words close asynchronously: wait
    // until only the held session is counted.
    let mut mntr = four_letter(a, "mntr");
    for _ in 0..50 {
        if mntr.contains("zk_num_alive_connections\t1\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        mntr = four_letter(a, "mntr");
    }
    assert!(mntr.contains("zk_server_state\tstandalone"), "{mntr}");
    assert!(mntr.contains("zk_num_alive_connections\t1\n"), "{mntr}");
    for w in ["stat", "cons", "wchs", "envi", "conf", "dump"] {
        assert!(!four_letter(a, w).is_empty(), "{w} answered nothing");
    }
    assert!(four_letter(a, "conf").contains(&format!("clientPort={}", a.port())));
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let j = Janus::start();
    let addr = j.zk_addr();
    let mut good = Raw::connect(addr, 10000);
    assert_eq!(good.create("/x", b"1", 0).0, 0);

    // A frame over jute.maxbuffer (1 MiB) is refused by length alone.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(&(2u32 * 1024 * 1024).to_be_bytes())
        .expect("write");
    assert!(
        read_frame(&mut s).is_none(),
        "oversized frame must close the connection"
    );

    // Garbage in place of a ConnectRequest.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write_frame(&mut s, &[1, 2, 3]);
    assert!(read_frame(&mut s).is_none());

    // A request whose body lies about a string length, after a valid session.
    let mut bad = Raw::connect(addr, 10000);
    let mut w = Writer::new();
    w.int(1).int(op::GET_DATA).int(1_000_000);
    write_frame(&mut bad.s, &w.buf);
    assert!(read_frame(&mut bad.s).is_none());

    // An unknown opcode: an error reply, not a crash.
    let mut odd = Raw::connect(addr, 10000);
    assert_eq!(odd.call(4242, |_| {}).map(|r| r.err), Some(-6));

    // The good connection never noticed.
    let (e, d, _) = good.get_data("/x", false);
    assert_eq!((e, d), (0, b"1".to_vec()));
}

#[test]
fn pipelined_requests_are_answered_in_order_and_zxids_never_go_back() {
    let j = Janus::start();
    let mut c = Raw::connect(j.zk_addr(), 10000);
    let mut buf = Vec::new();
    for i in 0..200 {
        let mut w = Writer::new();
        w.int(i + 1);
        if i % 2 == 0 {
            w.int(op::CREATE)
                .ustring(&format!("/p{i}"))
                .buffer(b"")
                .acl_vec(&janus_core::znode::Acl::open())
                .int(0);
        } else {
            w.int(op::EXISTS)
                .ustring(&format!("/p{}", i - 1))
                .boolean(false);
        }
        buf.extend_from_slice(&(w.buf.len() as u32).to_be_bytes());
        buf.extend_from_slice(&w.buf);
    }
    c.s.write_all(&buf).expect("write batch");
    let mut last = 0;
    for i in 0..200 {
        let f = read_frame(&mut c.s).expect("reply");
        let xid = i32::from_be_bytes([f[0], f[1], f[2], f[3]]);
        let zxid = i64::from_be_bytes(f[4..12].try_into().expect("zxid"));
        let err = i32::from_be_bytes(f[12..16].try_into().expect("err"));
        assert_eq!(xid, i + 1, "replies out of order");
        assert_eq!(err, 0, "request {xid} failed");
        assert!(zxid >= last, "zxid went back: {last} -> {zxid}");
        last = zxid;
    }
}

/// D6: a client that reads after another client's write sees the watch
/// notification strictly before the reply that reflects the write.
#[test]
fn notification_precedes_the_reply_that_reflects_the_change() {
    let j = Janus::start();
    let mut a = Raw::connect(j.zk_addr(), 10000);
    let mut b = Raw::connect(j.zk_addr(), 10000);
    assert_eq!(a.create("/n", b"0", 0).0, 0);
    for i in 1..50 {
        let (e, _, _) = a.get_data("/n", true);
        assert_eq!(e, 0);
        let (e, st) = b.set_data("/n", format!("{i}").as_bytes(), -1);
        assert_eq!(e, 0);
        let mzxid = st.expect("stat").mzxid;
        // Read until a reply reflects the write; the event must already be there.
        loop {
            let (_, d, s) = a.get_data("/n", false);
            if s.expect("stat").mzxid >= mzxid {
                assert_eq!(d, format!("{i}").as_bytes());
                assert_eq!(a.take_events(), vec![(3, "/n".to_string())], "round {i}");
                break;
            }
        }
    }
}

#[test]
fn set_watches_on_reconnect_fires_what_changed_meanwhile() {
    let j = Janus::start();
    let addr = j.zk_addr();
    let mut a = Raw::connect(addr, 10000);
    let mut b = Raw::connect(addr, 10000);
    a.create("/sw", b"", 0);
    a.create("/sw/keep", b"", 0);
    let rel = a
        .get_data("/sw", false)
        .2
        .expect("stat")
        .mzxid
        .max(*a.zxids.last().expect("zxid"));
    b.set_data("/sw", b"changed", -1);
    b.create("/created", b"", 0);
    b.create("/sw/child", b"", 0);
    let (sid, pw) = (a.session, a.passwd.clone());
    drop(a);
    let mut a = Raw::resume(addr, sid, &pw, 10000).expect("resume");
    let r = a
        .call_xid(-8, op::SET_WATCHES2, |w| {
            w.long(rel)
                .string_vec(&["/sw", "/sw/keep"])
                .string_vec(&["/created", "/still-missing"])
                .string_vec(&["/sw"])
                .string_vec::<&str>(&[])
                .string_vec::<&str>(&[]);
        })
        .expect("setWatches reply");
    assert_eq!(r.err, 0);
    let mut ev = a.take_events();
    ev.sort();
    assert_eq!(
        ev,
        vec![(1, "/created".into()), (3, "/sw".into()), (4, "/sw".into())],
        "changes since relativeZxid fire at once"
    );
    // Unchanged ones were re-armed.
    b.set_data("/sw/keep", b"x", -1);
    b.create("/still-missing", b"", 0);
    a.sync("/");
    let mut ev = a.take_events();
    ev.sort();
    assert_eq!(
        ev,
        vec![(1, "/still-missing".into()), (3, "/sw/keep".into())]
    );
}

/// What one pipelined request must answer.
enum Want {
    /// Any reply with this error code.
    Err(i32),
    /// A successful write of `key`'s data (its zxid is remembered as that
    /// key's latest data write).
    Wrote(usize),
    /// A successful write that leaves the keys' data alone.
    WroteOther,
    /// getData of `key`: this data, this version, and mzxid = the zxid of
    /// the key's latest earlier write (the read sees exactly the writes
    /// sent before it, none of the later ones).
    Data(usize, Vec<u8>, i32),
    /// getChildren2 with this many children.
    Children(usize),
}

/// Hundreds of writes and reads sent back to back on one connection (more
/// than the per-connection in-flight bound, so the server must push back
/// and resume): replies come in xid order, zxids never decrease and
/// successful writes take increasing zxids, versioned writes succeed only
/// because the writes before them were applied first, and every read shows
/// the writes sent before it and none sent after it.
#[test]
fn pipelined_writes_and_reads_keep_session_order() {
    let j = Janus::start();
    let mut c = Raw::connect(j.zk_addr(), 10000);
    assert_eq!(c.create("/pp", b"", 0).0, 0);
    const KEYS: usize = 40;
    let path = |k: usize| format!("/pp/k{k}");
    let mut reqs: Vec<(i32, Writer, Want)> = Vec::new();
    let mut xid = 100;
    let mut push = |op: i32, body: &dyn Fn(&mut Writer), want: Want| {
        xid += 1;
        let mut w = Writer::new();
        w.int(xid).int(op);
        body(&mut w);
        reqs.push((xid, w, want));
    };
    let open = janus_core::znode::Acl::open();
    // Round-robin over the keys, so each step has KEYS writes in flight.
    for k in 0..KEYS {
        push(
            op::CREATE2,
            &|w| {
                w.ustring(&path(k)).buffer(b"c").acl_vec(&open).int(0);
            },
            Want::Wrote(k),
        );
    }
    for (v, data) in [(0, b"1"), (1, b"2")] {
        for k in 0..KEYS {
            push(
                op::SET_DATA,
                &|w| {
                    w.ustring(&path(k)).buffer(data).int(v);
                },
                Want::Wrote(k),
            );
        }
    }
    for k in 0..KEYS {
        push(
            op::GET_DATA,
            &|w| {
                w.ustring(&path(k)).boolean(false);
            },
            Want::Data(k, b"2".to_vec(), 2),
        );
        // A write right behind the read, which the read must not see.
        push(
            op::SET_DATA,
            &|w| {
                w.ustring(&path(k)).buffer(b"3").int(2);
            },
            Want::Wrote(k),
        );
        // A stale version fails (and takes no revision).
        push(
            op::SET_DATA,
            &|w| {
                w.ustring(&path(k)).buffer(b"x").int(2);
            },
            Want::Err(-103),
        );
    }
    for k in 0..KEYS {
        push(
            op::MULTI,
            &|w| {
                common::mh(w, op::CHECK).ustring(&path(k)).int(3);
                common::mh(w, op::SET_DATA)
                    .ustring(&path(k))
                    .buffer(b"4")
                    .int(3);
                w.int(-1).boolean(true).int(-1);
            },
            Want::Wrote(k),
        );
        push(
            op::CREATE,
            &|w| {
                w.ustring(&format!("{}/s-", path(k)))
                    .buffer(b"")
                    .acl_vec(&open)
                    .int(2);
            },
            Want::WroteOther,
        );
    }
    push(
        op::SYNC,
        &|w| {
            w.ustring("/pp");
        },
        Want::Err(0),
    );
    for k in 0..KEYS {
        push(
            op::GET_DATA,
            &|w| {
                w.ustring(&path(k)).boolean(false);
            },
            // The multi's setData is the key's latest data write.
            Want::Data(k, b"4".to_vec(), 4),
        );
        push(
            op::GET_CHILDREN2,
            &|w| {
                w.ustring(&path(k)).boolean(false);
            },
            Want::Children(1),
        );
        push(
            op::DELETE,
            &|w| {
                w.ustring(&path(k)).int(-1);
            },
            Want::Err(-111),
        );
    }
    // A long run of versioned writes to one node: each succeeds only if
    // every earlier one was applied before it.
    push(
        op::CREATE,
        &|w| {
            w.ustring("/pp/hot").buffer(b"").acl_vec(&open).int(0);
        },
        Want::WroteOther,
    );
    for v in 0..2500 {
        push(
            op::SET_DATA,
            &|w| {
                w.ustring("/pp/hot").buffer(b"h").int(v);
            },
            Want::Wrote(KEYS),
        );
    }
    push(
        op::GET_DATA,
        &|w| {
            w.ustring("/pp/hot").boolean(false);
        },
        Want::Data(KEYS, b"h".to_vec(), 2500),
    );

    // Send everything from another thread while this one reads replies.
    let mut buf = Vec::new();
    for (_, w, _) in &reqs {
        buf.extend_from_slice(&(w.buf.len() as u32).to_be_bytes());
        buf.extend_from_slice(&w.buf);
    }
    let mut out = c.s.try_clone().expect("clone socket");
    let sender = std::thread::spawn(move || out.write_all(&buf).expect("write batch"));

    let mut last_write: Vec<i64> = vec![0; KEYS + 1];
    let mut last_zxid = 0;
    let mut last_write_zxid = 0;
    for (i, (sent_xid, _, want)) in reqs.iter().enumerate() {
        let f = read_frame(&mut c.s).expect("reply");
        let (b, xid) = janus_zk::proto::jute::int(&f).expect("xid");
        let (b, zxid) = janus_zk::proto::jute::long(b).expect("zxid");
        let (body, err) = janus_zk::proto::jute::int(b).expect("err");
        assert_ne!(xid, -1, "no watch was set");
        assert_eq!(xid, *sent_xid, "reply {i} out of order");
        assert!(
            zxid >= last_zxid,
            "zxid went back at {i}: {last_zxid} -> {zxid}"
        );
        last_zxid = zxid;
        match want {
            Want::Err(code) => assert_eq!(err, *code, "request {i} (xid {xid})"),
            Want::Wrote(_) | Want::WroteOther => {
                assert_eq!(err, 0, "write {i} (xid {xid}) failed");
                assert!(zxid > last_write_zxid, "write {i} took no new zxid");
                last_write_zxid = zxid;
                if let Want::Wrote(k) = want {
                    last_write[*k] = zxid;
                }
            }
            Want::Data(k, data, version) => {
                assert_eq!(err, 0, "read {i} (xid {xid}) failed");
                let (b, d) = janus_zk::proto::jute::buffer(body).expect("data");
                let (_, st) = janus_zk::proto::jute::stat(b).expect("stat");
                assert_eq!(&d, data, "read {i} of key {k}");
                assert_eq!(st.version, *version, "read {i} of key {k}");
                assert_eq!(st.mzxid, last_write[*k], "read {i} of key {k}: mzxid");
            }
            Want::Children(n) => {
                assert_eq!(err, 0, "getChildren {i} failed");
                let (_, ch) = janus_zk::proto::jute::string_vec(body).expect("children");
                assert_eq!(ch.len(), *n, "children of read {i}");
            }
        }
    }
    sender.join().expect("sender");
    // The connection is still usable and in step.
    let (e, d, st) = c.get_data("/pp/k0", false);
    assert_eq!((e, d), (0, b"4".to_vec()));
    assert_eq!(st.expect("stat").version, 4);
}

/// Waits until the server closes `c`'s socket; how long that took.
fn time_to_close(c: &mut Raw, limit: Duration) -> Duration {
    let start = Instant::now();
    c.s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match std::io::Read::read(&mut c.s, &mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return start.elapsed(),
        }
        assert!(
            start.elapsed() < limit,
            "connection still open after {limit:?}"
        );
    }
}

/// A session ended from elsewhere (an etcd lease revoke of the session id,
/// D4) closes its ZooKeeper connection at once, as ZooKeeper closes an
/// expired or closed session's connection; the reconnect learns the
/// session expired (ConnectResponse with session 0).
#[test]
fn session_revoked_elsewhere_closes_its_connection_at_once() {
    let j = Janus::start();
    let addr = j.zk_addr();
    // A long timeout: noticing on the next ping or check would take seconds.
    let mut c = Raw::connect(addr, 30000);
    assert_eq!(c.create("/eph", b"", 1).0, 0);
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &j.etcd_endpoint(), "lease", "revoke"])
        .arg(format!("{:x}", c.session))
        .output()
        .expect("run etcdctl (apt-get install -y etcd-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = time_to_close(&mut c, Duration::from_secs(10));
    assert!(took < Duration::from_millis(1000), "closed after {took:?}");
    assert!(
        Raw::resume(addr, c.session, &c.passwd, 30000).is_none(),
        "the session is expired"
    );
}
