//! Bad input on disk: corrupt or truncated files in the data dir must make
//! `Node::start` fail with an error naming the data dir (or the keyspace),
//! never panic, and never come up silently empty or rolled back.
//!
//! Losses that leave fjall consistent (an emptied, deleted or truncated
//! journal, missing tables) are caught by core's checkpoint file, which
//! records the durable applied index beside the database.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use janus_core::engine::{Engine, Space};
use janus_core::{CoreError, Node, NodeConfig};

const KEYS: usize = 300;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A data dir holding KEYS acknowledged puts (revision KEYS + 1), with a
/// lease, an ACL'd znode and tree bookkeeping.
fn populated() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    rt().block_on(async {
        let n = Node::start(NodeConfig::single(&d)).unwrap();
        for i in 0..KEYS {
            common::put(&n, &format!("/k/{i}"), &"x".repeat(100)).await;
        }
        n.stop();
    });
    (t, d)
}

/// Starts a node on `d` (inside a runtime, catching panics).
fn start(d: &Path) -> Result<(i64, i64), String> {
    let rt = rt();
    let _g = rt.enter();
    let r = std::panic::catch_unwind(|| {
        Node::start(NodeConfig::single(d)).map(|n| {
            let rev = n.revision();
            let count = common::range_all(&n).count;
            n.stop();
            (rev, count)
        })
    });
    match r {
        Err(_) => panic!("Node::start panicked on a corrupt data dir"),
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

fn refused(d: &Path, what: &str) -> String {
    match start(d) {
        Ok((rev, count)) => {
            panic!("{what}: node started (revision {rev}, {count} keys) instead of refusing")
        }
        Err(msg) => {
            assert!(
                msg.contains(&d.display().to_string()),
                "{what}: error does not name the data dir: {msg}"
            );
            msg
        }
    }
}

fn journal(d: &Path) -> PathBuf {
    d.join("0.jnl")
}

/// Length of the written part of a (preallocated) journal.
fn used(p: &Path) -> u64 {
    let b = std::fs::read(p).unwrap();
    b.iter().rposition(|x| *x != 0).map_or(0, |i| i as u64 + 1)
}

fn set_len(p: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn xor_bytes(p: &Path, at: usize, n: usize) {
    let mut b = std::fs::read(p).unwrap();
    for x in &mut b[at..at + n] {
        *x ^= 0x5a;
    }
    std::fs::write(p, b).unwrap();
}

/// Every file under `d/keyspaces/*/<sub>` (tables, version files).
fn files(d: &Path, filter: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.join("keyspaces")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if filter(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn tables(d: &Path) -> Vec<PathBuf> {
    files(d, |p| p.parent().is_some_and(|q| q.ends_with("tables")))
}

/// The newest version (manifest) file of each keyspace.
fn manifests(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ks in std::fs::read_dir(d.join("keyspaces")).unwrap() {
        let ks = ks.unwrap().path();
        let newest = std::fs::read_dir(&ks)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                let n: u64 = p.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()?;
                Some((n, p))
            })
            .max();
        out.extend(newest.map(|(_, p)| p));
    }
    out
}

#[test]
fn intact_dir_reopens() {
    let (_t, d) = populated();
    assert_eq!(start(&d), Ok((KEYS as i64 + 1, KEYS as i64)));
}

#[test]
fn corrupt_journal_head_is_refused() {
    let (_t, d) = populated();
    xor_bytes(&journal(&d), 40, 40);
    let msg = refused(&d, "journal head corrupted");
    assert!(msg.contains("Checksum") || msg.contains("corrupt"), "{msg}");
}

#[test]
fn corrupt_or_truncated_tables_are_refused() {
    let (_t, d) = populated();
    assert!(!tables(&d).is_empty(), "expected table files in {d:?}");
    for (i, case) in ["garbage", "truncated", "deleted"].iter().enumerate() {
        let (_t, d) = populated();
        let ts = tables(&d);
        let p = ts.last().unwrap();
        let len = std::fs::metadata(p).unwrap().len();
        match i {
            0 => std::fs::write(p, vec![0xab; len as usize]).unwrap(),
            1 => set_len(p, len / 2),
            _ => std::fs::remove_file(p).unwrap(),
        }
        refused(&d, &format!("table {case}: {}", p.display()));
    }
}

#[test]
fn corrupt_manifests_are_refused() {
    for m in 0..3 {
        let (_t, d) = populated();
        let ms = manifests(&d);
        let p = &ms[m % ms.len()];
        match m {
            0 => set_len(p, 10),
            1 => {
                let len = std::fs::metadata(p).unwrap().len() as usize;
                std::fs::write(p, vec![0x11; len]).unwrap()
            }
            _ => {
                let cur = p.parent().unwrap().join("current");
                std::fs::write(cur, b"garbage garbage garbage!!").unwrap()
            }
        }
        refused(&d, &format!("manifest case {m}: {}", p.display()));
    }
}

#[test]
fn corrupt_format_version_is_refused() {
    let (_t, d) = populated();
    std::fs::write(d.join("version"), b"zzzz").unwrap();
    refused(&d, "version garbage");
    let (_t, d) = populated();
    std::fs::remove_file(d.join("version")).unwrap();
    refused(&d, "version deleted");
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    std::fs::write(&d, b"not a dir").unwrap();
    refused(&d, "data dir is a file");
}

/// A torn journal tail (a crash in the middle of the last write) opens at
/// the last complete batch: a consistent, earlier state. A crash tears only
/// writes that were never synced, so never past the checkpoint: we model it
/// by a checkpoint older than the tail (none at all here). After a clean
/// stop the same tear is a loss of synced data and is refused.
#[test]
fn torn_journal_tail_opens_consistently() {
    let (_t, d) = populated();
    let j = journal(&d);
    set_len(&j, used(&j) - 10);
    refused(&d, "torn tail behind the clean-stop checkpoint");
    std::fs::remove_file(d.join(janus_core::checkpoint::FILE)).unwrap();
    let (rev, count) = start(&d).expect("a torn tail is a normal crash");
    assert!(rev >= KEYS as i64 - 5, "lost more than the tail: {rev}");
    assert_eq!(rev, count + 1, "revision and keys agree");
}

/// Records janus itself wrote (not fjall's files) that do not decode are
/// reported as corrupt data naming the keyspace.
#[test]
fn undecodable_records_are_reported_as_corrupt() {
    let cases: [(Space, Vec<u8>, Vec<u8>, &str); 6] = [
        (
            Space::Revs,
            vec![0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0],
            vec![0xff; 7],
            "revs",
        ),
        (Space::Revs, b"short".to_vec(), b"x".to_vec(), "revs"),
        (
            Space::Meta,
            b"applied_index".to_vec(),
            vec![1, 2, 3],
            "meta",
        ),
        (
            Space::Leases,
            7i64.to_be_bytes().to_vec(),
            vec![0xff; 12],
            "leases",
        ),
        (Space::Znodes, b"/k/1".to_vec(), vec![0xff; 9], "znodes"),
        (Space::Tree, b"/k".to_vec(), vec![0xff; 20], "tree"),
    ];
    for (space, k, v, name) in cases {
        let (_t, d) = populated();
        {
            let e = Arc::new(Engine::open(&d).unwrap());
            let mut b = e.batch();
            b.put(space, k.clone(), v);
            e.commit(b).unwrap();
            e.sync().unwrap();
        }
        let rt = rt();
        let _g = rt.enter();
        match Node::start(NodeConfig::single(&d)) {
            Ok(n) => {
                n.stop();
                panic!("{name}: started on an undecodable record {k:?}");
            }
            Err(CoreError::Corrupt { path, what }) => {
                assert_eq!(path, d.join(name), "{what}");
            }
            Err(e) => panic!("{name}: wrong error {e}"),
        }
    }
}

// ---- silent reset / rollback: refused through the checkpoint file ----

#[test]
fn truncated_journal_is_refused() {
    let (_t, d) = populated();
    set_len(&journal(&d), 0);
    refused(&d, "journal truncated to 0");
}

#[test]
fn missing_journal_is_refused() {
    let (_t, d) = populated();
    std::fs::remove_file(journal(&d)).unwrap();
    refused(&d, "journal deleted");
}

#[test]
fn missing_keyspaces_are_refused() {
    let (_t, d) = populated();
    std::fs::remove_dir_all(d.join("keyspaces")).unwrap();
    refused(&d, "keyspaces deleted");
}

#[test]
fn corrupt_journal_middle_is_refused() {
    let (_t, d) = populated();
    let j = journal(&d);
    let u = used(&j) as usize;
    xor_bytes(&j, u / 2, 64);
    refused(&d, "journal middle corrupted");
}

#[test]
fn half_journal_is_refused() {
    let (_t, d) = populated();
    let j = journal(&d);
    set_len(&j, used(&j) / 2);
    refused(&d, "journal cut in half");
}
