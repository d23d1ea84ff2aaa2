//! The WAL segment reader (recovery, `Wal::open`): the input becomes one
//! or two segment files (the first byte says where to cut). Recovery must
//! succeed or fail with an error, never panic; a log it recovers must take
//! an append and recover again with it.
#![no_main]

use std::sync::Arc;

use janus_core::wal::{OsFs, Wal, WalOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("janus-fuzz-wal-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).expect("wal dir");
    let at = if cut & 1 == 1 {
        (cut as usize * rest.len()) / 255
    } else {
        rest.len()
    };
    let (a, b) = rest.split_at(at.min(rest.len()));
    std::fs::write(wal.join(format!("{:016x}.wal", 1)), a).expect("segment");
    if !b.is_empty() {
        std::fs::write(wal.join(format!("{:016x}.wal", 2)), b).expect("segment");
    }
    let opts = WalOptions {
        segment_bytes: 4096,
        ..WalOptions::default()
    };
    let Ok((mut w, rec)) = Wal::open(Arc::new(OsFs), &wal, opts.clone()) else {
        return;
    };
    let next = rec.entries.last().map_or(rec.start.0 + 1, |e| e.index + 1);
    let term = rec
        .entries
        .last()
        .map_or(rec.start.1, |e| e.term)
        .max(rec.hard_state.as_ref().map_or(0, |h| h.term));
    let e = raft::prelude::Entry {
        index: next,
        term,
        data: b"fuzz".to_vec().into(),
        ..Default::default()
    };
    if w.append(&[e]).is_err() || w.sync().is_err() {
        return;
    }
    drop(w);
    let (_, again) = Wal::open(Arc::new(OsFs), &wal, opts).expect("reopen a recovered log");
    assert_eq!(
        again.entries.last().map(|e| e.index),
        Some(next),
        "the appended entry did not survive"
    );
});
