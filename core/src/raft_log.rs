//! The raft log, hard state and conf state on fjall: raft-rs's [`Storage`].
//!
//! Entries are stored by index as protobuf bytes in the `raft_log`
//! keyspace; hard state, conf state and the log start (index/term of the
//! last entry dropped by compaction) in `meta`. Writes go into fjall batches
//! and become durable at the raft loop's next [`Engine::sync`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::engine::{Engine, Space};
use crate::CoreError;

const HARD_STATE: &[u8] = b"raft_hard_state";
const CONF_STATE: &[u8] = b"raft_conf_state";
const LOG_START: &[u8] = b"raft_log_start";

#[derive(Clone, Debug, Default)]
struct LogState {
    hard: HardState,
    conf: ConfState,
    /// Index and term of the entry just before the first stored one.
    start_index: u64,
    start_term: u64,
    last: u64,
}

/// raft-rs storage over the member's database.
pub struct RaftLog {
    engine: Arc<Engine>,
    st: RwLock<LogState>,
    /// Applied index already made durable (what a snapshot can describe).
    durable_applied: AtomicU64,
}

fn idx_key(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn other(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl RaftLog {
    /// Loads the log; a fresh log gets `voters` as its initial configuration.
    pub fn open(engine: Arc<Engine>, voters: &[u64], applied: u64) -> Result<RaftLog, CoreError> {
        let corrupt = |what: String| CoreError::Corrupt {
            path: engine.dir().join("meta"),
            what,
        };
        let mut st = LogState::default();
        if let Some(b) = engine.get(Space::Meta, HARD_STATE)? {
            st.hard = HardState::parse_from_bytes(&b)
                .map_err(|e| corrupt(format!("raft hard state: {e}")))?;
        }
        match engine.get(Space::Meta, CONF_STATE)? {
            Some(b) => {
                st.conf = ConfState::parse_from_bytes(&b)
                    .map_err(|e| corrupt(format!("raft conf state: {e}")))?
            }
            None => st.conf.set_voters(voters.to_vec()),
        }
        if let Some(b) = engine.get(Space::Meta, LOG_START)? {
            let (i, t) = b
                .split_at_checked(8)
                .ok_or_else(|| corrupt("raft log start".into()))?;
            st.start_index =
                u64::from_be_bytes(i.try_into().map_err(|_| corrupt("raft log start".into()))?);
            st.start_term =
                u64::from_be_bytes(t.try_into().map_err(|_| corrupt("raft log start".into()))?);
        }
        let fresh = st.hard == HardState::default() && st.start_index == 0;
        if fresh && !voters.is_empty() {
            // A new cluster's log starts after a virtual entry (index 1, term
            // 1) that stands for the bootstrap configuration, so a member
            // that joins later is always caught up by a snapshot (which
            // carries the member table) rather than by replaying a log that
            // never recorded the initial members.
            st.start_index = 1;
            st.start_term = 1;
            st.hard.term = 1;
            st.hard.commit = 1;
            let mut b = engine.batch();
            let mut start = 1u64.to_be_bytes().to_vec();
            start.extend_from_slice(&1u64.to_be_bytes());
            b.put(Space::Meta, LOG_START.to_vec(), start);
            b.put(
                Space::Meta,
                HARD_STATE.to_vec(),
                st.hard
                    .write_to_bytes()
                    .map_err(|e| CoreError::Encoding(e.to_string()))?,
            );
            engine.commit(b)?;
        }
        st.last = st.start_index;
        if let Some(item) = engine.scan_all(Space::RaftLog).last() {
            let (k, _) = item?;
            let arr: [u8; 8] = k.as_slice().try_into().map_err(|_| CoreError::Corrupt {
                path: engine.dir().join("raft_log"),
                what: "bad entry index".into(),
            })?;
            st.last = u64::from_be_bytes(arr);
        }
        let log = RaftLog {
            engine,
            st: RwLock::new(st),
            durable_applied: AtomicU64::new(applied),
        };
        let cs = log.read().conf.clone();
        let mut b = log.engine.batch();
        b.put(
            Space::Meta,
            CONF_STATE.to_vec(),
            cs.write_to_bytes()
                .map_err(|e| CoreError::Encoding(e.to_string()))?,
        );
        log.engine.commit(b)?;
        Ok(log)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LogState> {
        self.st.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LogState> {
        self.st.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hard_state(&self) -> HardState {
        self.read().hard.clone()
    }

    /// Index of the first stored entry.
    pub fn first(&self) -> u64 {
        self.read().start_index + 1
    }

    pub fn last(&self) -> u64 {
        self.read().last
    }

    /// Appends (and overwrites conflicting suffixes with) `entries`, and
    /// records a new hard state, in one batch.
    pub fn append(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), CoreError> {
        let mut st = self.write();
        let mut b = self.engine.batch();
        let enc = |e: &dyn protobuf::Message| {
            e.write_to_bytes()
                .map_err(|e| CoreError::Encoding(e.to_string()))
        };
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            for e in entries {
                b.put(Space::RaftLog, idx_key(e.index), enc(e)?);
            }
            for i in (last.index + 1)..=st.last {
                b.remove(Space::RaftLog, idx_key(i));
            }
            debug_assert!(first.index <= st.last + 1);
            st.last = last.index;
        }
        if let Some(hs) = hs {
            b.put(Space::Meta, HARD_STATE.to_vec(), enc(hs)?);
            st.hard = hs.clone();
        }
        self.engine.commit(b)
    }

    /// Records a higher commit index (before entries up to it are applied).
    pub fn set_commit(&self, commit: u64) -> Result<(), CoreError> {
        let mut hs = self.hard_state();
        if commit <= hs.commit {
            return Ok(());
        }
        hs.commit = commit;
        self.append(&[], Some(&hs))
    }

    pub fn set_conf_state(&self, cs: ConfState) -> Result<(), CoreError> {
        let mut b = self.engine.batch();
        b.put(
            Space::Meta,
            CONF_STATE.to_vec(),
            cs.write_to_bytes()
                .map_err(|e| CoreError::Encoding(e.to_string()))?,
        );
        self.engine.commit(b)?;
        self.write().conf = cs;
        Ok(())
    }

    /// Drops entries up to and including `index` (which must be applied and
    /// durable), keeping its term for log matching.
    pub fn compact(&self, index: u64) -> Result<(), CoreError> {
        let term = self
            .term(index)
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        let mut st = self.write();
        if index <= st.start_index || index > st.last {
            return Ok(());
        }
        let mut b = self.engine.batch();
        for i in (st.start_index + 1)..=index {
            b.remove(Space::RaftLog, idx_key(i));
        }
        let mut start = index.to_be_bytes().to_vec();
        start.extend_from_slice(&term.to_be_bytes());
        b.put(Space::Meta, LOG_START.to_vec(), start);
        self.engine.commit(b)?;
        st.start_index = index;
        st.start_term = term;
        Ok(())
    }

    fn entry(&self, i: u64) -> raft::Result<Entry> {
        let b = self
            .engine
            .get(Space::RaftLog, &idx_key(i))
            .map_err(other)?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        Entry::parse_from_bytes(&b).map_err(other)
    }
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self.read();
        Ok(RaftState {
            hard_state: st.hard.clone(),
            conf_state: st.conf.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let (start, last) = {
            let st = self.read();
            (st.start_index, st.last)
        };
        if low <= start {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        for i in low..high {
            let e = self.entry(i)?;
            size += e.compute_size() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (start, start_term, last) = {
            let st = self.read();
            (st.start_index, st.start_term, st.last)
        };
        if idx == start {
            return Ok(start_term);
        }
        if idx < start {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().start_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last)
    }

    /// Describes the state at the durable applied index; the raft loop
    /// streams the data (and re-stamps the index to what it exports).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = self.durable_applied.load(Ordering::Acquire);
        if applied < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = self.term(applied)?;
        meta.set_conf_state(self.read().conf.clone());
        Ok(snap)
    }
}

impl RaftLog {
    pub fn set_durable_applied(&self, applied: u64) {
        self.durable_applied.store(applied, Ordering::Release);
    }

    /// Adds a snapshot's raft metadata to the batch that installs it: the
    /// log restarts after the snapshot index.
    pub fn snapshot_into(
        &self,
        batch: &mut crate::engine::Batch,
        meta: &raft::prelude::SnapshotMetadata,
    ) -> Result<(), CoreError> {
        let enc = |e: &dyn protobuf::Message| {
            e.write_to_bytes()
                .map_err(|e| CoreError::Encoding(e.to_string()))
        };
        let mut hs = self.hard_state();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        batch.put(Space::Meta, HARD_STATE.to_vec(), enc(&hs)?);
        batch.put(
            Space::Meta,
            CONF_STATE.to_vec(),
            enc(meta.get_conf_state())?,
        );
        let mut start = meta.index.to_be_bytes().to_vec();
        start.extend_from_slice(&meta.term.to_be_bytes());
        batch.put(Space::Meta, LOG_START.to_vec(), start);
        Ok(())
    }

    /// Updates the in-memory log view after a snapshot batch committed.
    pub fn snapshot_installed(&self, meta: &raft::prelude::SnapshotMetadata) {
        let mut st = self.write();
        st.hard.term = st.hard.term.max(meta.term);
        st.hard.commit = meta.index;
        st.conf = meta.get_conf_state().clone();
        st.start_index = meta.index;
        st.start_term = meta.term;
        st.last = meta.index;
        self.durable_applied.store(meta.index, Ordering::Release);
    }

    /// Makes everything written so far durable (the group commit).
    pub fn sync_engine(&self) -> Result<(), CoreError> {
        self.engine.sync()
    }
}
