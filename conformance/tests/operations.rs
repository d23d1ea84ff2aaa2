//! Operating janus: bounded history (auto-compaction, D13) and the db size
//! it reports. One real janus binary, written to through ZooKeeper only
//! (whose clients never compact), inspected through etcd.

use std::time::Duration;

use etcd_client as etcd;
use janus_conformance::harness::{etcdctl, Janus};
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

async fn etcd_client(j: &Janus) -> etcd::Client {
    j.etcd_client().await
}

async fn zk_client(j: &Janus) -> zk::Client {
    j.zk_client().await
}

/// `writers` clients each rewrite their own znode `rounds` times.
async fn zk_write_loop(j: &Janus, writers: usize, rounds: usize, value: &[u8]) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let z = zk_client(j).await;
        let value = value.to_vec();
        let path = format!("/loop{w}");
        let _ = z
            .create(
                &path,
                b"",
                &CreateMode::Persistent.with_acls(Acls::anyone_all()),
            )
            .await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                z.set_data(&path, &value, None).await.expect("setData");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

async fn db_size(c: &mut etcd::Client) -> i64 {
    c.status().await.expect("status").db_size()
}

/// Polls until the compaction point passes `rev` (the compactor runs every
/// second in this test).
async fn wait_compacted_past(c: &mut etcd::Client, rev: i64) -> i64 {
    for _ in 0..100 {
        let r = c
            .get("x", Some(etcd::GetOptions::new().with_revision(rev)))
            .await;
        if let Err(etcd::Error::GRpcStatus(s)) = &r {
            if s.message() == "etcdserver: mvcc: required revision has been compacted" {
                return c.hash_kv(0).await.expect("hashkv").compact_version();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("revision {rev} never compacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_only_writes_keep_bounded_history_and_size() {
    const KEEP: i64 = 1000;
    let keep = KEEP.to_string();
    let j = Janus::start_with(&[
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        &keep,
        "--auto-compaction-interval",
        "1s",
        "--experimental-snapshot-catchup-entries",
        &keep,
    ]);
    let mut c = etcd_client(&j).await;
    let empty = db_size(&mut c).await;
    // A fresh store occupies what fjall wrote, not its preallocated journal.
    assert!(empty < 8 << 20, "empty store reports {empty} bytes");

    // Enough bytes to pass fjall's journal rotation (64 MB: until then
    // the store's journal keeps every write, compacted or not).
    let value = vec![b'v'; 4096];
    let rounds = [10_000usize, 10_000, 10_000];
    let mut sizes = Vec::new();
    let mut written = 0usize;
    for n in rounds {
        zk_write_loop(&j, 8, n / 8, &value).await;
        written += n * value.len();
        let rev = c
            .get("x", None)
            .await
            .expect("get")
            .header()
            .expect("h")
            .revision();
        let compacted = wait_compacted_past(&mut c, rev - KEEP - 1).await;
        assert!(
            compacted >= rev - KEEP - 1 && compacted <= rev,
            "compacted at {compacted}, revision {rev}"
        );
        // History inside the retention is still there.
        c.get(
            "x",
            Some(etcd::GetOptions::new().with_revision(rev - KEEP / 2)),
        )
        .await
        .expect("read inside the retention");
        c.defragment().await.expect("defragment");
        let size = db_size(&mut c).await;
        eprintln!(
            "after {written} bytes written: db size {size}, revision {rev}, compacted {compacted}"
        );
        sizes.push(size);
    }
    // Without compaction the store would hold every byte written; with
    // it, what is kept is about KEEP revisions plus at most one journal
    // of fjall's (it rotates at 64 MB and drops a sealed journal once
    // every keyspace has flushed past it), whatever was written before.
    // (The raft log is in the WAL, which the db size leaves out.)
    let kept = 2 * KEEP as usize * value.len();
    let last = *sizes.last().unwrap_or(&0) as usize;
    assert!(
        last < written * 3 / 4 && last < kept + (64 << 20) + (16 << 20),
        "db size {sizes:?} after {written} bytes written"
    );
}

/// Runs the janus binary without RUST_LOG for `run` (the etcd endpoint is
/// handed to it), then stops it and returns what it logged.
fn log_of_a_default_start(extra: &[&str], run: impl FnOnce(&str)) -> String {
    use janus_conformance::harness::{free_port, janus_binary};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = format!("127.0.0.1:{}", free_port());
    let zk = format!("127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(janus_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &format!("http://{etcd}")])
        .args(["--advertise-client-urls", &format!("http://{etcd}")])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--listen-zk-addr", &zk])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn janus");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&etcd).is_err() {
        assert!(std::time::Instant::now() < deadline, "janus did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(&format!("http://{etcd}"));
    // SIGTERM: a clean shutdown logs its lifecycle lines too.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    std::fs::read_to_string(&log_path).unwrap_or_default()
}

fn put_some(ep: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = etcd::Client::connect([ep], None).await.expect("connect");
        for i in 0..20 {
            c.put(format!("k{i}"), "v", None).await.expect("put");
        }
    });
}

#[test]
fn default_log_is_quiet_and_json_is_one_object_per_line() {
    let text = log_of_a_default_start(&[], put_some);
    assert!(text.contains("starting janus"), "{text}");
    assert!(text.contains("stopped"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text}"
    );
    for line in text.lines() {
        // `<time> <LEVEL> <target>: <message>`; dependencies (fjall,
        // lsm-tree, raft, h2, tonic) only at WARN and above.
        let mut words = line.split_whitespace();
        let (level, target) = (words.nth(1), words.next());
        if matches!(level, Some("INFO" | "DEBUG" | "TRACE")) {
            assert!(
                target.is_some_and(|t| t.starts_with("janus")),
                "dependency line below WARN: {line}"
            );
        }
    }

    let json = log_of_a_default_start(&["--log-format", "json", "--log-level", "warn"], put_some);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        assert!(v["level"] == "WARN" || v["level"] == "ERROR", "{line}");
    }
    let debug = log_of_a_default_start(&["--log-format", "json", "--log-level", "debug"], put_some);
    let lines: Vec<serde_json::Value> = debug
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "starting janus" && v["level"] == "INFO"),
        "{debug}"
    );
    assert!(
        lines.iter().all(|v| v["level"] != "DEBUG"
            || v["target"].as_str().is_some_and(|t| t.starts_with("janus"))),
        "{debug}"
    );
}

