//! The ZooKeeper tree over the flat keyspace (D2): a direct-children index
//! and per-parent cversion/pzxid, maintained at apply time for every create
//! and delete whichever protocol made it.
//!
//! Presence rule: a valid path is a znode if its key is live or it has
//! children (an *implicit* node: etcd wrote `/svc/web/1` only). The root is
//! always present. Children sets are rebuilt from the live keys on start;
//! cversion/pzxid are persisted in the `tree` keyspace because history that
//! would derive them may be compacted.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::path;
use crate::engine::{Engine, Space};
use crate::kv::KeyValue;
use crate::state::Wtx;
use crate::watch::{Event, EventKind};
use crate::CoreError;

/// Child bookkeeping of one znode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeNode {
    /// Names (last segment) of the direct children.
    pub children: BTreeSet<Vec<u8>>,
    /// Number of child creations and deletions since this node was created.
    pub cversion: i32,
    /// Revision of the last child creation or deletion (0: none yet).
    pub pzxid: i64,
}

#[derive(Serialize, Deserialize)]
struct TreeRecord {
    cversion: i32,
    pzxid: i64,
}

#[derive(Debug, Default)]
pub struct Tree {
    nodes: HashMap<Vec<u8>, TreeNode>,
}

impl Tree {
    /// Rebuilds children from the live keys and loads cversion/pzxid.
    pub fn load<'a>(
        engine: &Engine,
        live_keys: impl Iterator<Item = &'a Vec<u8>>,
    ) -> Result<Tree, CoreError> {
        let mut t = Tree::default();
        t.nodes.insert(b"/".to_vec(), TreeNode::default());
        for key in live_keys {
            if !path::is_valid(key) {
                continue;
            }
            let mut child: &[u8] = key;
            while let Some(parent) = path::parent(child) {
                let node = t.nodes.entry(parent.to_vec()).or_default();
                if !node.children.insert(path::name(child).to_vec()) {
                    break; // ancestors already registered
                }
                child = parent;
            }
        }
        for item in engine.scan_all(Space::Tree) {
            let (k, v) = item?;
            let rec: TreeRecord = postcard::from_bytes(&v).map_err(|e| CoreError::Corrupt {
                path: engine.dir().join("tree"),
                what: format!("{}: {e}", String::from_utf8_lossy(&k)),
            })?;
            let node = t.nodes.entry(k).or_default();
            node.cversion = rec.cversion;
            node.pzxid = rec.pzxid;
        }
        Ok(t)
    }

    pub fn get(&self, path: &[u8]) -> Option<&TreeNode> {
        self.nodes.get(path)
    }

    pub fn num_children(&self, path: &[u8]) -> usize {
        self.nodes.get(path).map_or(0, |n| n.children.len())
    }

    /// Whether `path` is a znode, given which keys are live.
    pub fn present(&self, path: &[u8], is_live: impl Fn(&[u8]) -> bool) -> bool {
        path == b"/" || is_live(path) || self.num_children(path) > 0
    }

    fn persist(&self, w: &mut Wtx, path: &[u8]) {
        if let Some(n) = self.nodes.get(path) {
            let rec = TreeRecord {
                cversion: n.cversion,
                pzxid: n.pzxid,
            };
            w.batch.put(
                Space::Tree,
                path.to_vec(),
                postcard::to_stdvec(&rec).unwrap_or_default(),
            );
        }
    }

    fn child_changed(&mut self, w: &mut Wtx, parent: &[u8]) {
        if let Some(n) = self.nodes.get_mut(parent) {
            n.cversion = n.cversion.wrapping_add(1);
            n.pzxid = w.main;
        }
        self.persist(w, parent);
        let kv = KeyValue {
            key: parent.to_vec(),
            mod_revision: w.main,
            ..Default::default()
        };
        w.events.push(Event {
            kind: EventKind::ChildrenChanged,
            kv,
            prev_kv: None,
        });
    }

    /// `path` just became live. Registers it with its parent, and the parent
    /// with its own parent if the parent only now becomes (implicitly)
    /// present.
    pub fn add(&mut self, w: &mut Wtx, path: &[u8], is_live: impl Fn(&[u8]) -> bool + Copy) {
        if !path::is_valid(path) {
            return;
        }
        let Some(parent) = path::parent(path) else {
            return;
        };
        let parent_was_present = self.present(parent, is_live);
        let node = self.nodes.entry(parent.to_vec()).or_default();
        if node.children.insert(path::name(path).to_vec()) {
            self.child_changed(w, parent);
            if !parent_was_present {
                implicit_event(w, parent, EventKind::ImplicitCreated);
                self.add(w, parent, is_live);
            }
        }
    }

    /// `path` just stopped being live. If it has no children it leaves the
    /// tree (its child bookkeeping is dropped, as ZooKeeper forgets a deleted
    /// node's cversion), and an implicit parent left childless goes too.
    pub fn remove(&mut self, w: &mut Wtx, path: &[u8], is_live: impl Fn(&[u8]) -> bool + Copy) {
        if !path::is_valid(path) || path == b"/" || self.num_children(path) > 0 {
            return;
        }
        if self.nodes.remove(path).is_some() {
            w.batch.remove(Space::Tree, path.to_vec());
        }
        let Some(parent) = path::parent(path) else {
            return;
        };
        let removed = self
            .nodes
            .get_mut(parent)
            .is_some_and(|n| n.children.remove(path::name(path)));
        if removed {
            self.child_changed(w, parent);
            if !self.present(parent, is_live) {
                implicit_event(w, parent, EventKind::ImplicitDeleted);
                self.remove(w, parent, is_live);
            }
        }
    }
}

/// An implicit znode appeared or vanished at this command's revision.
fn implicit_event(w: &mut Wtx, path: &[u8], kind: EventKind) {
    let kv = KeyValue {
        key: path.to_vec(),
        mod_revision: w.main,
        ..Default::default()
    };
    w.events.push(Event {
        kind,
        kv,
        prev_kv: None,
    });
}
