use std::path::Path;
use std::sync::Arc;

use raft::prelude::{Entry, HardState};

use super::*;

const SEG: u64 = 16 * 1024;

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: SEG,
        ..WalOptions::default()
    }
}

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        data: vec![(index % 251) as u8; len].into(),
        ..Default::default()
    }
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        commit,
        ..Default::default()
    }
}

fn open_os(dir: &Path) -> Result<(Wal, Recovered), CoreError> {
    Wal::open(Arc::new(OsFs), dir, opts())
}

fn indexes(r: &Recovered) -> Vec<u64> {
    r.entries.iter().map(|e| e.index).collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Bytes up to the last non-zero one.
fn used(p: &Path) -> usize {
    let b = std::fs::read(p).unwrap();
    b.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1)
}

#[test]
fn appends_and_hard_state_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, r) = open_os(d.path()).unwrap();
        assert!(r.is_empty());
        w.append(&[entry(1, 1, 10), entry(2, 1, 10), entry(3, 2, 10)])
            .unwrap();
        w.set_hard_state(&hs(2, 3)).unwrap();
        w.sync().unwrap();
    }
    let (_w, r) = open_os(d.path()).unwrap();
    assert_eq!(indexes(&r), [1, 2, 3]);
    assert_eq!(r.entries[2].term, 2);
    assert_eq!(r.hard_state, Some(hs(2, 3)));
}

#[test]
fn an_entry_replaces_the_suffix_at_and_above_its_index() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        w.append(&[entry(1, 1, 1), entry(2, 1, 1), entry(3, 1, 1)])
            .unwrap();
        w.append(&[entry(2, 3, 1)]).unwrap();
        w.sync().unwrap();
    }
    let (_w, r) = open_os(d.path()).unwrap();
    assert_eq!(indexes(&r), [1, 2]);
    assert_eq!(r.entries[1].term, 3);
}

#[test]
fn group_commit_is_one_fdatasync_and_unsynced_appends_die_in_a_power_cut() {
    let fs = PowerCutFs::new();
    let dir = Path::new("/wal");
    let (mut w, _) = Wal::open(Arc::new(fs.clone()), dir, opts()).unwrap();
    w.sync().unwrap();
    let before = fs.syncs();
    for i in 1..=50 {
        w.append(&[entry(i, 1, 20)]).unwrap();
    }
    w.sync().unwrap();
    assert_eq!(fs.syncs() - before, 1, "50 appends, one sync");
    w.sync().unwrap();
    assert_eq!(fs.syncs() - before, 1, "nothing new, no sync");
    w.append(&[entry(51, 1, 20)]).unwrap();
    w.set_hard_state(&hs(1, 51)).unwrap();
    drop(w);
    fs.cut();
    fs.restore();
    let (_w, r) = Wal::open(Arc::new(fs.clone()), dir, opts()).unwrap();
    assert_eq!(r.entries.len(), 50, "the unsynced append is gone");
    assert_eq!(r.entries.last().map(|e| e.index), Some(50));
}

/// A crash mid-append leaves any prefix of the last record on disk: every
/// such prefix is detected and cut off at open, and the log then accepts
/// appends again.
#[test]
fn torn_tail_of_every_length_is_truncated_at_open() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        w.append(&[entry(1, 1, 40), entry(2, 1, 40)]).unwrap();
        w.sync().unwrap();
    }
    let seg = segment_files(d.path()).remove(0);
    let good = used(&seg);
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        w.append(&[entry(3, 1, 40)]).unwrap();
        w.sync().unwrap();
    }
    let full = std::fs::read(&seg).unwrap();
    let end = used(&seg);
    assert!(end > good);
    for cut in good + 1..end {
        let mut torn = full.clone();
        torn[cut..end].fill(0);
        std::fs::write(&seg, &torn).unwrap();
        let (mut w, r) = open_os(d.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(indexes(&r), [1, 2], "cut at {cut}");
        // The torn bytes were zeroed: a new append reads back cleanly.
        w.append(&[entry(3, 2, 5)]).unwrap();
        w.sync().unwrap();
        drop(w);
        let (_w, r) = open_os(d.path()).unwrap();
        assert_eq!(indexes(&r), [1, 2, 3], "cut at {cut}");
        assert_eq!(r.entries[2].term, 2);
    }
}

