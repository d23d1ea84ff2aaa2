//! Per-connection watch tables fed from core's watch hub (D6).
//!
//! ZooKeeper keeps two tables per server (`dataWatches`, `childWatches`);
//! janus keeps the same per connection. One-shot data watches (getData,
//! exists on an existing node) and exist watches (exists on a missing node)
//! share the data table as in ZooKeeper 3.8. Persistent watches are in both
//! tables, persistent-recursive ones only in the data table, which is why a
//! recursive watch never sees `NodeChildrenChanged`.
//!
//! Every watch remembers a *threshold* revision: the revision of the state the
//! client was shown when it set the watch (the node's mzxid for a data watch,
//! its pzxid for a child watch, the store revision read beforehand for a
//! missing node). Only a hub event with a revision above the threshold fires
//! it, so an event that was already queued when the read happened (and is
//! therefore reflected in the reply) cannot fire a watch set by that reply.

use std::collections::{HashMap, HashSet};

use janus_core::watch::{Event, EventKind, Interest};
use janus_core::znode::path;

use crate::proto::event_type;

/// `WatcherType` of checkWatches/removeWatches (3.8: Children=1, Data=2,
/// Any=3, Persistent=4, PersistentRecursive=5).
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// addWatch modes (`ZooDefs.AddWatchModes`).
pub mod add_watch_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// A ZooKeeper-level event derived from one hub event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkEvent {
    pub kind: i32,
    pub path: String,
    pub revision: i64,
}

/// Translates one hub event into the ZooKeeper event it stands for.
/// Keys that are not ZooKeeper paths give nothing: core's path rule
/// decides, so a key getChildren hides fires no watch either.
pub fn translate(ev: &Event) -> Option<ZkEvent> {
    let path = path::visible(&ev.kv.key)?.to_string();
    let revision = ev.kv.mod_revision;
    let kind = match ev.kind {
        EventKind::Put => {
            // A put of a key that did not exist before (or was recreated:
            // a different create revision) is a creation.
            let created = match &ev.prev_kv {
                None => true,
                Some(prev) => prev.create_revision != ev.kv.create_revision,
            };
            if created {
                event_type::NODE_CREATED
            } else {
                event_type::NODE_DATA_CHANGED
            }
        }
        EventKind::Delete => event_type::NODE_DELETED,
        EventKind::ChildrenChanged => event_type::NODE_CHILDREN_CHANGED,
        EventKind::ImplicitCreated => event_type::NODE_CREATED,
        EventKind::ImplicitDeleted => event_type::NODE_DELETED,
    };
    Some(ZkEvent {
        kind,
        path,
        revision,
    })
}

/// The watches one connection holds. Values are thresholds (see module docs).
#[derive(Default)]
pub struct WatchTable {
    pub data: HashMap<String, i64>,
    pub child: HashMap<String, i64>,
    pub persistent: HashMap<String, i64>,
    pub recursive: HashMap<String, i64>,
    /// The paths the hub feeds this connection events on (`None` in unit
    /// tests without a hub): a superset of the tables' paths, each armed
    /// before the read its watch is set against and forgotten when no
    /// watch on it is left.
    interest: Option<Interest>,
    armed: HashSet<String>,
    armed_recursive: HashSet<String>,
    /// Watches set by the request being answered, with their thresholds:
    /// an event above one happened after that request's read, so its
    /// notification goes after the reply, as ZooKeeper sends it (a client
    /// library registers the watcher only when the reply arrives).
    fresh: HashMap<String, i64>,
    fresh_recursive: HashMap<String, i64>,
    /// The config version each recursive watch at or above
    /// `/zookeeper/config` was set against: its threshold for
    /// configuration changes, which carry no revision.
    config_recursive: HashMap<String, i64>,
    /// Paths armed, or whose watch went away, since the interest was last
    /// pruned: the only ones `prune` looks at, so a fired watch costs the
    /// same whether the connection holds ten watches or a hundred thousand.
    unsettled: Vec<(String, bool)>,
    /// Bumped by every change, so a reader of the paths (`cons`, `wchc`)
    /// copies them only when they changed.
    generation: u64,
}

impl WatchTable {
    /// A table whose paths `interest` registers with the hub.
    pub fn new(interest: Option<Interest>) -> WatchTable {
        WatchTable {
            interest,
            ..WatchTable::default()
        }
    }

