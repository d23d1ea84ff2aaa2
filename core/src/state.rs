//! The state machine: in-memory indexes over the fjall store, and the two
//! write primitives ([`State::put_key_from`], [`State::delete_key`]) through which
//! every change of every protocol goes, so the MVCC history, lease
//! attachments, the ZooKeeper tree (D2) and watch events stay consistent
//! whichever protocol wrote.
//!
//! Apply is deterministic: it depends only on the state and the command
//! (time comes from the proposal). Each applied entry is one fjall batch
//! holding its state changes and the applied index, or, inside a group
//! ([`State::begin_group`]), part of one batch for all of the group's
//! entries (D10). A proposal applied before runs no second time
//! ([`crate::dedup`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{Batch, Engine, Space};
use crate::kv::KeyValue;
use crate::mvcc::{KeyIndex, Live, Record, Rev};
use crate::watch::{Event, EventKind, Hub};
use crate::znode::fifo::Fifo;
use crate::znode::{Tree, ZMeta};
use crate::{CoreError, KvError};

/// Meta keys (in [`Space::Meta`]) owned by the state machine.
pub(crate) const META_APPLIED: &[u8] = b"applied_index";
pub(crate) const META_REVISION: &[u8] = b"revision";
pub(crate) const META_COMPACT: &[u8] = b"compact_revision";

/// A lease as the state machine knows it (expiry deadlines are the leader's
/// business, see node.rs).
#[derive(Clone, Debug, Default)]
pub struct Lease {
    pub ttl_ms: i64,
    pub keys: BTreeSet<Vec<u8>>,
    /// FIFO order of this session's connections' writes.
    pub zk_fifo: Fifo,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub ttl_ms: i64,
    pub zk_fifo: Fifo,
}

/// The layout of earlier builds (one write counter per session, which a
/// per-connection [`Fifo`] replaces: it decodes as an empty one).
#[derive(Deserialize)]
struct LeaseRecordV0 {
    ttl_ms: i64,
    _zk_seq: u64,
}

impl LeaseRecord {
    pub(crate) fn decode(b: &[u8]) -> Result<LeaseRecord, postcard::Error> {
        postcard::from_bytes(b).or_else(|e| {
            postcard::from_bytes::<LeaseRecordV0>(b)
                .map(|o| LeaseRecord {
                    ttl_ms: o.ttl_ms,
                    zk_fifo: Fifo::default(),
                })
                .map_err(|_| e)
        })
    }
}

/// The writes of one command in progress: its revision, the batch, and the
/// events to publish once the batch is committed.
pub struct Wtx {
    pub main: i64,
    pub sub: u32,
    pub now_ms: i64,
    pub batch: Batch,
    pub events: Vec<Event>,
    /// Records written by this command, readable before the batch commits.
    pub written: HashMap<Rev, Record>,
    /// ZooKeeper metadata written by this command (None = removed).
    pub zmeta: HashMap<Vec<u8>, Option<ZMeta>>,
}

impl Wtx {
    /// Whether this command changed the key-value store.
    pub fn wrote(&self) -> bool {
        self.sub > 0
    }
    fn next_rev(&mut self) -> Rev {
        let r = Rev::new(self.main, self.sub);
        self.sub += 1;
        r
    }
}

/// A command failed: either the state machine's answer to the client, or a
/// storage failure that must stop the member.
#[derive(Debug)]
pub enum Fail {
    Kv(KvError),
    Core(CoreError),
}

impl From<KvError> for Fail {
    fn from(e: KvError) -> Self {
        Fail::Kv(e)
    }
}

impl From<CoreError> for Fail {
    fn from(e: CoreError) -> Self {
        Fail::Core(e)
    }
}

impl From<Fail> for KvError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Kv(e) => e,
            Fail::Core(e) => e.into(),
        }
    }
}