#[test]
fn bit_flip_in_the_middle_is_an_error_naming_the_segment() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        for i in 1..=20 {
            w.append(&[entry(i, 1, 40)]).unwrap();
        }
        w.sync().unwrap();
    }
    let seg = segment_files(d.path()).remove(0);
    let mut b = std::fs::read(&seg).unwrap();
    let mid = used(&seg) / 2;
    b[mid] ^= 0x10;
    std::fs::write(&seg, &b).unwrap();
    match open_os(d.path()) {
        Err(CoreError::Corrupt { path, what }) => {
            assert_eq!(path, seg, "{what}");
            assert!(what.contains("offset"), "{what}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok((_, r)) => panic!("opened a corrupt log with {} entries", r.entries.len()),
    }
}

#[test]
fn corruption_in_an_older_segment_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        for i in 1..=200 {
            w.append(&[entry(i, 1, 200)]).unwrap();
            w.sync().unwrap();
        }
    }
    let segs = segment_files(d.path());
    assert!(segs.len() >= 3, "{segs:?}");
    // The last record of the first segment: a bad record with zeros after
    // it, which would pass for a torn tail in the last segment.
    let u = used(&segs[0]);
    let mut b = std::fs::read(&segs[0]).unwrap();
    b[u - 3] ^= 0xff;
    std::fs::write(&segs[0], &b).unwrap();
    match open_os(d.path()) {
        Err(CoreError::Corrupt { path, .. }) => assert_eq!(path, segs[0]),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn segments_roll_and_compaction_deletes_whole_segments_below_the_index() {
    let d = tempfile::tempdir().unwrap();
    let (mut w, _) = open_os(d.path()).unwrap();
    for i in 1..=300 {
        w.append(&[entry(i, 1 + i / 100, 200)]).unwrap();
        if i % 7 == 0 {
            w.set_hard_state(&hs(1 + i / 100, i)).unwrap();
        }
        w.sync().unwrap();
    }
    let n = segment_files(d.path()).len();
    assert!(n >= 4, "{n} segments");
    w.compact(150, 2).unwrap();
    let after = segment_files(d.path()).len();
    assert!(after < n, "no segment deleted ({n} -> {after})");
    assert_eq!(after, w.segment_count());
    drop(w);
    let (mut w, r) = open_os(d.path()).unwrap();
    assert_eq!(r.start, (150, 2));
    assert_eq!(indexes(&r), (151..=300).collect::<Vec<_>>());
    assert_eq!(r.hard_state, Some(hs(3, 294)));
    // Compacting everything but the current segment keeps the log usable.
    w.compact(300, 4).unwrap();
    assert_eq!(w.segment_count(), 1);
    w.append(&[entry(301, 4, 10)]).unwrap();
    w.sync().unwrap();
    drop(w);
    let (_w, r) = open_os(d.path()).unwrap();
    assert_eq!(r.start, (300, 4));
    assert_eq!(indexes(&r), [301]);
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        w.append(&[
            entry(1, 1, 10),
            entry(2, 1, 3 * SEG as usize),
            entry(3, 1, 10),
        ])
        .unwrap();
        w.sync().unwrap();
    }
    let (_w, r) = open_os(d.path()).unwrap();
    assert_eq!(indexes(&r), [1, 2, 3]);
    assert_eq!(r.entries[1].data.len(), 3 * SEG as usize);
}

#[test]
fn reset_drops_every_entry() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        for i in 1..=100 {
            w.append(&[entry(i, 1, 300)]).unwrap();
        }
        w.sync().unwrap();
        w.reset(500, 7, &hs(7, 500)).unwrap();
        assert_eq!(w.segment_count(), 1);
        w.append(&[entry(501, 7, 3)]).unwrap();
        w.sync().unwrap();
    }
    let (_w, r) = open_os(d.path()).unwrap();
    assert_eq!(r.start, (500, 7));
    assert_eq!(indexes(&r), [501]);
    assert_eq!(r.hard_state, Some(hs(7, 500)));
}

#[test]
fn a_missing_middle_segment_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = open_os(d.path()).unwrap();
        for i in 1..=200 {
            w.append(&[entry(i, 1, 200)]).unwrap();
            w.sync().unwrap();
        }
    }
    let segs = segment_files(d.path());
    std::fs::remove_file(&segs[1]).unwrap();
    match open_os(d.path()) {
        Err(CoreError::Corrupt { path, what }) => {
            assert_eq!(path, d.path(), "{what}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a log with a hole"),
    }
}