    /// Declares that a watch on `path` may be set by the read that comes
    /// next: the hub must queue events on it from now on, or an event
    /// between the read and the watch's registration would be lost.
    pub fn arm(&mut self, path: &str) {
        if !self.armed.contains(path) {
            self.armed.insert(path.to_string());
            self.unsettled.push((path.to_string(), false));
            if let Some(i) = &self.interest {
                i.add(path.as_bytes(), false);
            }
        }
    }

    /// [`WatchTable::arm`] for a persistent-recursive watch.
    pub fn arm_recursive(&mut self, path: &str) {
        if !self.armed_recursive.contains(path) {
            self.armed_recursive.insert(path.to_string());
            self.unsettled.push((path.to_string(), true));
            if let Some(i) = &self.interest {
                i.add(path.as_bytes(), true);
            }
        }
    }

    /// Whether the hub feeds this table events on `path` (by an exact
    /// registration, or a recursive one at or above it).
    #[cfg(test)]
    fn fed(&self, path: &str) -> bool {
        let mut p = path;
        loop {
            if self.armed_recursive.contains(p) {
                return true;
            }
            match path::parent_str(p) {
                Some(up) => p = up,
                None => return self.armed.contains(path),
            }
        }
    }

    fn note_fresh(table: &mut HashMap<String, i64>, path: &str, threshold: i64) {
        let t = table.entry(path.to_string()).or_insert(threshold);
        *t = (*t).min(threshold);
    }

    /// Whether `ev`'s notification must wait for the reply of the request
    /// that set a watch it fires (see `fresh`).
    pub fn defers(&self, ev: &ZkEvent) -> bool {
        if self.fresh.is_empty() && self.fresh_recursive.is_empty() {
            return false;
        }
        let after = |t: Option<&i64>| t.is_some_and(|&t| ev.revision > t);
        if after(self.fresh.get(&ev.path)) {
            return true;
        }
        let mut p = ev.path.as_str();
        loop {
            if after(self.fresh_recursive.get(p)) {
                return true;
            }
            match path::parent_str(p) {
                Some(up) => p = up,
                None => return false,
            }
        }
    }

    /// The request's reply is out: its watches are no longer fresh.
    pub fn end_request(&mut self) {
        self.fresh.clear();
        self.fresh_recursive.clear();
    }

