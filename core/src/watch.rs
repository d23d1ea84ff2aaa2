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
    /// `kv.mod_revision` (only for watchers created with `tree_events`).
    ChildrenChanged,
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
    /// parents whose child set changed (the parent path need not be in range;
    /// the child must be).
    pub tree_events: bool,
}
