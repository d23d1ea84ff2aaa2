//! The write-ahead log (D10a): raft entries and hard state in an
//! append-only, segmented, checksummed log with group commit.
//!
//! Layout: `<data dir>/wal/<seq:016x>.wal`, each segment preallocated with
//! zeros ([`WalOptions::segment_bytes`]) and filled with framed records
//! ([`record`]). Every segment begins with the log start and the current
//! hard state, so any suffix of segments is self-contained; compaction
//! appends a new start record, syncs it, then deletes whole segments that
//! hold nothing above it. The next segment is zero-filled on a background
//! thread once the current one is half full, so a roll costs a rename.
//!
//! Durability: appends go to a buffer; [`Wal::sync`] writes the buffer with
//! one `pwrite` and one `fdatasync`, covering every append since the last
//! (group commit). It is the only sync a client write waits for.
//!
//! Recovery ([`Wal::open`]): segments are replayed in order. A record that
//! does not check out at the end of the last segment is a torn write (a
//! crash mid-append, never acknowledged): it is logged and zeroed, and the
//! log continues from the last good record. A bad record anywhere else —
//! followed by good data, or in an older segment — is corruption of synced
//! data and fails with [`CoreError::Corrupt`] naming the segment file.
//!
//! Why a file format of our own rather than a fjall keyspace for the log:
//! the log is written strictly sequentially, read back only at start-up and
//! dropped by prefix, which an LSM tree turns into memtable inserts, journal
//! writes, flushes, compactions and tombstones for every entry; measured on
//! the project machine, the fjall `raft_log` keyspace with one
//! `persist(SyncData)` per Ready plateaued near 10k writes/s
//! (BENCHMARKS.md, run2) with a third of the raft thread's time in that
//! persist, while an fdatasync of an appended, preallocated file costs one
//! device flush with no metadata to commit. The state store stays in fjall
//! and is no longer synced on the write path at all.

mod fs;
pub mod record;

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use protobuf::Message as _;
use raft::prelude::{Entry, HardState};

pub use fs::{OsFs, PowerCutFs, WalFile, WalFs};
use record::{Kind, Read};

use crate::CoreError;

/// Tunables of the WAL.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size each segment is preallocated to (a record larger than this gets
    /// a segment of its own size).
    pub segment_bytes: u64,
    /// Sync on the log writer thread (raft-rs async persistence) instead
    /// of in the raft loop. Off by default: on the project machine an
    /// fdatasync of the preallocated log takes ~60 us while handing each
    /// Ready to another thread and back cost more than that under load
    /// (BENCHMARKS.md); it pays off on disks whose flush takes
    /// milliseconds. `JANUS_WAL_WRITER_THREAD=1` turns it on.
    pub writer_thread: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            writer_thread: false,
        }
    }
}

impl WalOptions {
    /// The defaults, with `JANUS_WAL_WRITER_THREAD=1` read from the
    /// environment.
    pub fn from_env() -> WalOptions {
        WalOptions {
            writer_thread: std::env::var("JANUS_WAL_WRITER_THREAD").is_ok_and(|v| v == "1"),
            ..WalOptions::default()
        }
    }
}

/// What [`Wal::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Index and term of the entry just before the first kept one.
    pub start: (u64, u64),
    pub hard_state: Option<HardState>,
    /// The live entries, contiguous from `start.0 + 1`.
    pub entries: Vec<Entry>,
}

