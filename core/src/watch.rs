//! Watch hub (D6): subscribe(key range, start revision) → revision-ordered
//! events with history replay.
//!
//! Delivery: the state machine publishes each applied revision's events to
//! every matching subscriber through a bounded channel, while it still holds
//! the state lock, so an event is queued before any reply or read can reflect
//! its revision. A subscriber whose channel is full is marked *lagging* and
//! no longer fed live; it catches up on its own from MVCC history (under the
//! state read lock, so no revision can slip between history and live
//! delivery) the next time it is polled. Applying never waits for a watcher.
//! A lagging watcher that falls below the compaction point gets
//! [`KvError::Compacted`].

use serde::{Deserialize, Serialize};

use crate::kv::KeyValue;

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
    /// The set of children of the ZooKeeper path `kv.key` changed at
    /// `kv.mod_revision` (only for watchers created with `tree_events`
    /// whose range contains that path).
    ChildrenChanged,
    /// The path `kv.key`, which has no key of its own, became an implicit
    /// znode (its first descendant key appeared) at `kv.mod_revision`
    /// (`tree_events` watchers only).
    ImplicitCreated,
    /// The implicit znode `kv.key` vanished (its last descendant key went)
    /// at `kv.mod_revision` (`tree_events` watchers only).
    ImplicitDeleted,
}

/// One event. For `Delete`, `kv` holds the key and `mod_revision` = the
/// deletion revision, everything else zero (as etcd reports tombstones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key's previous state, when it existed (always filled; frontends
    /// drop it unless the client asked for prev_kv).
    pub prev_kv: Option<KeyValue>,
}

/// What to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// Key range with etcd's conventions (see [`crate::kv`]).
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision to deliver; `<= 0` means "changes after now".
    pub start_revision: i64,
    /// Also deliver [`EventKind::ChildrenChanged`] events for ZooKeeper
    /// parents in range whose child set changed.
    pub tree_events: bool,
}

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::kv::in_range;
use crate::mvcc::{Record, Rev};
use crate::znode::path;
use crate::KvError;

/// What a watcher reads of the store. The state machine implements it
/// ([`crate::state`]); the hub needs nothing else of the state.
pub(crate) trait History: Send + Sync {
    /// A consistent view: no revision is applied (and so none published)
    /// while it lives.
    fn view(&self) -> Result<Box<dyn HistoryView + '_>, KvError>;
}

/// One consistent view of the store's history (see [`History::view`]).
pub(crate) trait HistoryView {
    /// Revisions below this one are compacted away.
    fn compact_revision(&self) -> i64;
    /// The store's current revision.
    fn revision(&self) -> i64;
    /// The hub events are published to.
    fn hub(&self) -> &Arc<Hub>;
    /// Calls `f` with every record from revision `from` on, in revision
    /// order, and the key's previous value at that revision (if it had
    /// one), until `f` returns false.
    fn for_each_since(
        &self,
        from: i64,
        f: &mut dyn FnMut(Rev, Record, Option<KeyValue>) -> Result<bool, KvError>,
    ) -> Result<(), KvError>;
}

/// Batches a subscriber may have queued before it is marked lagging.
const CHANNEL_BATCHES: usize = 1024;
/// Events read from history per catch-up step.
const CATCH_UP_EVENTS: usize = 4096;

struct Sub {
    id: u64,
    key: Vec<u8>,
    range_end: Vec<u8>,
    tree_events: bool,
    /// `Some`: a path subscriber (see [`Interest`]), fed only events on the
    /// keys it registered, found through the hub's index; `None`: fed
    /// every event in its range.
    paths: Option<Mutex<Paths>>,
    /// One revision's events, shared by every subscriber that wants any of
    /// them; each subscriber picks its own out on its own task.
    tx: mpsc::Sender<Arc<Vec<Event>>>,
    /// Not fed live; catches up from history when polled.
    lagging: AtomicBool,
}

