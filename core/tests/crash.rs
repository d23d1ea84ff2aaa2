//! Crash test: a child process (this test binary re-executed with
//! `JANUS_CRASH_CHILD`) writes through the core API as fast as it can and
//! prints every acknowledged write; the parent SIGKILLs it mid-stream,
//! restarts a node on the same data dir and checks that every acknowledged
//! write is there, that nothing is half-applied (a txn writes two keys, all
//! or nothing), that ZooKeeper sequential creates were applied once each
//! (dense names) and that the revision continues. Several rounds on one
//! dir; one round runs with tiny WAL segments and a short log, so the kill
//! lands amid segment rolls and WAL truncations as well as appends and
//! apply batches.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Proc, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus_core::kv::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use janus_core::wal::{OsFs, WalOptions};
use janus_core::znode::{CreateMode, ZkOpResult, ZkWriteResult};
use janus_core::{Command, CommandResult, Node, NodeConfig};

const CHILD_ENV: &str = "JANUS_CRASH_CHILD";
const ROUND_ENV: &str = "JANUS_CRASH_ROUND";
/// The round that truncates its WAL all the time.
const TRUNCATING_ROUND: u64 = 1;

/// The node of a round (the same for the child and the restart).
fn start_node(dir: &std::path::Path, round: u64) -> Node {
    let mut cfg = NodeConfig::single(dir);
    let mut opts = WalOptions {
        // One round syncs on the log writer thread.
        writer_thread: round == 2,
        ..WalOptions::default()
    };
    if round == TRUNCATING_ROUND {
        cfg.log_keep = 50;
        opts.segment_bytes = 64 * 1024;
    }
    Node::start_on(cfg, Arc::new(OsFs), opts).expect("node starts")
}

fn seq_create() -> Command {
    Command::Zk {
        session: 0,
        auth: vec![],
        ops: vec![janus_core::znode::ZkOp::Create {
            path: "/seq/n-".into(),
            data: Some(vec![]),
            acl: janus_core::znode::Acl::open(),
            mode: CreateMode::PersistentSequential,
            ttl_ms: 0,
        }],
        multi: false,
        conn: 0,
        seq: 0,
    }
}

fn put_req(key: String, value: String) -> PutRequest {
    PutRequest {
        key: key.into_bytes(),
        value: value.into_bytes(),
        ..Default::default()
    }
}

/// The writer. Only does something when started by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let node = start_node(std::path::Path::new(&dir), round);
        // The parent of the sequential nodes (exists after the first round).
        let _ = node
            .propose(Command::Zk {
                session: 0,
                auth: vec![],
                ops: vec![janus_core::znode::ZkOp::Create {
                    path: "/seq".into(),
                    data: Some(vec![]),
                    acl: janus_core::znode::Acl::open(),
                    mode: CreateMode::Persistent,
                    ttl_ms: 0,
                }],
                multi: false,
                conn: 0,
                seq: 0,
            })
            .await
            .expect("create /seq");
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let node = node.clone();
            let next = Arc::clone(&next);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let line = if i % 5 == 4 {
                        let a = node.propose(seq_create()).await.expect("create");
                        let CommandResult::Zk(ZkWriteResult::Applied(mut v)) = a.result else {
                            panic!("create: {:?}", a.result);
                        };
                        let ZkOpResult::Create { path, .. } = v.remove(0) else {
                            panic!("create result");
                        };
                        format!("ACK seq {path} {}\n", a.revision)
                    } else if i % 3 == 2 {
                        let v = format!("txn-{round}-{i}");
                        let t = TxnRequest {
                            compare: vec![],
                            success: vec![
                                RequestOp::Put(put_req(format!("t/{round}/{i}/a"), v.clone())),
                                RequestOp::Put(put_req(format!("t/{round}/{i}/b"), v)),
                            ],
                            failure: vec![],
                        };
                        let a = node.propose(Command::Txn(t)).await.expect("txn");
                        assert!(matches!(a.result, CommandResult::Txn(Ok(_))));
                        format!("ACK txn t/{round}/{i} {}\n", a.revision)
                    } else {
                        let a = node
                            .propose(Command::Put(put_req(
                                format!("k/{round}/{i}"),
                                format!("v-{round}-{i}"),
                            )))
                            .await
                            .expect("put");
                        assert!(matches!(a.result, CommandResult::Put(Ok(_))));
                        format!("ACK put k/{round}/{i} {}\n", a.revision)
                    };
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[derive(Debug)]
enum Ack {
    Put { key: String, rev: i64 },
    Txn { prefix: String, rev: i64 },
    Seq { path: String, rev: i64 },
}

/// Runs one child until it has acknowledged `kill_after` writes, then
/// SIGKILLs it. Returns every acknowledgement it printed.
fn run_child(dir: &std::path::Path, round: u64, kill_after: usize) -> Vec<Ack> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Proc::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let parse = |l: &str| -> Option<Ack> {
        let mut it = l.split_whitespace();
        if it.next()? != "ACK" {
            return None;
        }
        let kind = it.next()?;
        let key = it.next()?.to_string();
        let rev = it.next()?.parse().ok()?;
        Some(match kind {
            "put" => Ack::Put { key, rev },
            "seq" => Ack::Seq { path: key, rev },
            _ => Ack::Txn { prefix: key, rev },
        })
    };
    while acks.len() < kill_after {
        assert!(Instant::now() < deadline, "child too slow");
        match lines.next() {
            Some(Ok(l)) => acks.extend(parse(&l)),
            _ => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("child ended early after {} acks: {err}", acks.len());
            }
        }
    }
    // SIGKILL, mid-stream: more writes are in flight.
    child.kill().expect("SIGKILL");
    // Whatever it printed before dying was acknowledged too.
    for l in lines.map_while(Result::ok) {
        acks.extend(parse(&l));
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was killed");
    acks
}