pub struct State {
    pub engine: Arc<Engine>,
    pub revision: i64,
    pub compact_revision: i64,
    pub applied_index: u64,
    pub keys: BTreeMap<Vec<u8>, KeyIndex>,
    pub leases: BTreeMap<i64, Lease>,
    pub tree: Tree,
    /// Containers and TTL nodes, for the leader's reaper.
    pub specials: BTreeSet<Vec<u8>>,
    pub members: BTreeMap<u64, crate::members::Member>,
    /// Members' ZooKeeper dynamic-config attributes, by member id.
    pub zk_servers: BTreeMap<u64, crate::members::ZkServer>,
    /// Raft index of the last membership change (ZooKeeper's config
    /// version); 0 for the bootstrap configuration.
    pub config_index: u64,
    /// When the last membership change was proposed (wall-clock ms carried
    /// in its entry; 0 for the bootstrap configuration): the mtime of
    /// ZooKeeper's `/zookeeper/config`.
    pub config_time_ms: i64,
    /// etcd's users, roles and permissions (D14).
    pub auth: crate::auth::AuthStore,
    /// Raised alarms (replicated, [`crate::alarm`]).
    pub alarms: crate::alarm::Alarms,
    /// Which proposals were applied, so a copy committed twice runs once.
    pub dedup: crate::dedup::Applied,
    pub hub: Arc<Hub>,
    /// The migration lock and import bookkeeping ([`crate::import`]).
    pub import: crate::import::ImportState,
    /// Writes of the commands applied since [`State::begin_group`], not yet
    /// in the store.
    group: Option<Group>,
}

/// Commands applied but not yet committed to the store: a group of raft
/// entries is committed in one fjall batch (D10). Later commands of the
/// group read what earlier ones wrote from here, as a command reads its own
/// writes from its [`Wtx`].
struct Group {
    batch: Batch,
    written: HashMap<Rev, Record>,
    zmeta: HashMap<Vec<u8>, Option<ZMeta>>,
    /// Each command's events, in apply order: the hub takes one revision's
    /// events at a time.
    events: Vec<Vec<Event>>,
    /// Proposers whose dedup windows moved in this group. Like the applied
    /// index and the revision, a window is last-write-wins, so it is
    /// written once when the group commits rather than once per command
    /// (a window is ~1 KiB: per command it was most of the store's bytes).
    dedup_dirty: std::collections::BTreeSet<u64>,
}

fn corrupt(engine: &Engine, space: &str, what: impl std::fmt::Display) -> CoreError {
    CoreError::Corrupt {
        path: engine.dir().join(space),
        what: what.to_string(),
    }
}

pub(crate) fn read_u64(engine: &Engine, key: &[u8]) -> Result<Option<u64>, CoreError> {
    match engine.get(Space::Meta, key)? {
        None => Ok(None),
        Some(v) => {
            let arr: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                corrupt(
                    engine,
                    "meta",
                    format!(
                        "{} has {} bytes, want 8",
                        String::from_utf8_lossy(key),
                        v.len()
                    ),
                )
            })?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
    }
}

impl State {
    /// Rebuilds the in-memory indexes from the store.
    pub fn load(engine: Arc<Engine>) -> Result<State, CoreError> {
        let applied_index = read_u64(&engine, META_APPLIED)?.unwrap_or(0);
        let revision = read_u64(&engine, META_REVISION)?.unwrap_or(1) as i64;
        let compact_revision = read_u64(&engine, META_COMPACT)?.unwrap_or(0) as i64;
        let mut keys: BTreeMap<Vec<u8>, KeyIndex> = BTreeMap::new();
        for item in engine.scan_all(Space::Revs) {
            let (k, v) = item?;
            let rev =
                Rev::from_bytes(&k).ok_or_else(|| corrupt(&engine, "revs", "bad revision key"))?;
            let rec = Record::decode(&v)
                .map_err(|e| corrupt(&engine, "revs", format!("record at {rev:?}: {e}")))?;
            let ki = keys.entry(rec.key.clone()).or_default();
            ki.revs.push((rev, rec.tombstone));
            ki.live = (!rec.tombstone).then_some(Live {
                create_revision: rec.create_revision,
                mod_rev: rev,
                version: rec.version,
                lease: rec.lease,
            });
        }
        let mut leases = BTreeMap::new();
        for item in engine.scan_all(Space::Leases) {
            let (k, v) = item?;
            let id = i64::from_be_bytes(
                k.as_slice()
                    .try_into()
                    .map_err(|_| corrupt(&engine, "leases", "bad lease key"))?,
            );
            let rec = LeaseRecord::decode(&v)
                .map_err(|e| corrupt(&engine, "leases", format!("lease {id}: {e}")))?;
            leases.insert(
                id,
                Lease {
                    ttl_ms: rec.ttl_ms,
                    keys: BTreeSet::new(),
                    zk_fifo: rec.zk_fifo,
                },
            );
        }
        for (k, ki) in &keys {
            if let Some(live) = ki.live {
                if live.lease != 0 {
                    if let Some(l) = leases.get_mut(&live.lease) {
                        l.keys.insert(k.clone());
                    }
                }
            }
        }
        let mut specials = BTreeSet::new();
        for item in engine.scan_all(Space::Znodes) {
            let (k, v) = item?;
            let meta = ZMeta::decode(&v).map_err(|e| {
                corrupt(
                    &engine,
                    "znodes",
                    format!("{}: {e}", String::from_utf8_lossy(&k)),
                )
            })?;
            if meta.kind != crate::znode::NodeKind::Normal {
                specials.insert(k);
            }
        }
        let tree = Tree::load(
            &engine,
            keys.iter()
                .filter(|(_, ki)| ki.live.is_some())
                .map(|(k, _)| k),
        )?;
        let auth = crate::auth::AuthStore::load(&engine)?;
        let dedup = crate::dedup::Applied::load(&engine)?;
        let import = crate::import::ImportState::load(&engine)?;
        let alarms = crate::alarm::Alarms::load(&engine)?;
        let mut st = State {
            import,
            auth,
            alarms,
            dedup,
            group: None,
            engine,
            revision,
            compact_revision,
            applied_index,
            keys,
            leases,
            tree,
            specials,
            members: BTreeMap::new(),
            zk_servers: BTreeMap::new(),
            config_index: 0,
            config_time_ms: 0,
            hub: Arc::default(),
        };
        st.load_members()?;
        Ok(st)
    }