impl Recovered {
    /// Whether the log holds nothing at all (a new member).
    pub fn is_empty(&self) -> bool {
        self.start == (0, 0) && self.hard_state.is_none() && self.entries.is_empty()
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written to the segment (0: none).
    max_index: u64,
}

/// The log writer (see the module).
pub struct Wal {
    fs: std::sync::Arc<dyn WalFs>,
    dir: PathBuf,
    opts: WalOptions,
    segments: Vec<Segment>,
    file: Box<dyn WalFile>,
    /// Size of the current segment.
    file_len: u64,
    /// Bytes of the current segment already handed to the file.
    written: u64,
    /// Bytes written to the file but not yet fdatasynced.
    unsynced: bool,
    buf: Vec<u8>,
    start: (u64, u64),
    hard: Vec<u8>,
    /// The next segment, being zero-filled.
    next: Option<JoinHandle<io::Result<()>>>,
}

const PREALLOC: &str = "next.prealloc";

fn seg_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn parse_seg_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn enc(m: &dyn protobuf::Message) -> Result<Vec<u8>, CoreError> {
    m.write_to_bytes()
        .map_err(|e| CoreError::Encoding(e.to_string()))
}

impl Wal {
    /// Opens (or creates) the log in `dir` and replays it.
    pub fn open(
        fs: std::sync::Arc<dyn WalFs>,
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, Recovered), CoreError> {
        let io_err = |p: &Path, e: io::Error| CoreError::storage(p, e);
        fs.create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut seqs: Vec<u64> = fs
            .list(dir)
            .map_err(|e| io_err(dir, e))?
            .iter()
            .filter_map(|n| parse_seg_name(n))
            .collect();
        seqs.sort_unstable();
        let mut rec = Recovered::default();
        // Entries by index while replaying (a gap below a later start record
        // is fine; the final check wants the result contiguous).
        let mut entries: std::collections::BTreeMap<u64, Entry> = Default::default();
        let mut segments = Vec::new();
        let mut tail = 0u64;
        let mut tail_len = 0u64;
        for (i, seq) in seqs.iter().enumerate() {
            let path = dir.join(seg_name(*seq));
            let last = i + 1 == seqs.len();
            let buf = fs.read(&path).map_err(|e| io_err(&path, e))?;
            let corrupt = |off: usize, why: &str| CoreError::Corrupt {
                path: path.clone(),
                what: format!("WAL record at offset {off}: {why}"),
            };
            let mut off = 0usize;
            let mut max_index = 0u64;
            loop {
                match record::read(&buf, off) {
                    Read::Record { kind, body, next } => {
                        match kind {
                            Kind::Entry => {
                                let e = Entry::parse_from_bytes(body)
                                    .map_err(|e| corrupt(off, &format!("entry: {e}")))?;
                                let _ = entries.split_off(&e.index);
                                max_index = max_index.max(e.index);
                                entries.insert(e.index, e);
                            }
                            Kind::HardState => {
                                let hs = HardState::parse_from_bytes(body)
                                    .map_err(|e| corrupt(off, &format!("hard state: {e}")))?;
                                rec.hard_state = Some(hs);
                            }
                            Kind::Start => {
                                let (s, t) = record::parse_index_term(body)
                                    .ok_or_else(|| corrupt(off, "bad start record"))?;
                                if s >= rec.start.0 {
                                    rec.start = (s, t);
                                    entries = entries.split_off(&(s + 1));
                                }
                            }
                            Kind::Reset => {
                                let (s, t) = record::parse_index_term(body)
                                    .ok_or_else(|| corrupt(off, "bad reset record"))?;
                                rec.start = (s, t);
                                entries.clear();
                            }
                        }
                        off = next;
                    }
                    Read::End => {
                        if last && buf[off..].iter().any(|b| *b != 0) {
                            // A tear that left the header of the first lost
                            // record zero but later bytes written.
                            tracing::warn!(
                                segment = %path.display(),
                                offset = off,
                                "WAL: torn tail (stray bytes after the last record), discarding"
                            );
                            zero_from(&*fs, &path, &buf, off)?;
                        }
                        break;
                    }
                    Read::Bad { why, claimed_end } => {
                        let rest_zero = buf[claimed_end.min(buf.len())..].iter().all(|b| *b == 0);
                        if !(last && rest_zero) {
                            return Err(corrupt(off, &why));
                        }
                        tracing::warn!(
                            segment = %path.display(),
                            offset = off,
                            "WAL: torn last record ({why}), truncating the log there"
                        );
                        zero_from(&*fs, &path, &buf, off)?;
                        break;
                    }
                }
            }
            segments.push(Segment {
                seq: *seq,
                path,
                max_index,
            });
            tail = off as u64;
            tail_len = buf.len() as u64;
        }
        if let Some((first, _)) = entries.first_key_value() {
            if *first != rec.start.0 + 1 {
                return Err(CoreError::Corrupt {
                    path: dir.to_path_buf(),
                    what: format!(
                        "WAL entries {}..{} are missing (log starts after {})",
                        rec.start.0 + 1,
                        first - 1,
                        rec.start.0
                    ),
                });
            }
        }
        rec.entries = entries.into_values().collect();
        for (k, e) in rec.entries.iter().enumerate() {
            if e.index != rec.start.0 + 1 + k as u64 {
                return Err(CoreError::Corrupt {
                    path: dir.to_path_buf(),
                    what: format!("WAL entry {} is missing", rec.start.0 + 1 + k as u64),
                });
            }
        }
        let hard = match &rec.hard_state {
            Some(hs) => enc(hs)?,
            None => enc(&HardState::default())?,
        };
        let wal = match segments.last() {
            Some(s) => {
                let file = fs.open(&s.path).map_err(|e| io_err(&s.path, e))?;
                Wal {
                    fs,
                    dir: dir.to_path_buf(),
                    opts,
                    segments,
                    file,
                    file_len: tail_len,
                    written: tail,
                    unsynced: false,
                    buf: Vec::new(),
                    start: rec.start,
                    hard,
                    next: None,
                }
            }
            None => {
                let path = dir.join(seg_name(0));
                let file = fs
                    .create_zeroed(&path, opts.segment_bytes)
                    .map_err(|e| io_err(&path, e))?;
                let mut w = Wal {
                    fs,
                    dir: dir.to_path_buf(),
                    file_len: opts.segment_bytes,
                    opts,
                    segments: vec![Segment {
                        seq: 0,
                        path,
                        max_index: 0,
                    }],
                    file,
                    written: 0,
                    unsynced: false,
                    buf: Vec::new(),
                    start: rec.start,
                    hard,
                    next: None,
                };
                w.write_heads();
                w
            }
        };
        Ok((wal, rec))
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn write_heads(&mut self) {
        let (s, t) = self.start;
        record::encode(&mut self.buf, Kind::Start, &record::index_term(s, t));
        let hard = std::mem::take(&mut self.hard);
        record::encode(&mut self.buf, Kind::HardState, &hard);
        self.hard = hard;
    }

    /// Starts zero-filling the next segment in the background.
    fn prepare_next(&mut self) {
        if self.next.is_some() {
            return;
        }
        let fs = std::sync::Arc::clone(&self.fs);
        let path = self.dir.join(PREALLOC);
        let len = self.opts.segment_bytes;
        let spawned = std::thread::Builder::new()
            .name("wal-prealloc".into())
            .spawn(move || fs.create_zeroed(&path, len).map(|_| ()));
        // Without a thread the roll zero-fills inline.
        self.next = spawned.ok();
    }

    fn push(&mut self, kind: Kind, body: &[u8]) -> Result<(), CoreError> {
        let n = record::framed_len(body.len()) as u64;
        let used = self.written + self.buf.len() as u64;
        if used + n > self.file_len {
            self.roll(n)?;
        } else if used > self.file_len / 2 {
            // Only once the segment is half full: zero-filling competes
            // with the log's own syncs for the disk.
            self.prepare_next();
        }
        record::encode(&mut self.buf, kind, body);
        Ok(())
    }

    /// Closes the current segment (synced) and continues in a new one.
    fn roll(&mut self, need: u64) -> Result<(), CoreError> {
        self.sync()?;
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let path = self.dir.join(seg_name(seq));
        let heads = record::framed_len(16) + record::framed_len(self.hard.len());
        let len = self.opts.segment_bytes.max(need + heads as u64);
        let prepared = match self.next.take() {
            Some(h) if len == self.opts.segment_bytes => {
                matches!(h.join(), Ok(Ok(())))
            }
            Some(h) => {
                let _ = h.join();
                false
            }
            None => false,
        };
        let file = if prepared {
            let from = self.dir.join(PREALLOC);
            self.fs
                .rename(&from, &path)
                .map_err(|e| CoreError::storage(&path, e))?;
            self.fs.open(&path)
        } else {
            self.fs.create_zeroed(&path, len)
        }
        .map_err(|e| CoreError::storage(&path, e))?;
        self.file = file;
        self.file_len = len;
        self.written = 0;
        self.segments.push(Segment {
            seq,
            path,
            max_index: 0,
        });
        self.write_heads();
        Ok(())
    }

    /// Appends entries (replacing any at or above the first one's index).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), CoreError> {
        for e in entries {
            let body = enc(e)?;
            self.push(Kind::Entry, &body)?;
            if let Some(s) = self.segments.last_mut() {
                s.max_index = s.max_index.max(e.index);
            }
        }
        Ok(())
    }