impl Sub {
    fn wants(&self, e: &Event) -> bool {
        let in_range = in_range(&e.kv.key, &self.key, &self.range_end);
        let kind = match e.kind {
            EventKind::Put | EventKind::Delete => in_range,
            EventKind::ChildrenChanged
            | EventKind::ImplicitCreated
            | EventKind::ImplicitDeleted => self.tree_events && in_range,
        };
        kind && match &self.paths {
            None => true,
            Some(p) => p.lock().is_ok_and(|p| p.covers(&e.kv.key)),
        }
    }
}

/// The keys a path subscriber registered.
#[derive(Default)]
struct Paths {
    /// Events on the key itself.
    exact: HashSet<Vec<u8>>,
    /// Events on the key or on any ZooKeeper path below it.
    recursive: HashSet<Vec<u8>>,
}

impl Paths {
    fn covers(&self, key: &[u8]) -> bool {
        self.exact.contains(key) || ancestors(key).any(|a| self.recursive.contains(a))
    }
}

/// `key` and every ZooKeeper path above it (`/a/b` → `/a/b`, `/a`, `/`).
fn ancestors(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::successors(Some(key), |k| path::parent(k))
}

/// The path subscribers that registered one key, by subscriber id: a
/// one-shot watch set by ten thousand sessions on one node is dropped by
/// each of them when it fires, and each drop must cost one lookup, not a
/// scan of the other sessions (under the hub's lock, which apply takes).
type KeySubs = HashMap<u64, Arc<Sub>>;

/// The subscriber table: every range subscriber, and an index from key to
/// the path subscribers that registered it, so publishing a revision costs
/// the range subscribers plus the key's own watchers, not one check per
/// ZooKeeper connection.
#[derive(Default)]
struct Subs {
    ranged: Vec<Arc<Sub>>,
    exact: HashMap<Vec<u8>, KeySubs>,
    recursive: HashMap<Vec<u8>, KeySubs>,
}

impl Subs {
    fn index(&mut self, recursive: bool) -> &mut HashMap<Vec<u8>, KeySubs> {
        if recursive {
            &mut self.recursive
        } else {
            &mut self.exact
        }
    }

    fn unindex(&mut self, sub: &Sub, key: &[u8], recursive: bool) {
        let index = self.index(recursive);
        if let Some(v) = index.get_mut(key) {
            v.remove(&sub.id);
            if v.is_empty() {
                index.remove(key);
            }
        }
    }

    fn remove(&mut self, sub: &Sub) {
        self.ranged.retain(|s| s.id != sub.id);
        let keys = match &sub.paths {
            Some(p) => p
                .lock()
                .map(|p| (p.exact.clone(), p.recursive.clone()))
                .unwrap_or_default(),
            None => return,
        };
        for k in keys.0 {
            self.unindex(sub, &k, false);
        }
        for k in keys.1 {
            self.unindex(sub, &k, true);
        }
    }
}

/// The keys a path subscriber ([`crate::node::Node::watch_paths`]) is fed
/// events on. A key must be registered before the subscriber reads the
/// state its watch is set against: from then on every event on it is
/// queued, so none can fall between the read and the watch.
pub struct Interest {
    hub: Arc<Hub>,
    sub: Arc<Sub>,
}

impl Interest {
    /// Registers `key` (with `recursive`, also every path below it).
    pub fn add(&self, key: &[u8], recursive: bool) {
        let Some(paths) = &self.sub.paths else {
            return;
        };
        // The subscriber's own set first, the hub's index after: publish
        // takes the hub's lock and then this set's, never the reverse.
        let new = paths.lock().is_ok_and(|mut p| {
            let set = if recursive {
                &mut p.recursive
            } else {
                &mut p.exact
            };
            set.insert(key.to_vec())
        });
        if new {
            if let Ok(mut subs) = self.hub.subs.lock() {
                subs.index(recursive)
                    .entry(key.to_vec())
                    .or_default()
                    .insert(self.sub.id, Arc::clone(&self.sub));
            }
        }
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &[u8], recursive: bool) {
        let Some(paths) = &self.sub.paths else {
            return;
        };
        if let Ok(mut subs) = self.hub.subs.lock() {
            subs.unindex(&self.sub, key, recursive);
        }
        if let Ok(mut p) = paths.lock() {
            if recursive {
                p.recursive.remove(key);
            } else {
                p.exact.remove(key);
            }
        }
    }
}