    /// Starts the writes of a command.
    pub fn begin(&self, now_ms: i64) -> Wtx {
        Wtx {
            main: self.revision + 1,
            sub: 0,
            now_ms,
            batch: self.engine.batch(),
            events: Vec::new(),
            written: HashMap::new(),
            zmeta: HashMap::new(),
        }
    }

    /// Loads the record written at `rev` (from this command's writes first,
    /// then its group's).
    pub fn record(&self, w: Option<&Wtx>, rev: Rev) -> Result<Record, CoreError> {
        if let Some(r) = w.and_then(|w| w.written.get(&rev)) {
            return Ok(r.clone());
        }
        if let Some(r) = self.group.as_ref().and_then(|g| g.written.get(&rev)) {
            return Ok(r.clone());
        }
        let bytes = self
            .engine
            .get(Space::Revs, &rev.to_bytes())?
            .ok_or_else(|| corrupt(&self.engine, "revs", format!("missing record {rev:?}")))?;
        Record::decode(&bytes)
            .map_err(|e| corrupt(&self.engine, "revs", format!("record {rev:?}: {e}")))
    }

    /// Writes `key` (create or update). Returns the new and previous values.
    /// Lease attachment, the ZooKeeper tree and events follow.
    /// `first_version` is the version a created key starts at: 1 as in
    /// etcd, except when ZooKeeper's setData makes an implicit znode (shown
    /// as version 0) explicit, which must show version 1 afterwards so that
    /// compare-and-set on versions stays exact. A `None` value is
    /// ZooKeeper's null data ([`Record::null_data`]).
    pub fn put_key_from(
        &mut self,
        w: &mut Wtx,
        key: &[u8],
        value: Option<Vec<u8>>,
        lease: i64,
        first_version: i64,
    ) -> Result<(KeyValue, Option<KeyValue>), CoreError> {
        let prev_live = self.keys.get(key).and_then(|k| k.live);
        let prev_rec = match prev_live {
            Some(l) => Some(self.record(Some(w), l.mod_rev)?),
            None => None,
        };
        let rev = w.next_rev();
        let rec = Record {
            key: key.to_vec(),
            null_data: value.is_none(),
            value: value.unwrap_or_default(),
            create_revision: prev_live.map_or(rev.main, |l| l.create_revision),
            version: prev_live.map_or(first_version, |l| l.version + 1),
            lease,
            ctime: prev_rec.as_ref().map_or(w.now_ms, |r| r.ctime),
            mtime: w.now_ms,
            tombstone: false,
        };
        w.batch.put(Space::Revs, rev.to_bytes(), rec.encode());
        let ki = self.keys.entry(key.to_vec()).or_default();
        ki.revs.push((rev, false));
        ki.live = Some(Live {
            create_revision: rec.create_revision,
            mod_rev: rev,
            version: rec.version,
            lease,
        });
        let prev_lease = prev_live.map_or(0, |l| l.lease);
        if prev_lease != lease {
            if let Some(l) = self.leases.get_mut(&prev_lease) {
                l.keys.remove(key);
            }
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(key.to_vec());
            }
        }
        let kv = rec.to_kv(rev.main);
        let prev = prev_live
            .zip(prev_rec)
            .map(|(l, r)| r.to_kv(l.mod_rev.main));
        w.written.insert(rev, rec);
        if prev.is_none() {
            let keys = &self.keys;
            self.tree
                .add(w, key, |k| keys.get(k).is_some_and(|ki| ki.live.is_some()));
        }
        w.events.push(Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev_kv: prev.clone(),
        });
        Ok((kv, prev))
    }

    /// Deletes a live key. Returns its last value, `None` if it was absent.
    pub fn delete_key(&mut self, w: &mut Wtx, key: &[u8]) -> Result<Option<KeyValue>, CoreError> {
        let Some(live) = self.keys.get(key).and_then(|k| k.live) else {
            return Ok(None);
        };
        let prev = self.record(Some(w), live.mod_rev)?.to_kv(live.mod_rev.main);
        let rev = w.next_rev();
        let rec = Record {
            key: key.to_vec(),
            value: Vec::new(),
            create_revision: 0,
            version: 0,
            lease: 0,
            ctime: 0,
            mtime: w.now_ms,
            tombstone: true,
            null_data: false,
        };
        w.batch.put(Space::Revs, rev.to_bytes(), rec.encode());
        w.written.insert(rev, rec);
        if let Some(ki) = self.keys.get_mut(key) {
            ki.revs.push((rev, true));
            ki.live = None;
        }
        if let Some(l) = self.leases.get_mut(&live.lease) {
            l.keys.remove(key);
        }
        // ZooKeeper metadata (ACL, node kind) belongs to this incarnation.
        w.batch.remove(Space::Znodes, key.to_vec());
        w.zmeta.insert(key.to_vec(), None);
        self.specials.remove(key);
        let keys = &self.keys;
        self.tree
            .remove(w, key, |k| keys.get(k).is_some_and(|ki| ki.live.is_some()));
        let tomb = KeyValue {
            key: key.to_vec(),
            mod_revision: rev.main,
            ..Default::default()
        };
        w.events.push(Event {
            kind: EventKind::Delete,
            kv: tomb,
            prev_kv: Some(prev.clone()),
        });
        Ok(Some(prev))
    }

    /// ZooKeeper metadata written by an earlier command of the open group
    /// (`Some(None)`: removed).
    pub(crate) fn group_zmeta(&self, path: &[u8]) -> Option<&Option<ZMeta>> {
        self.group.as_ref().and_then(|g| g.zmeta.get(path))
    }

    /// Starts a group: commands applied until [`State::end_group`] are
    /// committed to the store together, in one batch, and their events
    /// published then, in order.
    pub fn begin_group(&mut self) {
        if self.group.is_none() {
            self.group = Some(Group {
                batch: self.engine.batch(),
                written: HashMap::new(),
                zmeta: HashMap::new(),
                events: Vec::new(),
                dedup_dirty: Default::default(),
            });
        }
    }

    /// Commits the group's writes (with the last applied index and
    /// revision) atomically and publishes its events.
    pub fn end_group(&mut self) -> Result<(), CoreError> {
        let Some(mut g) = self.group.take() else {
            return Ok(());
        };
        for proposer in &g.dedup_dirty {
            let (k, v) = self.dedup.record(*proposer)?;
            g.batch.put(Space::Meta, k, v);
        }
        self.put_applied(&mut g.batch);
        self.engine.commit(g.batch)?;
        for events in g.events {
            self.hub.publish(events);
        }
        Ok(())
    }

    /// Finishes a command: records the applied index and revision in its
    /// batch, commits it atomically and publishes its events (or, in a
    /// group, hands all of that to the group).
    pub fn commit(&mut self, w: Wtx, index: u64) -> Result<(), CoreError> {
        let Wtx {
            main,
            sub,
            mut batch,
            events,
            written,
            zmeta,
            ..
        } = w;
        if sub > 0 {
            self.revision = main;
        }
        self.applied_index = index;
        if let Some(g) = self.group.as_mut() {
            // The group writes the applied index and revision once, last.
            g.batch.append(batch);
            g.written.extend(written);
            g.zmeta.extend(zmeta);
            if !events.is_empty() {
                g.events.push(events);
            }
            return Ok(());
        }
        self.put_applied(&mut batch);
        self.engine.commit(batch)?;
        if !events.is_empty() {
            self.hub.publish(events);
        }
        Ok(())
    }

    /// The applied index and revision (etcd's consistent index), written
    /// in the batch that brings the store to them.
    fn put_applied(&self, batch: &mut Batch) {
        batch.put(
            Space::Meta,
            META_APPLIED.to_vec(),
            self.applied_index.to_be_bytes().to_vec(),
        );
        batch.put(
            Space::Meta,
            META_REVISION.to_vec(),
            (self.revision as u64).to_be_bytes().to_vec(),
        );
    }
}