/// A plain HTTP/1.1 GET: (status code, body).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

/// A ZooKeeper four-letter word's answer.
fn four_letter(addr: std::net::SocketAddr, word: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(word.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn livez_and_readyz_follow_etcd_35_and_zookeeper_agrees() {
    let j = Janus::start();
    let a = j.etcd_addr();
    assert_eq!(http_get(a, "/livez"), (200, "ok\n".into()));
    assert_eq!(http_get(a, "/readyz"), (200, "ok\n".into()));
    assert_eq!(
        http_get(a, "/readyz?verbose"),
        (
            200,
            "[+]data_corruption ok\n[+]linearizable_read ok\n[+]serializable_read ok\nok\n".into()
        )
    );
    assert_eq!(
        http_get(a, "/readyz?verbose&exclude=linearizable_read"),
        (
            200,
            "[+]data_corruption ok\n[+]serializable_read ok\nok\n".into()
        )
    );
    assert_eq!(
        http_get(a, "/livez/serializable_read?verbose"),
        (200, "[+]serializable_read ok\nok\n".into())
    );
    assert_eq!(http_get(a, "/readyz/nosuch").0, 404);
    assert_eq!(four_letter(j.zk_addr(), "ruok"), "imok");
    assert_eq!(four_letter(j.zk_addr(), "isro"), "rw");
}

#[test]
fn a_member_without_quorum_is_alive_but_not_ready() {
    let mut c = janus_conformance::cluster::Cluster::start(3);
    c.kill(1);
    c.kill(2);
    let m = &c.members[0];
    // check_quorum: the survivor gives up leadership within an election
    // timeout or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, body) = http_get(m.etcd, "/readyz");
        if code == 503 {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "still ready: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        body.contains("[-]linearizable_read failed: etcdserver: no leader\n"),
        "{body}"
    );
    assert!(body.contains("[+]serializable_read ok\n"), "{body}");
    assert_eq!(http_get(m.etcd, "/livez"), (200, "ok\n".into()));
    assert_eq!(http_get(m.etcd, "/readyz?exclude=linearizable_read").0, 200);
    assert_eq!(four_letter(m.zk, "ruok"), "imok");
    assert_eq!(four_letter(m.zk, "isro"), "null");
}

/// A scrape of `/metrics`, parsed with a Prometheus text parser.
fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

/// The value of `metric` whose labels include `labels` (0 if absent).
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_load_on_both_protocols() {
    use janus_conformance::harness::free_port;
    let metrics_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let url = format!("http://{metrics_addr}");
    let j = Janus::start_with(&["--listen-metrics-urls", &url]);
    let a = j.etcd_addr();
    let before = tokio::task::spawn_blocking(move || scrape(a))
        .await
        .expect("scrape");
    assert_eq!(value(&before, "etcd_server_has_leader", &[]), 1.0);
    assert_eq!(value(&before, "etcd_server_is_leader", &[]), 1.0);

    let mut c = etcd_client(&j).await;
    for i in 0..50 {
        c.put(format!("m/{i}"), "v", None).await.expect("put");
    }
    let future = c
        .get(
            "m/0",
            Some(etcd::GetOptions::new().with_revision(1_000_000)),
        )
        .await;
    assert!(future.is_err());
    let z = zk_client(&j).await;
    for i in 0..20 {
        z.create(
            &format!("/z{i}"),
            b"x",
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("create");
    }
    let (_, _, _watch) = z.get_and_watch_data("/z0").await.expect("watch");

    let after = tokio::task::spawn_blocking(move || scrape(a))
        .await
        .expect("scrape");
    let put = [("grpc_service", "etcdserverpb.KV"), ("grpc_method", "Put")];
    let delta = |m: &str, l: &[(&str, &str)]| value(&after, m, l) - value(&before, m, l);
    assert_eq!(delta("grpc_server_started_total", &put), 50.0);
    assert_eq!(
        delta(
            "grpc_server_handled_total",
            &[put[0], put[1], ("grpc_code", "OK"), ("grpc_type", "unary")]
        ),
        50.0
    );
    assert_eq!(
        delta(
            "grpc_server_handled_total",
            &[("grpc_method", "Range"), ("grpc_code", "OutOfRange")]
        ),
        1.0
    );
    assert_eq!(delta("etcd_debugging_mvcc_keys_total", &[]), 70.0);
    assert_eq!(delta("etcd_debugging_mvcc_current_revision", &[]), 70.0);
    assert!(delta("etcd_server_proposals_applied_total", &[]) >= 70.0);
    assert!(delta("etcd_server_proposals_committed_total", &[]) >= 70.0);
    assert!(
        value(&after, "etcd_server_proposals_committed_total", &[])
            >= value(&after, "etcd_server_proposals_applied_total", &[])
    );
    assert_eq!(value(&after, "etcd_server_proposals_pending", &[]), 0.0);
    assert_eq!(delta("etcd_server_proposals_failed_total", &[]), 0.0);
    assert!(value(&after, "etcd_mvcc_db_total_size_in_bytes", &[]) > 0.0);
    assert_eq!(
        value(&after, "etcd_server_leader_changes_seen_total", &[]),
        1.0
    );
    // Histograms: every write was fsynced by the WAL and committed to the
    // store, so both counts moved at least once per batch.
    let (_, text) = tokio::task::spawn_blocking(move || http_get(a, "/metrics"))
        .await
        .expect("scrape");
    let count = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("etcd_disk_wal_fsync_duration_seconds") >= 1.0,
        "{text}"
    );
    assert!(
        count("etcd_disk_backend_commit_duration_seconds") >= 1.0,
        "{text}"
    );
    assert_eq!(delta("janus_zk_znode_count", &[]), 20.0);
    assert_eq!(value(&after, "janus_zk_ephemerals_count", &[]), 20.0);
    assert_eq!(value(&after, "janus_zk_num_alive_connections", &[]), 1.0);
    assert_eq!(value(&after, "janus_zk_watch_count", &[]), 1.0);
    assert!(delta("janus_zk_packets_received_total", &[]) >= 21.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&after, "process_open_fds", &[]) > 0.0);
    assert!(value(&after, "process_cpu_seconds_total", &[]) > 0.0);

    // mntr reports the same numbers.
    let zk = j.zk_addr();
    let mntr = tokio::task::spawn_blocking(move || four_letter(zk, "mntr"))
        .await
        .expect("mntr");
    let row = |k: &str| {
        mntr.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}\t")))
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        row("zk_znode_count"),
        Some(value(&after, "janus_zk_znode_count", &[]))
    );
    assert_eq!(row("zk_ephemerals_count"), Some(20.0));
    assert_eq!(row("zk_watch_count"), Some(1.0));
    // Latency moved: 21 requests answered, each taking some time.
    assert!(value(&after, "janus_zk_requests_total", &[]) >= 21.0);
    let avg = row("zk_avg_latency").expect("avg latency");
    assert!(avg > 0.0, "{mntr}");
    assert!(row("zk_max_latency") >= row("zk_min_latency"), "{mntr}");
    assert_eq!(
        row("zk_max_latency"),
        Some(value(&after, "janus_zk_max_latency", &[]))
    );
    assert!((value(&after, "janus_zk_avg_latency", &[]) - avg).abs() < 1e-3);
    let srvr = tokio::task::spawn_blocking(move || four_letter(zk, "srvr"))
        .await
        .expect("srvr");
    assert!(
        srvr.contains(&format!(
            "Latency min/avg/max: {}/{avg:.4}/",
            row("zk_min_latency").unwrap_or(-1.0)
        )),
        "{srvr}"
    );

    // The separate metrics listener serves the same registry.
    let m = tokio::task::spawn_blocking(move || scrape(metrics_addr))
        .await
        .expect("scrape");
    assert_eq!(
        value(&m, "etcd_debugging_mvcc_keys_total", &[]),
        value(&after, "etcd_debugging_mvcc_keys_total", &[])
    );
    let ready = tokio::task::spawn_blocking(move || http_get(metrics_addr, "/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready, (200, "ok\n".into()));
}

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

fn is_nospace(r: &Result<etcd::PutResponse, etcd::Error>) -> bool {
    matches!(r, Err(etcd::Error::GRpcStatus(s)) if s.message() == NOSPACE)
}

/// A small quota filled through both protocols: NOSPACE (raised through
/// the log) refuses etcd puts and ZooKeeper creates and setData
/// (QuotaExceeded), reads and deletes go on, nothing acknowledged is lost,
/// and writes come back after deletes, a compaction, a defragment and
/// `etcdctl alarm disarm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_fills_nospace_on_both_protocols_then_disarm() {
    // Above fjall's 64 MB journal, which a defragment cannot give back
    // (it rotates only when full), so deleting frees enough to go on.
    const QUOTA: i64 = 72 << 20;
    let quota = QUOTA.to_string();
    let j = Janus::start_with(&["--quota-backend-bytes", &quota]);
    let ep = j.etcd_endpoint();
    let mut c = etcd_client(&j).await;
    let z = zk_client(&j).await;
    let big = |i: usize, n: usize| -> Vec<u8> { (0..n).map(|b| (b * 31 + i) as u8).collect() };
    let mut etcd_acked = Vec::new();
    let mut zk_acked = Vec::new();
    let mode = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let mut refused = false;
    for i in 0..400 {
        let r = c.put(format!("e/{i}"), big(i, 1 << 20), None).await;
        if is_nospace(&r) {
            refused = true;
            break;
        }
        r.expect("put below the quota");
        etcd_acked.push(i);
        match z.create(&format!("/z{i}"), &big(i, 512 << 10), &mode).await {
            Ok(_) => zk_acked.push(i),
            Err(zk::Error::QuotaExceeded) => {
                refused = true;
                break;
            }
            Err(e) => panic!("create /z{i}: {e}"),
        }
    }
    assert!(refused, "the quota was never reached");
    assert!(etcd_acked.len() > 5 && zk_acked.len() > 5);

    // Raised once, through the log, for both protocols.
    let alarms = etcdctl(&ep, &["alarm", "list"]);
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    let st = c.status().await.expect("status");
    assert!(
        st.errors().iter().any(|e| e.contains("NOSPACE")),
        "{:?}",
        st.errors()
    );
    assert!(is_nospace(&c.put("one-more", "v", None).await));
    let e = z.create("/one-more", b"v", &mode).await;
    assert!(matches!(e, Err(zk::Error::QuotaExceeded)), "{e:?}");
    let e = z.set_data("/z0", b"v", None).await;
    assert!(matches!(e, Err(zk::Error::QuotaExceeded)), "{e:?}");
    // A txn that only reads still runs; one that puts does not.
    let read_txn = etcd::Txn::new().and_then([etcd::TxnOp::get("e/0", None)]);
    c.txn(read_txn).await.expect("read-only txn under NOSPACE");
    let put_txn = etcd::Txn::new().and_then([etcd::TxnOp::put("t", "v", None)]);
    let e = c.txn(put_txn).await;
    assert!(
        matches!(&e, Err(etcd::Error::GRpcStatus(s)) if s.message() == NOSPACE),
        "{e:?}"
    );

    // Nothing acknowledged is lost; reads work on both protocols.
    for &i in &etcd_acked {
        let r = c.get(format!("e/{i}"), None).await.expect("get");
        assert_eq!(r.kvs()[0].value(), big(i, 1 << 20).as_slice(), "e/{i}");
    }
    for &i in &zk_acked {
        let (data, _) = z.get_data(&format!("/z{i}")).await.expect("getData");
        assert_eq!(data, big(i, 512 << 10), "/z{i}");
    }

    // Deletes go on: make room, compact, defragment, disarm.
    for &i in &zk_acked {
        z.delete(&format!("/z{i}"), None).await.expect("zk delete");
    }
    // Deleting ~70 MiB of values is one big apply; on a loaded machine it
    // can outlast the 7 s request timeout (the delete still applies), so a
    // timed-out attempt is retried: a prefix delete is idempotent.
    let mut attempts = 0;
    loop {
        match c
            .delete("e/", Some(etcd::DeleteOptions::new().with_prefix()))
            .await
        {
            Ok(_) => break,
            Err(etcd::Error::GRpcStatus(s))
                if s.message() == "etcdserver: request timed out" && attempts < 5 =>
            {
                attempts += 1;
            }
            Err(e) => panic!("etcd delete: {e:?}"),
        }
    }
    let rev = c
        .get("x", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    c.compact(rev, None).await.expect("compact under NOSPACE");
    c.defragment().await.expect("defragment");
    let size = db_size(&mut c).await;
    assert!(size < QUOTA, "db size {size} after making room");
    etcdctl(&ep, &["alarm", "disarm"]);
    assert_eq!(etcdctl(&ep, &["alarm", "list"]), "");
    c.put("after", "v", None).await.expect("put after disarm");
    // A new session: opening one is a lease grant, allowed again too.
    let z = zk_client(&j).await;
    z.create("/after", b"v", &mode)
        .await
        .expect("create after disarm");
    z.set_data("/after", b"w", None)
        .await
        .expect("setData after disarm");
}

/// The count of histogram `metric` whose labels include `labels`.
fn histogram_count(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
            _ => 0.0,
        })
        .sum()
}

