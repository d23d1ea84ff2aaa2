//! Import: writing another store's keys or znodes into janus with their
//! own revisions and stats, for a live migration from ZooKeeper or etcd.
//!
//! An import is a sequence of [`Command::Import`](crate::Command) commands
//! through the raft log like any write (D7):
//!
//! - [`ImportOp::Begin`] takes the *migration lock*: a store that holds
//!   live keys is refused unless `force` (which deletes them first), and
//!   from then on client writes of both protocols are refused with
//!   [`crate::KvError::MigrationInProgress`] /
//!   [`crate::ZkError::MigrationInProgress`] ([`refusal`]), so nothing but
//!   the import takes revisions while the source still serves.
//! - [`ImportOp::Batch`] writes keys and znodes with the revisions, version,
//!   times, ACL and tree counters the source reported (D3: czxid =
//!   create_revision, mzxid = mod_revision, pzxid and the create counter of
//!   D5 per parent), and raises the store revision to the source's
//!   revision (ZooKeeper: its last zxid), so a client that saw the source's
//!   zxids or revisions is never ahead of janus. A batch is checked whole
//!   before anything is written: it applies completely or not at all. An
//!   item at or below the revision janus already holds for that key is
//!   skipped, so a batch sent twice (a resumed import) changes nothing.
//! - [`ImportOp::End`] releases the lock.
//!
//! Under the lock janus's own housekeeping writes wait too: the leader's
//! container/TTL reaping is refused, and so is the revoke of an expired
//! lease that still has keys (retried by the leader, it succeeds once the
//! lock is released), because the source decides those deletions and the
//! migration applies them at the source's revisions. Sessions and leases
//! without keys, reads, watches and compaction go on.
//!
//! Revisions can be large (a ZooKeeper zxid carries its epoch in the high 32
//! bits) and sparse; several keys may share one revision (a ZooKeeper
//! multi, an etcd txn), each at its own sub-revision, as a txn writes them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};
use crate::engine::{Engine, Space};
use crate::kv::{KeyValue, RequestOp};
use crate::mvcc::{Live, Record, Rev};
use crate::state::{State, Wtx};
use crate::watch::{Event, EventKind};
use crate::znode::{NodeKind, ZMeta, ZkWriteResult};
use crate::{CoreError, KvError, ZkError};

/// Meta key holding the migration lock (its [`Lock`], postcard).
const META_MIGRATION: &[u8] = b"migration";

/// One step of an import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOp {
    /// Take the migration lock for `source` (a description for operators).
    Begin {
        source: String,
        force: bool,
    },
    Batch(ImportBatch),
    /// Release the migration lock.
    End,
}

/// Writes applied together, in one revision step of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportBatch {
    /// The store revision after the batch is at least this.
    pub revision: i64,
    /// ZooKeeper import: parents' create counters and pzxid change only
    /// through [`ImportItem::Tree`] and [`ImportKey::tree`], never as a side
    /// effect of a child's create or delete (the source's counters are the
    /// truth). An etcd import leaves this off: keys move the counters as an
    /// etcd write does.
    pub explicit_tree: bool,
    pub items: Vec<ImportItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportItem {
    Put(ImportKey),
    /// The key was deleted at `revision`.
    Delete {
        key: Vec<u8>,
        revision: i64,
    },
    /// A znode's child counters: creates (names the next sequential child,
    /// D5) and pzxid.
    Tree {
        path: Vec<u8>,
        creates: i32,
        pzxid: i64,
    },
}

/// A key as the source holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportKey {
    pub key: Vec<u8>,
    /// `None`: ZooKeeper null data.
    pub value: Option<Vec<u8>>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// etcd version (ZooKeeper version + 1, D3).
    pub version: i64,
    /// A lease that exists in janus (granted before), or 0.
    pub lease: i64,
    pub ctime: i64,
    pub mtime: i64,
    /// ACL, aversion, node kind; `None` for etcd keys (they keep the
    /// znode metadata janus holds, D14) .
    pub znode: Option<ZMeta>,
    /// This node's own child counters (creates, pzxid), ZooKeeper only.
    pub tree: Option<(i32, i64)>,
}

