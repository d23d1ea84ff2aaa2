//! Operating janus: bounded history (auto-compaction, D13) and the db size
//! it reports. One real janus binary, written to through ZooKeeper only
//! (whose clients never compact), inspected through etcd.

use std::time::Duration;

use etcd_client as etcd;
use janus_conformance::harness::Janus;
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

async fn etcd_client(j: &Janus) -> etcd::Client {
    etcd::Client::connect([j.etcd_endpoint()], None)
        .await
        .expect("etcd connect")
}

async fn zk_client(j: &Janus) -> zk::Client {
    zk::Client::connector()
        .session_timeout(Duration::from_secs(10))
        .connect(&j.zk_addr().to_string())
        .await
        .expect("zk connect")
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
