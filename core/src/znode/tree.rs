//! The ZooKeeper tree over the flat keyspace (D2): a direct-children index
//! and per-parent child counters/pzxid, maintained at apply time for every
//! create and delete whichever protocol made it.
//!
//! Two counters (D5), kept as ZooKeeper 3.8 keeps them: a parent stores the
//! number of child *creates* ([`TreeNode::creates`]), which names the next
//! sequential child, and its stat `cversion` (creates and deletes) is
//! derived from it as ZooKeeper's `DataNode.copyStat` does:
//! `2 * creates - numChildren`, in 32-bit wrapping arithmetic. Storing the
//! create count and deriving the other is what makes both exact, overflow
//! included (ZooKeeper's sequence wraps after 2^31 creates).
//!
//! Presence rule: a valid path is a znode if its key is live or it has
//! children (an *implicit* node: etcd wrote `/svc/web/1` only). The root is
//! always present. Children sets are rebuilt from the live keys on start;
//! create counts and pzxid are persisted in the `tree` keyspace because history that
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
    /// Number of child creations since this node was created (wrapping):
    /// the next sequential child's suffix.
    pub creates: i32,
    /// Revision of the last child creation or deletion (0: none yet).
    pub pzxid: i64,
}

impl TreeNode {
    /// The stat cversion: child creations plus deletions, derived from the
    /// create count as ZooKeeper derives it.
    pub fn cversion(&self) -> i32 {
        cversion(self.creates, self.children.len())
    }
}

/// ZooKeeper's `stat.cversion * 2 - numChildren` (Java int arithmetic).
pub fn cversion(creates: i32, children: usize) -> i32 {
    creates.wrapping_mul(2).wrapping_sub(children as i32)
}

#[derive(Serialize, Deserialize)]
struct TreeRecord {
    creates: i32,
    pzxid: i64,
    /// Always 1: tells this layout from [`TreeRecordV0`].
    layout: u8,
}

/// The layout before the create count (postcard cannot tell them apart by
/// field names): it stored creates + deletes.
#[derive(Deserialize)]
struct TreeRecordV0 {
    changes: i32,
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
            let node = t.nodes.entry(k.clone()).or_default();
            match postcard::from_bytes::<TreeRecord>(&v) {
                Ok(rec) if rec.layout == 1 => {
                    node.creates = rec.creates;
                    node.pzxid = rec.pzxid;
                }
                _ => {
                    let old: TreeRecordV0 =
                        postcard::from_bytes(&v).map_err(|e| CoreError::Corrupt {
                            path: engine.dir().join("tree"),
                            what: format!("{}: {e}", String::from_utf8_lossy(&k)),
                        })?;
                    // changes = creates + deletes, children = creates - deletes.
                    let n = node.children.len() as i64;
                    node.creates = ((i64::from(old.changes) + n) / 2) as i32;
                    node.pzxid = old.pzxid;
                }
            }
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

    /// A node's (creates, pzxid), `None` if it has no child bookkeeping.
    pub fn counters(&self, path: &[u8]) -> Option<(i32, i64)> {
        self.nodes.get(path).map(|n| (n.creates, n.pzxid))
    }

    /// Sets a node's child counters to a source's values (an import,
    /// [`crate::import`]): the create count (next sequential suffix, D5)
    /// and pzxid.
    pub fn set_counters(&mut self, w: &mut Wtx, path: &[u8], creates: i32, pzxid: i64) {
        let n = self.nodes.entry(path.to_vec()).or_default();
        n.creates = creates;
        n.pzxid = pzxid;
        self.persist(w, path);
    }

    fn persist(&self, w: &mut Wtx, path: &[u8]) {
        if let Some(n) = self.nodes.get(path) {
            let rec = TreeRecord {
                creates: n.creates,
                pzxid: n.pzxid,
                layout: 1,
            };
            w.batch.put(
                Space::Tree,
                path.to_vec(),
                postcard::to_stdvec(&rec).unwrap_or_default(),
            );
        }
    }

    /// A child of `parent` was created (`created`) or deleted.
    fn child_changed(&mut self, w: &mut Wtx, parent: &[u8], created: bool) {
        if let Some(n) = self.nodes.get_mut(parent) {
            if created {
                n.creates = n.creates.wrapping_add(1);
            }
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
            self.child_changed(w, parent, true);
            if !parent_was_present {
                implicit_event(w, parent, EventKind::ImplicitCreated);
                self.add(w, parent, is_live);
            }
        }
    }

    /// `path` just stopped being live. If it has no children it leaves the
    /// tree (its child bookkeeping is dropped, as ZooKeeper forgets a deleted
    /// node's counters), and an implicit parent left childless goes too.
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
            self.child_changed(w, parent, false);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cversion_is_derived_as_zookeeper_does() {
        // 3 creates, 1 delete: 2 children, cversion 4.
        assert_eq!(cversion(3, 2), 4);
        // ZooKeeper's /zookeeper: two children never created: -2.
        assert_eq!(cversion(0, 2), -2);
        // Java int overflow.
        assert_eq!(cversion(i32::MAX, 0), -2);
    }

    #[test]
    fn both_record_layouts_decode() {
        let new = postcard::to_stdvec(&TreeRecord {
            creates: 7,
            pzxid: 9,
            layout: 1,
        })
        .unwrap();
        let rec: TreeRecord = postcard::from_bytes(&new).unwrap();
        assert_eq!((rec.creates, rec.pzxid, rec.layout), (7, 9, 1));
        #[derive(Serialize)]
        struct Old(i32, i64);
        let old = postcard::to_stdvec(&Old(5, 9)).unwrap();
        assert!(postcard::from_bytes::<TreeRecord>(&old).is_err());
        let v0: TreeRecordV0 = postcard::from_bytes(&old).unwrap();
        assert_eq!((v0.changes, v0.pzxid), (5, 9));
    }
}