    /// Records a new hard state.
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), CoreError> {
        let body = enc(hs)?;
        self.push(Kind::HardState, &body)?;
        self.hard = body;
        Ok(())
    }

    /// Whether appends are waiting for [`Wal::sync`].
    pub fn dirty(&self) -> bool {
        !self.buf.is_empty() || self.unsynced
    }

    /// Group commit: writes every buffered append and fdatasyncs once.
    pub fn sync(&mut self) -> Result<(), CoreError> {
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone());
        if !self.buf.is_empty() {
            self.file
                .write_at(self.written, &self.buf)
                .map_err(|e| CoreError::storage(&path, e))?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
            self.unsynced = true;
        }
        if self.unsynced {
            let started = std::time::Instant::now();
            self.file
                .sync_data()
                .map_err(|e| CoreError::storage(&path, e))?;
            crate::metrics::observe(&crate::metrics::WAL_FSYNC, started.elapsed());
            self.unsynced = false;
        }
        Ok(())
    }

    /// Drops entries up to `index` (whose term is `term`): records the new
    /// start durably, then deletes every older segment holding nothing
    /// above it. The caller guarantees that the state store durably holds
    /// everything up to `index`.
    pub fn compact(&mut self, index: u64, term: u64) -> Result<(), CoreError> {
        if index <= self.start.0 {
            return Ok(());
        }
        self.start = (index, term);
        self.push(Kind::Start, &record::index_term(index, term))?;
        self.sync()?;
        while self.segments.len() > 1 && self.segments[0].max_index <= index {
            let s = self.segments.remove(0);
            self.fs
                .remove(&s.path)
                .map_err(|e| CoreError::storage(&s.path, e))?;
        }
        Ok(())
    }

    /// Drops every entry: the log restarts after `index`/`term` (a snapshot
    /// was installed), durably.
    pub fn reset(&mut self, index: u64, term: u64, hs: &HardState) -> Result<(), CoreError> {
        self.start = (index, term);
        self.push(Kind::Reset, &record::index_term(index, term))?;
        self.set_hard_state(hs)?;
        self.sync()?;
        while self.segments.len() > 1 {
            let s = self.segments.remove(0);
            self.fs
                .remove(&s.path)
                .map_err(|e| CoreError::storage(&s.path, e))?;
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(h) = self.next.take() {
            let _ = h.join();
        }
    }
}

/// Zeroes a torn tail from `off` to the last non-zero byte, durably, so
/// that new appends start on clean ground.
fn zero_from(fs: &dyn WalFs, path: &Path, buf: &[u8], off: usize) -> Result<(), CoreError> {
    let end = buf.iter().rposition(|b| *b != 0).map_or(off, |i| i + 1);
    if end <= off {
        return Ok(());
    }
    let mut f = fs.open(path).map_err(|e| CoreError::storage(path, e))?;
    f.write_at(off as u64, &vec![0u8; end - off])
        .and_then(|()| f.sync_data())
        .map_err(|e| CoreError::storage(path, e))
}

#[cfg(test)]
mod tests;