impl State {
    /// Applies one proposal at raft index `index`: computes its result and
    /// commits its changes together with the applied index. `None`: the
    /// proposal was applied before (a copy committed twice): nothing ran,
    /// only the applied index moved ([`crate::dedup`]). An `Err` is a
    /// storage failure: the member must stop.
    pub fn apply(
        &mut self,
        p: &crate::command::Proposal,
        index: u64,
    ) -> Result<Option<crate::command::Applied>, CoreError> {
        use crate::command::{Command, CommandResult};
        let mut w = self.begin(p.now_ms);
        if !self.dedup.admit(p.proposer, p.epoch, p.request_id) {
            tracing::debug!(
                index,
                proposer = p.proposer,
                request = p.request_id,
                "duplicate proposal not applied again"
            );
            self.commit(w, index)?;
            return Ok(None);
        };
        let result = self.apply_command(&mut w, &p.command, index)?;
        let failed = matches!(
            &result,
            CommandResult::Put(Err(_))
                | CommandResult::DeleteRange(Err(_))
                | CommandResult::Txn(Err(_))
                | CommandResult::Compact(Err(_))
                | CommandResult::LeaseGrant(Err(_))
                | CommandResult::LeaseRevoke(Err(_))
                | CommandResult::Zk(crate::znode::ZkWriteResult::Failed { .. })
                | CommandResult::Auth(Err(_))
                | CommandResult::Import(Err(_))
        );
        if failed {
            // Checks run before the first write, so a failed command has
            // written nothing; only the applied index moves.
            w = self.begin(p.now_ms);
        }
        if let Command::Zk {
            session, conn, seq, ..
        } = &p.command
        {
            let refused = matches!(
                &result,
                CommandResult::Zk(crate::znode::ZkWriteResult::Failed {
                    error: crate::ZkError::OutOfOrder,
                    ..
                })
            );
            if *seq != 0 && !refused {
                // In order, applied or answered with a ZooKeeper error:
                // either way the session's sequence moves on.
                self.zk_seq_advance(&mut w, *session, *conn, *seq);
            }
        }
        match self.group.as_mut() {
            Some(g) => {
                g.dedup_dirty.insert(p.proposer);
            }
            None => {
                let (k, v) = self.dedup.record(p.proposer)?;
                w.batch.put(Space::Meta, k, v);
            }
        }
        self.commit(w, index)?;
        Ok(Some(crate::command::Applied {
            revision: self.revision,
            result,
        }))
    }