/// The migration lock, persisted in the meta keyspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub source: String,
    /// The store revision when the lock was taken: imported writes must be
    /// above it.
    pub base: i64,
}

/// Answer to an [`ImportOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReply {
    /// Store revision after the op.
    pub revision: i64,
    /// Items written / skipped as already applied.
    pub applied: u64,
    pub skipped: u64,
}

/// Why an import op was refused (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ImportError {
    #[error("the target is not empty ({keys} keys); use --force to delete them and import")]
    NotEmpty { keys: u64 },
    #[error("a migration from {from} already holds the target")]
    Locked { from: String },
    #[error("no migration is in progress on the target (begin one first)")]
    NotLocked,
    #[error("{key}: {why}")]
    BadItem { key: String, why: String },
}

/// In-memory import bookkeeping of the state machine.
#[derive(Debug, Default)]
pub struct ImportState {
    pub lock: Option<Lock>,
    /// Next free sub-revision per revision written during the import
    /// (several keys at one revision); rebuilt from the store when absent.
    next_sub: BTreeMap<i64, u32>,
}

impl ImportState {
    pub(crate) fn load(engine: &Engine) -> Result<ImportState, CoreError> {
        let lock = match engine.get(Space::Meta, META_MIGRATION)? {
            None => None,
            Some(b) => Some(postcard::from_bytes(&b).map_err(|e| CoreError::Corrupt {
                path: engine.dir().join("meta"),
                what: format!("migration lock: {e}"),
            })?),
        };
        Ok(ImportState {
            lock,
            next_sub: BTreeMap::new(),
        })
    }
}

/// What janus answers a client write while a migration holds the store, or
/// `None` when the command may run. Reads, sessions/leases without keys,
/// compaction and cluster changes go on; anything that would write a key
/// (and take a revision from the source's sequence) is refused.
pub(crate) fn refusal(st: &State, command: &Command) -> Option<CommandResult> {
    st.import.lock.as_ref()?;
    let writes = |ops: &[RequestOp]| {
        ops.iter().any(|o| match o {
            RequestOp::Range(_) => false,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
            RequestOp::Txn(t) => !t.success.is_empty() || !t.failure.is_empty(),
        })
    };
    let err = KvError::MigrationInProgress;
    Some(match command {
        Command::Put(_) => CommandResult::Put(Err(err)),
        Command::DeleteRange(_) => CommandResult::DeleteRange(Err(err)),
        Command::Txn(t) if writes(&t.success) || writes(&t.failure) => CommandResult::Txn(Err(err)),
        Command::LeaseRevoke { id } if st.leases.get(id).is_some_and(|l| !l.keys.is_empty()) => {
            CommandResult::LeaseRevoke(Err(err))
        }
        Command::Zk { ops, .. }
            if ops
                .iter()
                .any(|o| !matches!(o, crate::znode::ZkOp::Check { .. })) =>
        {
            CommandResult::Zk(ZkWriteResult::Failed {
                index: 0,
                error: ZkError::MigrationInProgress,
            })
        }
        Command::ZkReap { .. } => CommandResult::Reaped(false),
        Command::As { command, .. } => return refusal(st, command),
        _ => return None,
    })
}

impl State {
    /// Applies one import op into `w`. Checks run before the first write:
    /// an `Err` has changed nothing.
    pub(crate) fn apply_import(
        &mut self,
        w: &mut Wtx,
        op: &ImportOp,
    ) -> Result<Result<ImportReply, ImportError>, CoreError> {
        match op {
            ImportOp::Begin { source, force } => self.import_begin(w, source, *force),
            ImportOp::Batch(b) => self.import_batch(w, b),
            ImportOp::End => {
                if self.import.lock.take().is_none() {
                    return Ok(Err(ImportError::NotLocked));
                }
                self.import.next_sub.clear();
                w.batch.remove(Space::Meta, META_MIGRATION.to_vec());
                Ok(Ok(self.import_reply(0, 0)))
            }
        }
    }

    fn import_reply(&self, applied: u64, skipped: u64) -> ImportReply {
        ImportReply {
            revision: self.revision,
            applied,
            skipped,
        }
    }

