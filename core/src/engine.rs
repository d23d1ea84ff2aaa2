//! The storage engine: every fjall call of janus lives in this file (D10), so
//! an engine change touches one module.
//!
//! One fjall database per member, with one keyspace per concern:
//! - `meta`: conf state, last installed snapshot, applied index, compaction
//!   point, member identity;
//! - `revs`: MVCC records by (main revision, sub revision), big-endian;
//! - `leases`: lease id → granted TTL;
//! - `znodes`: path → ACL / aversion / node kind;
//! - `tree`: path → child-create count / pzxid of parents (the stat
//!   cversion is derived from the create count, D5).
//!
//! The raft log is not here: it lives in the WAL ([`crate::wal`], D10).
//!
//! Durability: batches are committed without syncing; [`Engine::sync`]
//! (`PersistMode::SyncData`) makes everything committed before it durable.
//! Nothing on the write path waits for it (the WAL is the write path's
//! sync); the raft loop calls it before it records a checkpoint and
//! truncates the WAL, and on a clean stop.

use std::collections::HashMap;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::CoreError;

/// Block cache shared by all keyspaces.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Most bytes all journals may take before fjall flushes the memtables
/// that pin the oldest (fjall's floor: 64 MiB).
const JOURNAL_BYTES: u64 = 128 * 1024 * 1024;
/// Largest memtable of one keyspace before it is flushed to a table.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// A keyspace of the member's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Meta,
    Revs,
    Leases,
    Znodes,
    Tree,
}

impl Space {
    const ALL: [Space; 5] = [
        Space::Meta,
        Space::Revs,
        Space::Leases,
        Space::Znodes,
        Space::Tree,
    ];

    /// Keyspaces in a state export (all of them).
    pub const EXPORTED: [Space; 5] = [
        Space::Meta,
        Space::Revs,
        Space::Leases,
        Space::Znodes,
        Space::Tree,
    ];

    fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Revs => "revs",
            Space::Leases => "leases",
            Space::Znodes => "znodes",
            Space::Tree => "tree",
        }
    }
}

/// The member's database.
pub struct Engine {
    db: Database,
    dir: PathBuf,
    spaces: Vec<Keyspace>,
}

/// A set of writes applied atomically by [`Engine::commit`].
///
/// Kept as a list of operations until the commit so that the writes of
/// several commands can be gathered into one commit ([`Batch::append`]): the
/// apply path commits a whole group of raft entries at once (D10). A key
/// written more than once keeps its last write.
pub struct Batch {
    ops: Vec<(Space, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put(&mut self, space: Space, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((space, key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, space: Space, key: impl Into<Vec<u8>>) {
        self.ops.push((space, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `other`'s writes after this batch's own.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

impl Engine {
    /// Opens (or creates) the database under `dir`. A database that cannot
    /// be recovered is an error naming the directory and fjall's reason,
    /// never a silent reset.
    pub fn open(dir: &Path) -> Result<Engine, CoreError> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::storage(dir, e))?;
        let db = Database::builder(dir)
            // We decide when to fsync (the WAL carries durability).
            .manual_journal_persist(true)
            // Memory bounds (100k keys of 256 B must fit in 100 MB RSS):
            // a small block cache and memtables flushed early; the hot
            // data (latest revisions) is indexed in memory by the state
            // machine anyway.
            .cache_size(CACHE_BYTES)
            // fjall deletes a sealed journal only once every keyspace has
            // flushed the memtable that covers it, and the small keyspaces
            // (applied index, leases) fill theirs slowly: with fjall's
            // default 512 MiB limit, journals were a third of the disk a
            // million keys took. At the limit fjall flushes those
            // memtables instead.
            .max_journaling_size(JOURNAL_BYTES)
            .open()
            .map_err(|e| CoreError::storage(dir, format!("cannot open database: {e}")))?;
        let mut spaces = Vec::with_capacity(Space::ALL.len());
        for s in Space::ALL {
            let ks = db
                .keyspace(s.name(), || {
                    KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
                })
                .map_err(|e| CoreError::storage(dir.join(s.name()), e))?;
            spaces.push(ks);
        }
        Ok(Engine {
            db,
            dir: dir.to_path_buf(),
            spaces,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn space(&self, s: Space) -> &Keyspace {
        // Index order matches Space::ALL.
        let i = Space::ALL.iter().position(|x| *x == s).unwrap_or(0);
        &self.spaces[i]
    }

    fn err(&self, s: Space, e: impl std::fmt::Display) -> CoreError {
        CoreError::storage(self.dir.join(s.name()), e)
    }

    pub fn get(&self, s: Space, key: &[u8]) -> Result<Option<Vec<u8>>, CoreError> {
        self.space(s)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(s, e))
    }

    /// Key/value pairs of `s` within `range`, in key order (or reversed).
    pub fn scan<R: RangeBounds<Vec<u8>>>(
        &self,
        s: Space,
        range: R,
        reverse: bool,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), CoreError>> + '_ {
        let it = self.space(s).range(range);
        let it: Box<dyn Iterator<Item = fjall::Guard>> = if reverse {
            Box::new(it.rev())
        } else {
            Box::new(it)
        };
        it.map(move |g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| self.err(s, e))
        })
    }

    /// Every pair of a keyspace, in key order.
    pub fn scan_all(
        &self,
        s: Space,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), CoreError>> + '_ {
        self.space(s).iter().map(move |g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| self.err(s, e))
        })
    }

    pub fn batch(self: &Arc<Engine>) -> Batch {
        Batch { ops: Vec::new() }
    }

    /// Applies a batch atomically (visible at once, durable after the next
    /// [`Engine::sync`]).
    pub fn commit(&self, batch: Batch) -> Result<(), CoreError> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        // The last write of each key wins; earlier ones are not handed to
        // fjall at all, so its batch never holds one key twice.
        let mut keep = vec![false; batch.ops.len()];
        {
            let mut last: HashMap<(Space, &[u8]), usize> = HashMap::with_capacity(batch.ops.len());
            for (i, (space, key, _)) in batch.ops.iter().enumerate() {
                last.insert((*space, key.as_slice()), i);
            }
            for i in last.into_values() {
                keep[i] = true;
            }
        }
        let mut b = self.db.batch();
        for ((space, key, value), keep) in batch.ops.into_iter().zip(keep) {
            if !keep {
                continue;
            }
            let ks = self.space(space);
            match value {
                Some(v) => b.insert(ks, key, v),
                None => b.remove(ks, key),
            }
        }
        b.commit().map_err(|e| CoreError::storage(&self.dir, e))
    }