/// Lease revocations queued for slow listeners before they lag (a lagging
/// listener re-checks the leases it cares about).
const REVOCATIONS: usize = 1024;

/// The subscriber table, owned by the state machine, and the lease
/// revocation feed.
pub struct Hub {
    subs: Mutex<Subs>,
    next_id: AtomicU64,
    /// Ids of leases revoked (by a client, an expiry, a closeSession), as
    /// they are applied. A revoke need not change a key, so it has no place
    /// in the revision-ordered event stream; ZooKeeper connections listen
    /// here to close the moment their session ends, as ZooKeeper closes an
    /// expired or closed session's connection at once.
    revoked: tokio::sync::broadcast::Sender<i64>,
    /// The cluster configuration's version (the raft index of the last
    /// membership change), sent as each change is applied. A membership
    /// change writes no key, so like a revoke it is not in the event
    /// stream; ZooKeeper connections fire their `/zookeeper/config` watches
    /// from here, on every member.
    config: tokio::sync::watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            subs: Mutex::default(),
            next_id: AtomicU64::default(),
            revoked: tokio::sync::broadcast::channel(REVOCATIONS).0,
            config: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Hub {
    /// Announces that the cluster configuration is now at `version`. Sent
    /// while the change is applied, before any reply or read can reflect
    /// it (D6's order, as for key events).
    pub fn config_changed(&self, version: u64) {
        self.config.send_if_modified(|v| {
            let changed = *v != version;
            *v = version;
            changed
        });
    }

    /// The configuration version from now on: the current one counts as
    /// seen, so [`tokio::sync::watch::Receiver::changed`] waits for the
    /// next change.
    pub fn config_versions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.config.subscribe()
    }

    /// Announces that lease `id` was revoked (no listener: nothing to do).
    pub fn lease_revoked(&self, id: i64) {
        let _ = self.revoked.send(id);
    }

    /// Lease revocations from now on. `Lagged` means some were missed:
    /// check the leases of interest directly.
    pub fn revocations(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.revoked.subscribe()
    }