async fn check_after_crash(
    dir: &std::path::Path,
    round: u64,
    acks: &[Ack],
    max_ack_before: i64,
) -> i64 {
    let node = start_node(dir, round);
    let rev_at_start = node.revision();
    // Entries committed in the log but not yet applied are replayed by the
    // raft loop after start; a linearizable read waits for them.
    node.read_barrier().await.expect("read barrier");
    let rev = node.revision();
    let max_ack = acks
        .iter()
        .map(|a| match a {
            Ack::Put { rev, .. } | Ack::Txn { rev, .. } | Ack::Seq { rev, .. } => *rev,
        })
        .max()
        .unwrap_or(0)
        .max(max_ack_before);
    eprintln!("CRASHCHECK start={rev_at_start} after_barrier={rev} max_ack={max_ack}");
    assert!(
        rev >= max_ack,
        "revision {rev} went back below acked {max_ack}"
    );
    let all = node
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    let kvs: BTreeMap<Vec<u8>, _> = all.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    // Every acknowledged write is present, at the revision it was acked with.
    for a in acks {
        match a {
            Ack::Put { key, rev } => {
                let kv = kvs
                    .get(key.as_bytes())
                    .unwrap_or_else(|| panic!("acknowledged {key} at {rev} lost"));
                assert_eq!(kv.mod_revision, *rev, "{key}");
                let want = key.replacen("k/", "v-", 1).replace('/', "-");
                assert_eq!(kv.value, want.as_bytes());
            }
            Ack::Txn { prefix, rev } => {
                for side in ["a", "b"] {
                    let k = format!("{prefix}/{side}");
                    let kv = kvs
                        .get(k.as_bytes())
                        .unwrap_or_else(|| panic!("acknowledged txn {k} at {rev} lost"));
                    assert_eq!(kv.mod_revision, *rev);
                }
            }
            Ack::Seq { path, rev } => {
                let kv = kvs
                    .get(path.as_bytes())
                    .unwrap_or_else(|| panic!("acknowledged {path} at {rev} lost"));
                assert_eq!(kv.create_revision, *rev, "{path}");
            }
        }
    }
    // Sequential creates: every acknowledged one is there, and the names
    // are dense (a create applied twice on replay would add a node).
    let (children, _) = node.zk_get_children("/seq", &[]).expect("/seq");
    for a in acks {
        if let Ack::Seq { path, .. } = a {
            let name = path.trim_start_matches("/seq/");
            assert!(
                children.iter().any(|c| c == name),
                "acknowledged {path} lost"
            );
        }
    }
    let mut nums: Vec<u64> = children
        .iter()
        .map(|c| c.trim_start_matches("n-").parse().expect("sequence number"))
        .collect();
    nums.sort_unstable();
    assert_eq!(nums, (0..nums.len() as u64).collect::<Vec<_>>());
    // Nothing half-applied: txn keys come in pairs at one revision.
    let mut txn_keys: BTreeMap<String, BTreeSet<(String, i64)>> = BTreeMap::new();
    for (k, kv) in &kvs {
        assert!(kv.mod_revision <= rev);
        let k = String::from_utf8(k.clone()).unwrap();
        if k.starts_with("/seq") {
            continue;
        }
        if let Some(prefix) = k.strip_prefix("t/") {
            let (p, side) = prefix.rsplit_once('/').unwrap();
            txn_keys
                .entry(p.to_string())
                .or_default()
                .insert((side.to_string(), kv.mod_revision));
            assert_eq!(kv.value, format!("txn-{}", p.replace('/', "-")).as_bytes());
        }
    }
    for (p, sides) in &txn_keys {
        let names: Vec<&str> = sides.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["a", "b"], "txn {p} half-applied");
        let revs: BTreeSet<i64> = sides.iter().map(|(_, r)| *r).collect();
        assert_eq!(revs.len(), 1, "txn {p} split over revisions");
    }
    // Revisions are dense: every revision up to the current one is a write
    // we can read back at that revision.
    let probe = node
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(probe.count as usize, kvs.len());
    // The revision continues.
    let a = node
        .propose(Command::Put(put_req("after-crash".into(), rev.to_string())))
        .await
        .unwrap();
    assert_eq!(a.revision, rev + 1);
    node.stop();
    a.revision
}

#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_write() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut max_ack = 0;
    let mut total = 0;
    for (round, kill_after) in [(TRUNCATING_ROUND, 10_000usize), (2, 400), (3, 60)] {
        let acks = run_child(&data, round, kill_after);
        assert!(acks.len() >= kill_after);
        total += acks.len();
        if round == TRUNCATING_ROUND {
            // The WAL was truncated during the round: its oldest segments
            // are gone.
            let first = std::fs::read_dir(data.join("wal"))
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".wal"))
                .min()
                .expect("a WAL segment");
            assert_ne!(
                first,
                format!("{:016x}.wal", 0),
                "no WAL truncation happened"
            );
        }
        max_ack = check_after_crash(&data, round, &acks, max_ack).await;
    }
    assert!(total >= 10_460);
}