    fn live_key_count(&self) -> u64 {
        self.keys.values().filter(|k| k.live.is_some()).count() as u64
    }

    fn import_begin(
        &mut self,
        w: &mut Wtx,
        source: &str,
        force: bool,
    ) -> Result<Result<ImportReply, ImportError>, CoreError> {
        if let Some(l) = &self.import.lock {
            return Ok(Err(ImportError::Locked {
                from: l.source.clone(),
            }));
        }
        let keys = self.live_key_count();
        if keys > 0 && !force {
            return Ok(Err(ImportError::NotEmpty { keys }));
        }
        let mut base = self.revision;
        if keys > 0 {
            // --force: the store's keys go first, at one revision of janus's
            // own, below anything imported.
            let live: Vec<Vec<u8>> = self
                .keys
                .iter()
                .filter(|(_, k)| k.live.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            for k in live {
                self.delete_key(w, &k)?;
            }
            base = w.main;
        }
        let lock = Lock {
            source: source.to_string(),
            base,
        };
        w.batch.put(
            Space::Meta,
            META_MIGRATION.to_vec(),
            postcard::to_stdvec(&lock).unwrap_or_default(),
        );
        self.import.lock = Some(lock);
        self.import.next_sub.clear();
        Ok(Ok(ImportReply {
            revision: base,
            applied: 0,
            skipped: 0,
        }))
    }

    /// The newest revision janus holds for `key` (live or tombstone).
    fn last_rev(&self, key: &[u8]) -> i64 {
        self.keys
            .get(key)
            .and_then(|k| k.revs.last())
            .map_or(0, |(r, _)| r.main)
    }

    /// Checks a batch whole; returns per item whether it is to be written
    /// (false: already applied).
    fn check_batch(&self, b: &ImportBatch) -> Result<Vec<bool>, ImportError> {
        let Some(lock) = &self.import.lock else {
            return Err(ImportError::NotLocked);
        };
        let bad = |key: &[u8], why: String| ImportError::BadItem {
            key: String::from_utf8_lossy(key).into_owned(),
            why,
        };
        // Per key: the newest revision once the earlier items are applied.
        let mut last: HashMap<&[u8], i64> = HashMap::new();
        let mut live: HashMap<&[u8], bool> = HashMap::new();
        let mut fresh = Vec::with_capacity(b.items.len());
        for item in &b.items {
            let (key, rev) = match item {
                ImportItem::Put(k) => (k.key.as_slice(), k.mod_revision),
                ImportItem::Delete { key, revision } => (key.as_slice(), *revision),
                ImportItem::Tree { path, pzxid, .. } => {
                    if *pzxid < 0 {
                        return Err(bad(path, format!("negative pzxid {pzxid}")));
                    }
                    fresh.push(true);
                    continue;
                }
            };
            if key.is_empty() {
                return Err(bad(key, "empty key".into()));
            }
            let prev = *last.entry(key).or_insert_with(|| self.last_rev(key));
            if rev <= prev {
                fresh.push(false);
                continue;
            }
            if rev <= lock.base {
                return Err(bad(
                    key,
                    format!(
                        "revision {rev} is not above the target's revision {} when the migration began",
                        lock.base
                    ),
                ));
            }
            match item {
                ImportItem::Put(k) => {
                    if k.create_revision <= 0 || k.create_revision > k.mod_revision {
                        return Err(bad(
                            key,
                            format!(
                                "create revision {} outside 1..={}",
                                k.create_revision, k.mod_revision
                            ),
                        ));
                    }
                    let live_create = self
                        .keys
                        .get(key)
                        .and_then(|x| x.live)
                        .map(|l| l.create_revision);
                    if live_create.is_some_and(|c| c != k.create_revision)
                        && k.create_revision <= prev
                    {
                        return Err(bad(
                            key,
                            format!(
                                "created again at revision {}, not above its last revision {prev}",
                                k.create_revision
                            ),
                        ));
                    }
                    if k.version < 1 {
                        return Err(bad(key, format!("version {} below 1", k.version)));
                    }
                    if let Some(m) = &k.znode {
                        if crate::znode::acl::fixup(&m.acl, &[]).as_ref() != Ok(&m.acl) {
                            return Err(bad(
                                key,
                                format!(
                                    "ACL {:?} cannot be represented (janus enforces world:anyone, digest, ip and sasl)",
                                    m.acl
                                ),
                            ));
                        }
                    }
                    if k.znode.as_ref().is_some_and(|m| !import_kind_ok(m)) {
                        return Err(bad(key, "TTL node with a TTL of 0 or less".into()));
                    }
                    if k.lease != 0 && !self.leases.contains_key(&k.lease) {
                        return Err(bad(key, format!("lease {:x} not granted", k.lease)));
                    }
                    live.insert(key, true);
                }
                ImportItem::Delete { .. } => {
                    let was = *live
                        .entry(key)
                        .or_insert_with(|| self.keys.get(key).is_some_and(|k| k.live.is_some()));
                    if !was {
                        // Nothing to delete: a deletion janus already saw.
                        fresh.push(false);
                        continue;
                    }
                    live.insert(key, false);
                }
                ImportItem::Tree { .. } => {}
            }
            last.insert(key, rev);
            fresh.push(true);
        }
        Ok(fresh)
    }

    fn import_batch(
        &mut self,
        w: &mut Wtx,
        b: &ImportBatch,
    ) -> Result<Result<ImportReply, ImportError>, CoreError> {
        let fresh = match self.check_batch(b) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let target = b.revision.max(self.revision);
        // Counters of the parents this batch touches, as they were: with
        // explicit_tree they are put back after the adds and removes.
        let mut saved: HashMap<Vec<u8>, Option<(i32, i64)>> = HashMap::new();
        let (mut applied, mut skipped) = (0u64, 0u64);
        let mut top = target;
        for (item, fresh) in b.items.iter().zip(fresh) {
            if !fresh {
                skipped += 1;
                continue;
            }
            applied += 1;
            if b.explicit_tree {
                let key = match item {
                    ImportItem::Put(k) => k.key.as_slice(),
                    ImportItem::Delete { key, .. } => key.as_slice(),
                    ImportItem::Tree { .. } => &[],
                };
                if let Some(parent) = crate::znode::path::parent(key) {
                    saved
                        .entry(parent.to_vec())
                        .or_insert_with(|| self.tree.counters(parent));
                }
            }
            match item {
                ImportItem::Put(k) => {
                    top = top.max(k.mod_revision);
                    self.import_put(w, k)?;
                }
                ImportItem::Delete { key, revision } => {
                    top = top.max(*revision);
                    w.main = *revision;
                    w.sub = self.next_sub(w, *revision)?;
                    self.delete_key(w, key)?;
                    self.import.next_sub.insert(*revision, w.sub);
                }
                ImportItem::Tree { .. } => {}
            }
        }
        for (path, before) in saved {
            if let Some((creates, pzxid)) = before {
                self.tree.set_counters(w, &path, creates, pzxid);
            }
        }
        for item in &b.items {
            match item {
                ImportItem::Tree {
                    path,
                    creates,
                    pzxid,
                } => self.tree.set_counters(w, path, *creates, *pzxid),
                ImportItem::Put(ImportKey {
                    key,
                    tree: Some((creates, pzxid)),
                    ..
                }) => self.tree.set_counters(w, key, *creates, *pzxid),
                _ => {}
            }
        }
        // The store revision: the source's, never lower than janus's.
        w.main = top;
        w.sub = w.sub.max(1);
        let mut reply = self.import_reply(applied, skipped);
        reply.revision = top;
        Ok(Ok(reply))
    }

    /// The first sub-revision of `main` nobody wrote yet.
    fn next_sub(&mut self, w: &Wtx, main: i64) -> Result<u32, CoreError> {
        if let Some(s) = self.import.next_sub.get(&main) {
            return Ok(*s);
        }
        let mut next = 0u32;
        let from = Rev::new(main, 0).to_bytes();
        let to = Rev::new(main.saturating_add(1), 0).to_bytes();
        if let Some(item) = self.engine.scan(Space::Revs, from..to, true).next() {
            let (k, _) = item?;
            if let Some(r) = Rev::from_bytes(&k) {
                next = r.sub.saturating_add(1);
            }
        }
        for r in w.written.keys().filter(|r| r.main == main) {
            next = next.max(r.sub.saturating_add(1));
        }
        Ok(next)
    }

    /// Writes one key exactly as the source holds it. A key janus holds
    /// from an earlier incarnation (deleted and created again on the
    /// source between two reads) gets its tombstone first, at the new
    /// create revision.
    fn import_put(&mut self, w: &mut Wtx, k: &ImportKey) -> Result<(), CoreError> {
        let old = self.keys.get(&k.key).and_then(|x| x.live);
        if old.is_some_and(|l| l.create_revision != k.create_revision) {
            w.main = k.create_revision;
            w.sub = self.next_sub(w, k.create_revision)?;
            self.delete_key(w, &k.key)?;
            self.import.next_sub.insert(k.create_revision, w.sub);
        }
        let sub = self.next_sub(w, k.mod_revision)?;
        let rev = Rev::new(k.mod_revision, sub);
        self.import
            .next_sub
            .insert(k.mod_revision, sub.saturating_add(1));
        w.main = k.mod_revision;
        let prev_live = self.keys.get(&k.key).and_then(|x| x.live);
        let prev = match prev_live {
            Some(l) => Some(self.record(Some(w), l.mod_rev)?.to_kv(l.mod_rev.main)),
            None => None,
        };
        let rec = Record {
            key: k.key.clone(),
            null_data: k.value.is_none(),
            value: k.value.clone().unwrap_or_default(),
            create_revision: k.create_revision,
            version: k.version,
            lease: k.lease,
            ctime: k.ctime,
            mtime: k.mtime,
            tombstone: false,
        };
        w.batch.put(Space::Revs, rev.to_bytes(), rec.encode());
        let ki = self.keys.entry(k.key.clone()).or_default();
        ki.revs.push((rev, false));
        ki.live = Some(Live {
            create_revision: k.create_revision,
            mod_rev: rev,
            version: k.version,
            lease: k.lease,
        });
        let prev_lease = prev_live.map_or(0, |l| l.lease);
        if prev_lease != k.lease {
            if let Some(l) = self.leases.get_mut(&prev_lease) {
                l.keys.remove(&k.key);
            }
        }
        if let Some(l) = self.leases.get_mut(&k.lease) {
            l.keys.insert(k.key.clone());
        }
        let kv: KeyValue = rec.to_kv(rev.main);
        w.written.insert(rev, rec);
        if prev.is_none() {
            let keys = &self.keys;
            self.tree.add(w, &k.key, |x| {
                keys.get(x).is_some_and(|ki| ki.live.is_some())
            });
        }
        if let Some(meta) = &k.znode {
            self.write_zmeta(w, &k.key, meta.clone());
        }
        w.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev,
        });
        // next_rev of later writes in this command continues after us.
        w.sub = sub.saturating_add(1);
        Ok(())
    }
}

/// Whether a znode with this metadata may be imported as is.
fn import_kind_ok(meta: &ZMeta) -> bool {
    !matches!(meta.kind, NodeKind::Ttl(t) if t <= 0)
}

/// What the import service reports about the store before a migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportStatus {
    pub revision: i64,
    pub live_keys: u64,
    pub lock: Option<Lock>,
}

impl crate::Node {
    /// The live containers and TTL nodes whose path starts with `prefix`,
    /// in path order, with their kinds: what a migration compares with the
    /// source's kinds (ZooKeeper clients are never told a node's kind).
    pub fn special_kinds(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, NodeKind)>, CoreError> {
        let st = self.state();
        let mut out = Vec::new();
        for k in st.specials.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if st.keys.get(k).and_then(|x| x.live).is_none() {
                continue;
            }
            out.push((k.clone(), st.zmeta(None, k)?.kind));
        }
        Ok(out)
    }

    /// The store's revision, its number of live keys and the migration lock.
    pub fn import_status(&self) -> ImportStatus {
        let st = self.state();
        ImportStatus {
            revision: st.revision,
            live_keys: st.live_key_count(),
            lock: st.import.lock.clone(),
        }
    }
}