    /// Makes every committed batch durable (fsync of the journal data).
    pub fn sync(&self) -> Result<(), CoreError> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(|e| CoreError::storage(&self.dir, e))
    }

    /// A consistent point-in-time view of every keyspace (fjall snapshot),
    /// readable while writes go on.
    pub fn view(self: &Arc<Engine>) -> View {
        View {
            engine: Arc::clone(self),
            snap: self.db.snapshot(),
        }
    }

    /// Rewrites every keyspace's tables, dropping overwritten and deleted
    /// data (etcd's defragment). Memtables are flushed first: until then
    /// their writes (tombstones of compacted revisions included) live in
    /// the journal, which fjall can only delete once every keyspace has
    /// flushed past it.
    pub fn major_compact(&self) -> Result<(), CoreError> {
        for (s, ks) in Space::ALL.iter().zip(&self.spaces) {
            ks.rotate_memtable_and_wait().map_err(|e| self.err(*s, e))?;
        }
        for (s, ks) in Space::ALL.iter().zip(&self.spaces) {
            ks.major_compact().map_err(|e| self.err(*s, e))?;
        }
        // fjall frees the replaced tables (and sealed journals) only in the
        // maintenance of a later memtable rotation, which an empty memtable
        // never has: write one member-local key and rotate, so the space
        // is given back now rather than at some later flush.
        let meta = self.space(Space::Meta);
        meta.insert(GC_MARK, b"")
            .map_err(|e| self.err(Space::Meta, e))?;
        meta.rotate_memtable_and_wait()
            .map_err(|e| self.err(Space::Meta, e))?;
        Ok(())
    }

    /// Bytes the database occupies on disk.
    pub fn disk_size(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

/// The meta key a defragment writes to make fjall free replaced files
/// (member-local: never exported, [`crate::snapshot`]).
pub const GC_MARK: &[u8] = b"raft_defragment_gc";

/// A consistent read-only view of the database.
pub struct View {
    engine: Arc<Engine>,
    snap: fjall::Snapshot,
}

impl View {
    /// Every pair of `s` as of the view, in key order.
    pub fn scan_all(
        &self,
        s: Space,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), CoreError>> + Send + 'static {
        use fjall::Readable;
        let engine = Arc::clone(&self.engine);
        self.snap.iter(self.engine.space(s)).map(move |g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| engine.err(s, e))
        })
    }

    /// The pairs of `s` within `range` as of the view, in key order.
    pub fn scan<R: RangeBounds<Vec<u8>>>(
        &self,
        s: Space,
        range: R,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), CoreError>> + Send + 'static {
        use fjall::Readable;
        let engine = Arc::clone(&self.engine);
        self.snap.range(self.engine.space(s), range).map(move |g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| engine.err(s, e))
        })
    }

    pub fn get(&self, s: Space, key: &[u8]) -> Result<Option<Vec<u8>>, CoreError> {
        use fjall::Readable;
        self.snap
            .get(self.engine.space(s), key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.engine.err(s, e))
    }
}