    /// One command's result and writes (into `w`); `Err` is a storage
    /// failure.
    pub(crate) fn apply_command(
        &mut self,
        w: &mut Wtx,
        command: &crate::command::Command,
        index: u64,
    ) -> Result<crate::command::CommandResult, CoreError> {
        use crate::command::{Command, CommandResult};
        fn kv<T>(r: Result<T, Fail>) -> Result<Result<T, KvError>, CoreError> {
            match r {
                Ok(v) => Ok(Ok(v)),
                Err(Fail::Kv(e)) => Ok(Err(e)),
                Err(Fail::Core(e)) => Err(e),
            }
        }
        if let Some(refused) = crate::import::refusal(self, command) {
            return Ok(refused);
        }
        // Alarms refuse before auth, as etcd's capped applier wraps the
        // others; a ZooKeeper write is first checked for its FIFO order.
        if !matches!(command, Command::Zk { .. }) {
            if let Some(refused) = crate::alarm::refusal(&self.alarms, command) {
                return Ok(refused);
            }
        }
        let result = match command {
            Command::Put(r) => CommandResult::Put(kv(self.apply_put(w, r))?),
            Command::DeleteRange(r) => {
                CommandResult::DeleteRange(kv(self.apply_delete_range(w, r))?)
            }
            Command::Txn(r) => CommandResult::Txn(kv(self.apply_txn(w, r))?),
            Command::Compact { revision } => {
                CommandResult::Compact(kv(self.apply_compact(w, *revision))?)
            }
            Command::LeaseGrant { id, ttl_ms } => {
                CommandResult::LeaseGrant(kv(self.apply_lease_grant(w, *id, *ttl_ms))?)
            }
            Command::LeaseRevoke { id } => {
                CommandResult::LeaseRevoke(kv(self.apply_lease_revoke(w, *id))?)
            }
            Command::Zk {
                session,
                auth,
                ops,
                conn,
                seq,
                ..
            } => match self.zk_seq_check(*session, *conn, *seq) {
                Err(error) => {
                    CommandResult::Zk(crate::znode::ZkWriteResult::Failed { index: 0, error })
                }
                Ok(()) => match crate::alarm::refusal(&self.alarms, command) {
                    Some(refused) => refused,
                    None => CommandResult::Zk(self.apply_zk(w, *session, auth, ops)?),
                },
            },
            Command::ZkReap { path } => CommandResult::Reaped(self.apply_reap(w, path)?),
            Command::MemberUpdate {
                id,
                name,
                client_urls,
                peer_urls,
            } => CommandResult::MemberUpdate(self.apply_member_update(
                w,
                *id,
                name.clone(),
                client_urls.clone(),
                peer_urls.clone(),
            )),
            Command::As { caller, command } => self.apply_as(w, caller, command, index)?,
            Command::ZkServer { id, server } => {
                CommandResult::ZkServer(self.apply_zk_server(w, *id, server, index))
            }
            Command::Auth { caller, op } => {
                CommandResult::Auth(self.apply_auth(w, caller, op, index))
            }
            Command::Import(op) => CommandResult::Import(self.apply_import(w, op)?),
            Command::Alarm { activate, alarm } => {
                CommandResult::Alarm(self.alarms.apply(&mut w.batch, *activate, *alarm))
            }
            Command::Noop => CommandResult::Noop,
            Command::ConfigTouch => {
                self.note_config_change(w, index);
                CommandResult::Noop
            }
        };
        Ok(result)
    }