/// Peer and proposal metrics on a real 3-member cluster: commits counted
/// on every member, bytes to and from each peer, round-trip times from
/// the peer prober (first recorded 5 s in, as etcd's), and a proposal
/// that fails once the member has lost its quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_metrics_count_commits_peer_traffic_rtt_and_failed_proposals() {
    let mut c = janus_conformance::cluster::Cluster::start(3);
    let mut ids = Vec::new();
    let mut leader = 0;
    let mut leader_known = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !leader_known {
        ids.clear();
        leader_known = true;
        for m in &c.members {
            let mut cl = etcd::Client::connect([m.etcd_endpoint()], None)
                .await
                .expect("connect");
            let st = cl.status().await.expect("status");
            ids.push(st.header().expect("header").member_id());
            leader_known &= st.leader() != 0 && (leader == 0 || leader == st.leader());
            leader = st.leader();
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addrs: Vec<std::net::SocketAddr> = c.members.iter().map(|m| m.etcd).collect();
    let scrape_all = |addrs: Vec<std::net::SocketAddr>| async move {
        tokio::task::spawn_blocking(move || addrs.iter().map(|a| scrape(*a)).collect::<Vec<_>>())
            .await
            .expect("scrape")
    };
    let before = scrape_all(addrs.clone()).await;
    let mut cl = etcd::Client::connect([c.members[0].etcd_endpoint()], None)
        .await
        .expect("connect");
    const N: usize = 30;
    for i in 0..N {
        cl.put(format!("p/{i}"), "v", None).await.expect("put");
    }
    // The prober's first record comes 5 s after a member links its peers.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = scrape_all(addrs.clone()).await;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let committed = value(a, "etcd_server_proposals_committed_total", &[])
            - value(b, "etcd_server_proposals_committed_total", &[]);
        assert!(committed >= N as f64, "member {i}: committed +{committed}");
        assert_eq!(value(a, "etcd_server_proposals_pending", &[]), 0.0);
        for (j, id) in ids.iter().enumerate() {
            let hex = format!("{id:x}");
            if j == i {
                assert_eq!(
                    histogram_count(
                        a,
                        "etcd_network_peer_round_trip_time_seconds",
                        &[("To", &hex)]
                    ),
                    0.0
                );
                continue;
            }
            let rtt = histogram_count(
                a,
                "etcd_network_peer_round_trip_time_seconds",
                &[("To", &hex)],
            );
            assert!(rtt >= 1.0, "member {i}: no round trip to {hex} recorded");
            // Raft traffic flows between the leader and each follower.
            if ids[i] != leader && *id != leader {
                continue;
            }
            let sent = value(a, "etcd_network_peer_sent_bytes_total", &[("To", &hex)]);
            assert!(sent > 0.0, "member {i} sent nothing to {hex}");
            let received = value(
                a,
                "etcd_network_peer_received_bytes_total",
                &[("From", &hex)],
            );
            assert!(received > 0.0, "member {i} received nothing from {hex}");
        }
    }

    // Without its quorum a member refuses proposals: each one fails.
    c.kill(1);
    c.kill(2);
    let m0 = c.members[0].etcd;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::task::spawn_blocking(move || http_get(m0, "/readyz").0)
        .await
        .expect("readyz")
        != 503
    {
        assert!(std::time::Instant::now() < deadline, "still ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed_before = value(
        &scrape_all(vec![m0]).await[0],
        "etcd_server_proposals_failed_total",
        &[],
    );
    let put = cl.put("p/lost", "v", None).await;
    assert!(put.is_err(), "{put:?}");
    let last = &scrape_all(vec![m0]).await[0];
    assert!(
        value(last, "etcd_server_proposals_failed_total", &[]) >= failed_before + 1.0,
        "{put:?}"
    );
    assert_eq!(value(last, "etcd_server_proposals_pending", &[]), 0.0);
}