    /// Changes since the table was made (see `generation`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Forgets, in the hub's interest, the paths no watch is left on (of
    /// those armed or unwatched since the last prune: a path armed for a
    /// read that set no watch is forgotten too).
    pub fn prune(&mut self) {
        for (x, recursive) in std::mem::take(&mut self.unsettled) {
            let watched = if recursive {
                self.recursive.contains_key(&x)
            } else {
                self.data.contains_key(&x)
                    || self.child.contains_key(&x)
                    || self.persistent.contains_key(&x)
            };
            let armed = if recursive {
                &mut self.armed_recursive
            } else {
                &mut self.armed
            };
            if !watched && armed.remove(&x) {
                if let Some(i) = &self.interest {
                    i.remove(x.as_bytes(), recursive);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.recursive.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len() + self.child.len() + self.persistent.len() + self.recursive.len()
    }

    /// Adds a one-shot data/exist watch. An existing watch keeps the lower
    /// threshold, so re-setting a watch never hides an event.
    pub fn add_data(&mut self, path: &str, threshold: i64) {
        self.arm(path);
        Self::note_fresh(&mut self.fresh, path, threshold);
        self.generation += 1;
        let t = self.data.entry(path.to_string()).or_insert(threshold);
        *t = (*t).min(threshold);
    }

    pub fn add_child(&mut self, path: &str, threshold: i64) {
        self.arm(path);
        Self::note_fresh(&mut self.fresh, path, threshold);
        self.generation += 1;
        let t = self.child.entry(path.to_string()).or_insert(threshold);
        *t = (*t).min(threshold);
    }

    pub fn add_persistent(&mut self, path: &str, recursive: bool, threshold: i64) {
        if recursive {
            self.arm_recursive(path);
            Self::note_fresh(&mut self.fresh_recursive, path, threshold);
        } else {
            self.arm(path);
            Self::note_fresh(&mut self.fresh, path, threshold);
        }
        self.generation += 1;
        let table = if recursive {
            &mut self.recursive
        } else {
            &mut self.persistent
        };
        table.entry(path.to_string()).or_insert(threshold);
    }

    fn take_one_shot(table: &mut HashMap<String, i64>, path: &str, rev: i64) -> bool {
        match table.get(path) {
            Some(&t) if rev > t => {
                table.remove(path);
                true
            }
            _ => false,
        }
    }

    /// Notes that watches on `path` went away (for `prune` and
    /// `generation`).
    fn removed(&mut self, any: bool, path: &str, recursive: bool) -> bool {
        if any {
            self.unsettled.push((path.to_string(), recursive));
            self.generation += 1;
        }
        any
    }

    fn persistent_hit(table: &HashMap<String, i64>, path: &str, rev: i64) -> bool {
        table.get(path).is_some_and(|&t| rev > t)
    }

    fn recursive_hit(&self, path: &str, rev: i64) -> bool {
        if self.recursive.is_empty() {
            return false;
        }
        let mut p = path;
        loop {
            if Self::persistent_hit(&self.recursive, p, rev) {
                return true;
            }
            match path::parent_str(p) {
                Some(up) => p = up,
                None => return false,
            }
        }
    }

    /// Applies one event: consumes the one-shot watches it fires and says
    /// whether this connection must be notified (at most once per event, as
    /// ZooKeeper's `triggerWatch(..., processed)` dedups per watcher).
    pub fn trigger(&mut self, ev: &ZkEvent) -> bool {
        let (p, r) = (ev.path.as_str(), ev.revision);
        match ev.kind {
            event_type::NODE_CREATED | event_type::NODE_DATA_CHANGED => {
                let a = Self::take_one_shot(&mut self.data, p, r);
                self.removed(a, p, false);
                a | Self::persistent_hit(&self.persistent, p, r) | self.recursive_hit(p, r)
            }
            event_type::NODE_DELETED => {
                let a = Self::take_one_shot(&mut self.data, p, r);
                let b = Self::take_one_shot(&mut self.child, p, r);
                self.removed(a | b, p, false);
                a | b | Self::persistent_hit(&self.persistent, p, r) | self.recursive_hit(p, r)
            }
            event_type::NODE_CHILDREN_CHANGED => {
                let a = Self::take_one_shot(&mut self.child, p, r);
                self.removed(a, p, false);
                a | Self::persistent_hit(&self.persistent, p, r)
            }
            _ => false,
        }
    }

    /// The cluster configuration changed to `version` (core's config
    /// version, the unit `/zookeeper/config`'s watches keep as threshold:
    /// its mzxid). Fires the one-shot and persistent watches on
    /// `/zookeeper/config` set against an older version, as ZooKeeper's
    /// reconfig fires NodeDataChanged there: `Some((defer, count))` if this
    /// connection is notified, `defer` when a watch the request being
    /// answered set must see its reply first, `count` how many
    /// notifications it gets. ZooKeeper 3.8 writes the node twice per
    /// change (the reconfig's own setData, then again when the server
    /// activates the new configuration, `initConfigInZKDatabase`), so a
    /// persistent watch sees two where a one-shot watch, consumed by the
    /// first, sees one. Recursive watches at or
    /// above it fire too, against the config version noted when they were
    /// set (their own thresholds are store revisions).
    pub fn config_changed(&mut self, version: i64) -> Option<(bool, usize)> {
        let path = crate::cmd::system::CONFIG;
        let mut defer = self.fresh.get(path).is_some_and(|&t| version > t);
        let a = Self::take_one_shot(&mut self.data, path, version);
        self.removed(a, path, false);
        let mut lasting = Self::persistent_hit(&self.persistent, path, version);
        let mut p = path;
        loop {
            let after = self.config_recursive.get(p).is_some_and(|&t| version > t);
            if after && self.recursive.contains_key(p) {
                lasting = true;
                defer |= self.fresh_recursive.contains_key(p);
            }
            match path::parent_str(p) {
                Some(up) => p = up,
                None => break,
            }
        }
        match (a, lasting) {
            (false, false) => None,
            (_, false) => Some((defer, 1)),
            (_, true) => Some((defer, 2)),
        }
    }

    /// Notes the config version a recursive watch on `path` is set
    /// against (before [`WatchTable::add_persistent`]), if it covers
    /// `/zookeeper/config`; a watch already there keeps its own.
    pub fn note_config_recursive(&mut self, path: &str, version: i64) {
        let config = crate::cmd::system::CONFIG;
        let covers = path == "/" || config == path || config.starts_with(&format!("{path}/"));
        if covers && !self.recursive.contains_key(path) {
            self.config_recursive.insert(path.to_string(), version);
        }
    }

    /// checkWatches: whether a watch of `kind` exists on `path`.
    pub fn contains(&self, path: &str, kind: i32) -> bool {
        use watcher_type::*;
        match kind {
            CHILDREN => self.child.contains_key(path) || self.persistent.contains_key(path),
            DATA => {
                self.data.contains_key(path)
                    || self.persistent.contains_key(path)
                    || self.recursive.contains_key(path)
            }
            ANY => self.contains(path, CHILDREN) || self.contains(path, DATA),
            PERSISTENT => self.persistent.contains_key(path),
            PERSISTENT_RECURSIVE => self.recursive.contains_key(path),
            _ => false,
        }
    }

    /// removeWatches: removes the watches of `kind` on `path`; false if there
    /// was none (the caller answers NoWatcher).
    pub fn remove(&mut self, path: &str, kind: i32) -> bool {
        let any = self.remove_kind(path, kind);
        // Any kind may have taken a recursive watch too.
        self.removed(any, path, true);
        self.removed(any, path, false)
    }

    fn remove_kind(&mut self, path: &str, kind: i32) -> bool {
        use watcher_type::*;
        match kind {
            CHILDREN => {
                let a = self.child.remove(path).is_some();
                let b = self.persistent.remove(path).is_some();
                a | b
            }
            DATA => {
                let a = self.data.remove(path).is_some();
                let b = self.persistent.remove(path).is_some();
                let c = self.recursive.remove(path).is_some();
                a | b | c
            }
            ANY => {
                let a = self.remove_kind(path, CHILDREN);
                let b = self.remove_kind(path, DATA);
                a | b
            }
            PERSISTENT => self.persistent.remove(path).is_some(),
            PERSISTENT_RECURSIVE => self.recursive.remove(path).is_some(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_core::kv::KeyValue;

    #[test]
    fn config_changes_fire_config_watches_by_config_version() {
        let config = crate::cmd::system::CONFIG;
        let mut t = WatchTable::default();
        // Set against config version 5; store revisions are far above.
        t.add_data(config, 5);
        t.end_request();
        assert_eq!(t.config_changed(5), None, "not a change past the watch");
        assert_eq!(t.config_changed(6), Some((false, 1)));
        assert_eq!(t.config_changed(7), None, "one-shot: consumed");
        // A persistent watch on the node and a recursive one on the root
        // (threshold: revision 1000) both fire, twice, as ZooKeeper's.
        t.add_persistent(config, false, 7);
        t.note_config_recursive("/", 7);
        t.add_persistent("/", true, 1000);
        // Set by the request being answered: after its reply.
        assert_eq!(t.config_changed(8), Some((true, 2)));
        t.end_request();
        assert_eq!(t.config_changed(9), Some((false, 2)));
        // A recursive watch elsewhere does not cover the node.
        let mut u = WatchTable::default();
        u.note_config_recursive("/a", 1);
        u.add_persistent("/a", true, 1000);
        assert_eq!(u.config_changed(2), None);
        // Nor is the node's key event path a match for key events.
        assert!(!u.trigger(&ev(event_type::NODE_DATA_CHANGED, config, 2000)));
    }

    fn ev(kind: i32, path: &str, revision: i64) -> ZkEvent {
        ZkEvent {
            kind,
            path: path.into(),
            revision,
        }
    }

    #[test]
    fn translate_put_and_delete() {
        let kv = KeyValue {
            key: b"/a".to_vec(),
            create_revision: 5,
            mod_revision: 5,
            ..Default::default()
        };
        let e = Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev_kv: None,
        };
        assert_eq!(translate(&e).unwrap().kind, event_type::NODE_CREATED);
        let mut kv2 = kv.clone();
        kv2.mod_revision = 6;
        let e = Event {
            kind: EventKind::Put,
            kv: kv2,
            prev_kv: Some(kv),
        };
        assert_eq!(translate(&e).unwrap().kind, event_type::NODE_DATA_CHANGED);
        let e = Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: b"bad".to_vec(),
                ..Default::default()
            },
            prev_kv: None,
        };
        assert!(translate(&e).is_none());
    }

    /// Keys getChildren hides (not valid ZooKeeper paths, e.g. written
    /// through etcd with a control character) fire no watch, not even a
    /// recursive one on an ancestor.
    #[test]
    fn keys_get_children_hides_fire_nothing() {
        let mut t = WatchTable::default();
        t.add_persistent("/w", true, 0);
        t.add_persistent("/", true, 0);
        for key in [
            &b"/w/a\x01"[..],
            b"/w/a\x7f\xc2\x85",
            "/w/\u{fff5}".as_bytes(),
            b"/w/a\0",
            b"/w//a",
            b"/w/a/",
            b"/w/..",
        ] {
            let e = Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.to_vec(),
                    create_revision: 3,
                    mod_revision: 3,
                    ..Default::default()
                },
                prev_kv: None,
            };
            assert_eq!(translate(&e), None, "{key:?}");
        }
        assert!(t.trigger(&ev(event_type::NODE_CREATED, "/w/ok", 3)));
    }

    #[test]
    fn one_shot_fires_once_and_respects_threshold() {
        let mut t = WatchTable::default();
        t.add_data("/a", 10);
        assert!(!t.trigger(&ev(event_type::NODE_DATA_CHANGED, "/a", 10)));
        assert!(t.trigger(&ev(event_type::NODE_DATA_CHANGED, "/a", 11)));
        assert!(!t.trigger(&ev(event_type::NODE_DATA_CHANGED, "/a", 12)));
        assert!(t.is_empty());
    }

    #[test]
    fn delete_fires_data_and_child_once() {
        let mut t = WatchTable::default();
        t.add_data("/a", 1);
        t.add_child("/a", 1);
        assert!(t.trigger(&ev(event_type::NODE_DELETED, "/a", 2)));
        assert!(t.is_empty());
    }

    /// Paths are fed from the moment they are armed (before the read),
    /// and forgotten only once no watch is left on them.
    #[test]
    fn the_table_arms_and_prunes_its_paths() {
        let mut t = WatchTable::default();
        assert!(!t.fed("/a"));
        t.arm("/a");
        assert!(t.fed("/a"), "armed before the read");
        assert!(!t.fed("/a/b"));
        t.add_data("/a", 1);
        t.add_child("/a", 1);
        t.add_persistent("/r", true, 1);
        assert!(t.fed("/r/x/y"));
        assert!(!t.fed("/rr"));
        let g = t.generation();
        assert!(t.trigger(&ev(event_type::NODE_DATA_CHANGED, "/a", 2)));
        assert!(t.generation() > g);
        t.prune();
        assert!(t.fed("/a"), "the child watch on /a is left");
        assert!(t.trigger(&ev(event_type::NODE_CHILDREN_CHANGED, "/a", 3)));
        t.prune();
        assert!(!t.fed("/a"));
        assert!(t.remove("/r", watcher_type::PERSISTENT_RECURSIVE));
        t.prune();
        assert!(!t.fed("/r/x"));
        // Armed for a read that then set no watch (getData of a missing
        // node): forgotten at the next prune.
        t.add_data("/kept", 5);
        t.arm("/missing");
        t.prune();
        assert!(!t.fed("/missing"));
        assert!(t.fed("/kept"));
    }

    /// An event after the read of the request that set a watch waits for
    /// that request's reply; one the read already reflected does not.
    #[test]
    fn events_after_a_fresh_watch_wait_for_its_reply() {
        let mut t = WatchTable::default();
        t.add_data("/old", 1);
        t.end_request();
        t.add_data("/a", 5);
        t.add_persistent("/r", true, 7);
        assert!(!t.defers(&ev(event_type::NODE_DATA_CHANGED, "/a", 5)));
        assert!(t.defers(&ev(event_type::NODE_DATA_CHANGED, "/a", 6)));
        assert!(t.defers(&ev(event_type::NODE_CREATED, "/r/x", 8)));
        assert!(!t.defers(&ev(event_type::NODE_CREATED, "/r/x", 7)));
        assert!(!t.defers(&ev(event_type::NODE_DATA_CHANGED, "/old", 9)));
        t.end_request();
        assert!(!t.defers(&ev(event_type::NODE_DATA_CHANGED, "/a", 6)));
    }

    #[test]
    fn persistent_and_recursive() {
        let mut t = WatchTable::default();
        t.add_persistent("/a", false, 1);
        t.add_persistent("/r", true, 1);
        assert!(t.trigger(&ev(event_type::NODE_CHILDREN_CHANGED, "/a", 2)));
        assert!(t.trigger(&ev(event_type::NODE_DELETED, "/a", 3)));
        assert!(t.trigger(&ev(event_type::NODE_CREATED, "/r/x/y", 4)));
        assert!(!t.trigger(&ev(event_type::NODE_CHILDREN_CHANGED, "/r/x", 5)));
        assert!(!t.trigger(&ev(event_type::NODE_CREATED, "/rr", 5)));
        assert_eq!(t.len(), 2);
        assert!(t.contains("/r", watcher_type::PERSISTENT_RECURSIVE));
        assert!(t.remove("/r", watcher_type::ANY));
        assert!(!t.remove("/r", watcher_type::ANY));
    }
}