    /// FIFO per connection ([`Fifo`]).
    fn zk_seq_check(&self, session: i64, conn: u64, seq: u64) -> Result<(), crate::ZkError> {
        match self.leases.get(&session) {
            Some(l) if !l.zk_fifo.allows(conn, seq) => Err(crate::ZkError::OutOfOrder),
            _ => Ok(()),
        }
    }

    fn zk_seq_advance(&mut self, w: &mut Wtx, session: i64, conn: u64, seq: u64) {
        if let Some(l) = self.leases.get_mut(&session) {
            l.zk_fifo.advance(conn, seq);
            let rec = LeaseRecord {
                ttl_ms: l.ttl_ms,
                zk_fifo: l.zk_fifo.clone(),
            };
            w.batch.put(
                Space::Leases,
                session.to_be_bytes().to_vec(),
                postcard::to_stdvec(&rec).unwrap_or_default(),
            );
        }
    }

    /// Records an applied raft entry that carries no command (leader no-ops,
    /// conf changes).
    pub fn apply_empty(&mut self, index: u64) -> Result<(), CoreError> {
        let w = self.begin(0);
        self.commit(w, index)
    }
}

/// The watch hub reads history through the state's lock: a read guard is
/// one consistent view (apply holds the write lock while it changes and
/// publishes a group).
impl crate::watch::History for std::sync::RwLock<State> {
    fn view(&self) -> Result<Box<dyn crate::watch::HistoryView + '_>, KvError> {
        let guard = self
            .read()
            .map_err(|_| KvError::Internal("state lock poisoned".into()))?;
        Ok(Box::new(guard))
    }
}

impl crate::watch::HistoryView for std::sync::RwLockReadGuard<'_, State> {
    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    fn revision(&self) -> i64 {
        self.revision
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn for_each_since(
        &self,
        from: i64,
        f: &mut dyn FnMut(Rev, Record, Option<KeyValue>) -> Result<bool, KvError>,
    ) -> Result<(), KvError> {
        let start = Rev::new(from, 0).to_bytes();
        for item in self.engine.scan(Space::Revs, start.., false) {
            let (k, v) = item?;
            let Some(rev) = Rev::from_bytes(&k) else {
                continue;
            };
            let rec = Record::decode(&v).map_err(|e| KvError::Internal(e.to_string()))?;
            let prev_kv = match self.keys.get(&rec.key).and_then(|ki| ki.before(rev)) {
                Some(p) => self.record(None, p).ok().map(|r| r.to_kv(p.main)),
                None => None,
            };
            if !f(rev, rec, prev_kv)? {
                break;
            }
        }
        Ok(())
    }
}
