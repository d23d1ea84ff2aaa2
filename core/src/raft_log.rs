//! raft-rs's [`Storage`]: the live raft log in memory, made durable by the
//! WAL ([`crate::wal`], D10a); the conf state in the state store, written in
//! the same batch as the applied index of the conf change that produced it.
//!
//! Every entry from the log start to the last index is held in memory (the
//! log is truncated to `log_keep` entries below the durable applied index,
//! so this stays bounded), which makes `entries`/`term` for raft-rs and for
//! followers catching up a copy, not a disk read.
//!
//! Opening reconciles the WAL with the store: replay starts at the store's
//! applied index, which must lie inside the log. A store ahead of the log is
//! legitimate only right after a snapshot install whose WAL reset did not
//! happen (the store records the snapshot's index and term, the log restarts
//! there); anything else means WAL segments were lost and is refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::engine::{Batch, Engine, Space};
use crate::wal::{Wal, WalFs, WalOptions};
use crate::CoreError;

const CONF_STATE: &[u8] = b"raft_conf_state";
/// Index and term of the last snapshot installed into the store.
const SNAPSHOT: &[u8] = b"raft_snapshot";
/// The WAL's directory inside the data dir.
pub const WAL_DIR: &str = "wal";

#[derive(Clone, Debug, Default)]
struct LogState {
    hard: HardState,
    conf: ConfState,
    /// Index and term of the entry just before the first stored one.
    start_index: u64,
    start_term: u64,
    entries: VecDeque<Entry>,
}

impl LogState {
    fn last(&self) -> u64 {
        self.start_index + self.entries.len() as u64
    }
}

/// raft-rs storage over the WAL.
pub struct RaftLog {
    engine: Arc<Engine>,
    st: RwLock<LogState>,
    wal: Arc<Mutex<Wal>>,
    /// Applied index the state machine has reached (what a snapshot export
    /// can describe).
    durable_applied: AtomicU64,
}

fn enc(m: &dyn protobuf::Message) -> Result<Vec<u8>, CoreError> {
    m.write_to_bytes()
        .map_err(|e| CoreError::Encoding(e.to_string()))
}

fn index_term(b: &[u8]) -> Option<(u64, u64)> {
    let i = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let t = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
    Some((i, t))
}

/// Adds the conf state to a state-store batch.
pub fn put_conf_state(batch: &mut Batch, cs: &ConfState) -> Result<(), CoreError> {
    batch.put(Space::Meta, CONF_STATE.to_vec(), enc(cs)?);
    Ok(())
}