    /// Hands one revision's events to every live subscriber that wants
    /// any of them, never waiting: a full channel marks the subscriber
    /// lagging. The events are shared, not copied per subscriber: this runs
    /// in the apply path, and every ZooKeeper session subscribes.
    pub fn publish(&self, events: Vec<Event>) {
        let Ok(mut subs) = self.subs.lock() else {
            return;
        };
        let events = Arc::new(events);
        let feed = |s: &Sub| -> bool {
            if s.lagging.load(Ordering::Acquire) || !events.iter().any(|e| s.wants(e)) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(Arc::clone(&events)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.lagging.store(true, Ordering::Release);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        };
        subs.ranged.retain(|s| feed(s));
        if subs.exact.is_empty() && subs.recursive.is_empty() {
            return;
        }
        // Path subscribers of the revision's keys, each fed once.
        let mut targets: Vec<Arc<Sub>> = Vec::new();
        let mut seen = HashSet::new();
        for e in events.iter() {
            let key = &e.kv.key;
            let exact = subs.exact.get(key).into_iter().flat_map(|m| m.values());
            let below = ancestors(key)
                .filter_map(|a| subs.recursive.get(a))
                .flat_map(|m| m.values());
            for s in exact.chain(below) {
                if seen.insert(s.id) {
                    targets.push(Arc::clone(s));
                }
            }
        }
        for s in targets {
            if !feed(&s) {
                subs.remove(&s);
            }
        }
    }

    /// The store was replaced wholesale (a snapshot from the leader): the
    /// revisions it jumped over were never published, so every subscriber
    /// catches up from the new store's history, as etcd moves its synced
    /// watchers back to unsynced on restore. An empty batch wakes a watcher
    /// that waits on an empty channel (it then sees itself lagging).
    pub(crate) fn resync_all(&self) {
        let Ok(subs) = self.subs.lock() else {
            return;
        };
        let wake = Arc::new(Vec::new());
        let mut seen = HashSet::new();
        let indexed = subs
            .exact
            .values()
            .chain(subs.recursive.values())
            .flat_map(|m| m.values());
        for s in subs.ranged.iter().chain(indexed) {
            if seen.insert(s.id) {
                s.lagging.store(true, Ordering::Release);
                let _ = s.tx.try_send(Arc::clone(&wake));
            }
        }
    }

    fn remove(&self, sub: &Sub) {
        if let Ok(mut subs) = self.subs.lock() {
            subs.remove(sub);
        }
    }

    /// Subscribers fed through the range table (etcd watchers; path
    /// subscribers are counted by their owners).
    pub fn len(&self) -> usize {
        self.subs.lock().map_or(0, |s| s.ranged.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A watch subscription: events in revision order, from history and live.
pub struct Watcher {
    history: Arc<dyn History>,
    hub: Arc<Hub>,
    sub: Arc<Sub>,
    rx: mpsc::Receiver<Arc<Vec<Event>>>,
    /// Next revision to hand out; earlier events are dropped.
    next_rev: i64,
    done: bool,
}

impl Watcher {
    /// Subscribes (see [`WatchRequest`]); a start revision below the
    /// compaction point is [`KvError::Compacted`].
    pub(crate) fn subscribe(
        history: Arc<dyn History>,
        req: WatchRequest,
        by_path: bool,
    ) -> Result<Watcher, KvError> {
        // Registered under the view: no revision is published between the
        // revision read here and the subscription joining live delivery.
        let st = history.view()?;
        let (compact_revision, revision) = (st.compact_revision(), st.revision());
        if req.start_revision > 0 && req.start_revision < compact_revision {
            return Err(KvError::Compacted { compact_revision });
        }
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let from_history = req.start_revision > 0 && req.start_revision <= revision;
        let sub = Arc::new(Sub {
            id: st.hub().next_id.fetch_add(1, Ordering::Relaxed),
            key: req.key,
            range_end: req.range_end,
            tree_events: req.tree_events,
            paths: by_path.then(Mutex::default),
            tx,
            lagging: AtomicBool::new(from_history),
        });
        if !by_path {
            if let Ok(mut subs) = st.hub().subs.lock() {
                subs.ranged.push(Arc::clone(&sub));
            }
        }
        let hub = Arc::clone(st.hub());
        let next_rev = if req.start_revision > 0 {
            req.start_revision
        } else {
            revision + 1
        };
        drop(st);
        Ok(Watcher {
            history,
            hub,
            sub,
            rx,
            next_rev,
            done: false,
        })
    }

    /// The keys this watcher is fed on, if it was made by
    /// [`crate::node::Node::watch_paths`].
    pub fn interest(&self) -> Option<Interest> {
        self.sub.paths.as_ref().map(|_| Interest {
            hub: Arc::clone(&self.hub),
            sub: Arc::clone(&self.sub),
        })
    }

    /// Waits for the next events (one or more revisions, in order).
    /// `Err(Compacted)` ends the watch: it fell behind the compaction point.
    /// Cancel-safe: its only await is a tokio mpsc `recv`, so dropping the
    /// future (e.g. in `select!`) loses no event.
    pub async fn next(&mut self) -> Result<Vec<Event>, KvError> {
        loop {
            if let Some(r) = self.try_next() {
                return r;
            }
            match self.rx.recv().await {
                Some(batch) => {
                    if let Some(r) = self.accept(batch) {
                        return Ok(r);
                    }
                }
                None => return Err(KvError::Internal("watch hub closed".into())),
            }
        }
    }

    /// Events available now, without waiting (`None` if there are none).
    pub fn try_next(&mut self) -> Option<Result<Vec<Event>, KvError>> {
        if self.done {
            return None;
        }
        while let Ok(batch) = self.rx.try_recv() {
            if let Some(r) = self.accept(batch) {
                return Some(Ok(r));
            }
        }
        if self.sub.lagging.load(Ordering::Acquire) {
            return match self.catch_up() {
                Ok(ev) if ev.is_empty() => None,
                Ok(ev) => Some(Ok(ev)),
                Err(e) => {
                    self.done = true;
                    Some(Err(e))
                }
            };
        }
        None
    }

    /// If every event up to the store's current revision has been handed
    /// out, that revision (for etcd progress notifications).
    pub fn progress_revision(&self) -> Option<i64> {
        let st = self.history.view().ok()?;
        let idle = !self.sub.lagging.load(Ordering::Acquire) && self.rx.is_empty();
        idle.then_some(st.revision().max(self.next_rev - 1))
    }

    fn accept(&mut self, shared: Arc<Vec<Event>>) -> Option<Vec<Event>> {
        let batch: Vec<Event> = shared
            .iter()
            .filter(|e| e.kv.mod_revision >= self.next_rev && self.sub.wants(e))
            .cloned()
            .collect();
        let last = batch.last()?.kv.mod_revision;
        self.next_rev = last + 1;
        Some(batch)
    }

    /// Reads missed events from one history view (no revision can be
    /// applied meanwhile); when caught up, rejoins live delivery.
    fn catch_up(&mut self) -> Result<Vec<Event>, KvError> {
        let st = self.history.view()?;
        let compact_revision = st.compact_revision();
        if self.next_rev < compact_revision {
            return Err(KvError::Compacted { compact_revision });
        }
        let mut out = Vec::new();
        let mut last_main = self.next_rev - 1;
        // Whether the step stopped early; if not, every revision up to the
        // current one has been read, including revisions that left no
        // record (a fresh store's revision 1, a tombstone dropped by
        // compaction). Deciding "caught up" from the last record seen
        // instead left such a watcher lagging forever, fed neither live
        // nor from history.
        let mut cut_short = false;
        let sub = &self.sub;
        st.for_each_since(self.next_rev.max(1), &mut |rev, rec, prev_kv| {
            if out.len() >= CATCH_UP_EVENTS && rev.main != last_main {
                cut_short = true;
                return Ok(false);
            }
            last_main = rev.main;
            history_events(sub, rev, rec, prev_kv, &mut out);
            Ok(true)
        })?;
        if !cut_short {
            // Never backwards: a watch may start beyond the store (a
            // member that restarted or was wiped, resumed on by a client
            // that has seen more), and still be there after a snapshot.
            self.next_rev = self.next_rev.max(st.revision() + 1);
            // Caught up: rejoin live delivery before releasing the lock.
            self.sub.lagging.store(false, Ordering::Release);
        } else {
            self.next_rev = last_main + 1;
        }
        Ok(out)
    }
}

/// The events a history record stands for, as live delivery produced them.
/// Tree events are derived for the direct parent of a created or deleted
/// path (implicit ancestors appearing with it are not reconstructed).
fn history_events(
    sub: &Sub,
    rev: Rev,
    rec: Record,
    prev_kv: Option<KeyValue>,
    out: &mut Vec<Event>,
) {
    let created_or_deleted = rec.tombstone || rec.version == 1;
    let key = rec.key.clone();
    let ev = if rec.tombstone {
        let kv = crate::kv::KeyValue {
            key: rec.key,
            mod_revision: rev.main,
            ..Default::default()
        };
        Event {
            kind: EventKind::Delete,
            kv,
            prev_kv,
        }
    } else {
        Event {
            kind: EventKind::Put,
            kv: rec.to_kv(rev.main),
            prev_kv,
        }
    };
    if sub.wants(&ev) {
        out.push(ev);
    }
    if sub.tree_events && created_or_deleted && path::is_valid(&key) {
        if let Some(parent) = path::parent(&key) {
            let kv = crate::kv::KeyValue {
                key: parent.to_vec(),
                mod_revision: rev.main,
                ..Default::default()
            };
            let ev = Event {
                kind: EventKind::ChildrenChanged,
                kv,
                prev_kv: None,
            };
            if sub.wants(&ev) {
                out.push(ev);
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.hub.remove(&self.sub);
    }
}