impl RaftLog {
    /// Opens the WAL under `data_dir` and reconciles it with the store at
    /// `applied`; a fresh log gets `voters` as its initial configuration.
    pub fn open(
        engine: Arc<Engine>,
        fs: Arc<dyn WalFs>,
        opts: WalOptions,
        voters: &[u64],
        applied: u64,
    ) -> Result<RaftLog, CoreError> {
        let data_dir = engine.dir().to_path_buf();
        let corrupt = |what: String| CoreError::Corrupt {
            path: data_dir.join("meta"),
            what,
        };
        let wal_dir = data_dir.join(WAL_DIR);
        let (mut wal, rec) = Wal::open(fs, &wal_dir, opts)?;
        let fresh = rec.is_empty();
        // An empty store (applied 0) replays a log that still starts at the
        // bootstrap entry (1, see below) from the beginning.
        let covered = |applied: u64| if applied == 0 { 1 } else { applied };
        let mut st = LogState {
            hard: rec.hard_state.clone().unwrap_or_default(),
            start_index: rec.start.0,
            start_term: rec.start.1,
            entries: rec.entries.into(),
            ..Default::default()
        };
        match engine.get(Space::Meta, CONF_STATE)? {
            Some(b) => {
                st.conf = ConfState::parse_from_bytes(&b)
                    .map_err(|e| corrupt(format!("raft conf state: {e}")))?
            }
            None => st.conf.set_voters(voters.to_vec()),
        }
        if fresh && applied == 0 && !voters.is_empty() {
            // A new cluster's log starts after a virtual entry (index 1, term
            // 1) that stands for the bootstrap configuration, so a member
            // that joins later is always caught up by a snapshot (which
            // carries the member table) rather than by replaying a log that
            // never recorded the initial members.
            st.start_index = 1;
            st.start_term = 1;
            st.hard.term = 1;
            st.hard.commit = 1;
            wal.compact(1, 1)?;
            wal.set_hard_state(&st.hard)?;
            wal.sync()?;
        } else if !(fresh && applied == 0)
            && (covered(applied) < st.start_index || applied > st.last())
        {
            let snap = engine
                .get(Space::Meta, SNAPSHOT)?
                .map(|b| index_term(&b).ok_or_else(|| corrupt("raft snapshot marker".into())))
                .transpose()?;
            match snap {
                Some((i, t)) if i == applied && applied > st.last() => {
                    tracing::warn!(
                        index = i,
                        "WAL behind an installed snapshot (crash during install): restarting the log there"
                    );
                    st.hard.term = st.hard.term.max(t);
                    st.hard.commit = i;
                    st.start_index = i;
                    st.start_term = t;
                    st.entries.clear();
                    wal.reset(i, t, &st.hard)?;
                }
                _ => {
                    return Err(CoreError::Corrupt {
                        path: wal_dir,
                        what: format!(
                            "the state store is at applied index {applied} but the WAL holds \
                             {}..={}: WAL segments are missing; refusing to start",
                            st.start_index,
                            st.last()
                        ),
                    })
                }
            }
        }
        // Entries up to the store's applied index were committed; the WAL's
        // hard state may be older (commit advances are synced lazily).
        st.hard.commit = st.hard.commit.max(applied).min(st.last());
        let log = RaftLog {
            engine,
            st: RwLock::new(st),
            wal: Arc::new(Mutex::new(wal)),
            durable_applied: AtomicU64::new(applied),
        };
        let cs = log.read().conf.clone();
        let mut b = log.engine.batch();
        put_conf_state(&mut b, &cs)?;
        log.engine.commit(b)?;
        Ok(log)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LogState> {
        self.st.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LogState> {
        self.st.write().unwrap_or_else(|p| p.into_inner())
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hard_state(&self) -> HardState {
        self.read().hard.clone()
    }

    /// Index of the first stored entry.
    pub fn first(&self) -> u64 {
        self.read().start_index + 1
    }

    pub fn last(&self) -> u64 {
        self.read().last()
    }

    /// The WAL, for the log writer thread (which syncs it).
    pub fn wal_handle(&self) -> Arc<Mutex<Wal>> {
        Arc::clone(&self.wal)
    }

    /// The WAL's directory.
    pub fn wal_dir(&self) -> std::path::PathBuf {
        self.wal().dir().to_path_buf()
    }

    /// Appends (and overwrites conflicting suffixes with) `entries` and
    /// records a new hard state: visible to raft at once, durable after the
    /// next [`RaftLog::sync`].
    pub fn append(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), CoreError> {
        let mut st = self.write();
        let mut wal = self.wal();
        if let Some(first) = entries.first() {
            if first.index <= st.start_index || first.index > st.last() + 1 {
                return Err(CoreError::Raft(format!(
                    "append at {} outside the log {}..={}",
                    first.index,
                    st.start_index + 1,
                    st.last() + 1
                )));
            }
            wal.append(entries)?;
            let keep = (first.index - st.start_index - 1) as usize;
            st.entries.truncate(keep);
            st.entries.extend(entries.iter().cloned());
        }
        if let Some(hs) = hs {
            wal.set_hard_state(hs)?;
            st.hard = hs.clone();
        }
        Ok(())
    }

    /// Records a higher commit index (durable with the next sync; a lost
    /// commit index is learned again from the leader or the store).
    pub fn set_commit(&self, commit: u64) -> Result<(), CoreError> {
        let mut hs = self.hard_state();
        if commit <= hs.commit {
            return Ok(());
        }
        hs.commit = commit;
        self.append(&[], Some(&hs))
    }

    /// The group commit: makes every append so far durable.
    pub fn sync(&self) -> Result<(), CoreError> {
        self.wal().sync()
    }

    /// Updates the in-memory conf state (the caller writes it to the store
    /// with [`put_conf_state`] in the batch of the conf change's apply).
    pub fn set_conf_state(&self, cs: ConfState) {
        self.write().conf = cs;
    }

    /// Drops entries up to and including `index`, keeping its term for log
    /// matching. `index` must be applied and durable in the state store.
    pub fn compact(&self, index: u64) -> Result<(), CoreError> {
        let term = self
            .term(index)
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        let mut st = self.write();
        if index <= st.start_index || index > st.last() {
            return Ok(());
        }
        self.wal().compact(index, term)?;
        let n = (index - st.start_index) as usize;
        st.entries.drain(..n);
        st.start_index = index;
        st.start_term = term;
        Ok(())
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
        let st = self.read();
        if low <= st.start_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > st.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        let from = (low - st.start_index - 1) as usize;
        let to = (high - st.start_index - 1) as usize;
        for e in st.entries.range(from..to) {
            size += e.compute_size() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let st = self.read();
        if idx == st.start_index {
            return Ok(st.start_term);
        }
        if idx < st.start_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        st.entries
            .get((idx - st.start_index - 1) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().start_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last())
    }

    /// Describes the state at the applied index; the raft loop streams the
    /// data (and re-stamps the index to what it exports).
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

    /// Adds a snapshot's raft metadata to the store batch that installs it:
    /// the conf state, and the snapshot's index and term, from which the log
    /// restarts if the WAL reset after the batch does not happen.
    pub fn snapshot_into(
        &self,
        batch: &mut Batch,
        meta: &raft::prelude::SnapshotMetadata,
    ) -> Result<(), CoreError> {
        put_conf_state(batch, meta.get_conf_state())?;
        let mut it = meta.index.to_be_bytes().to_vec();
        it.extend_from_slice(&meta.term.to_be_bytes());
        batch.put(Space::Meta, SNAPSHOT.to_vec(), it);
        Ok(())
    }

    /// After the snapshot's store batch is durable: the log restarts after
    /// the snapshot index, durably.
    pub fn snapshot_installed(
        &self,
        meta: &raft::prelude::SnapshotMetadata,
    ) -> Result<(), CoreError> {
        let mut st = self.write();
        st.hard.term = st.hard.term.max(meta.term);
        st.hard.commit = meta.index;
        st.conf = meta.get_conf_state().clone();
        st.start_index = meta.index;
        st.start_term = meta.term;
        st.entries.clear();
        self.wal().reset(meta.index, meta.term, &st.hard)?;
        self.durable_applied.store(meta.index, Ordering::Release);
        Ok(())
    }

    /// Makes every state-store batch committed so far durable (fjall
    /// persist): what must precede a checkpoint and a log truncation.
    pub fn sync_store(&self) -> Result<(), CoreError> {
        self.engine.sync()
    }
}
