//! ZooKeeper writes applied by the state machine: create (all modes),
//! delete, setData, setACL, check and multi, with ZooKeeper's rules and
//! error codes decided here, at apply time, and nowhere else.
//!
//! Like ZooKeeper's PrepRequestProcessor, every op of a request is first
//! checked against the current state plus the pending effects of the ops
//! before it ([`Pending`]); only if all pass are they executed, at one
//! revision. A failed request changes nothing.

use std::collections::HashMap;

use super::Id;
use super::{acl, path, perms, CreateMode, NodeKind, Stat, ZMeta, ZkOp, ZkOpResult, ZkWriteResult};
use crate::engine::Space;
use crate::state::{State, Wtx};
use crate::{CoreError, ZkError};

/// Largest TTL ZooKeeper accepts (EphemeralType.MAX_TTL: 40 bits of ms).
const MAX_TTL_MS: i64 = 0x00FF_FFFF_FFFF;

/// What an op will see of a node, including earlier ops of the same request.
#[derive(Clone, Debug)]
struct NodeView {
    /// Present in the tree (explicitly or implicitly).
    exists: bool,
    /// Has a key of its own.
    explicit: bool,
    /// etcd version (ZooKeeper version + 1).
    version: i64,
    lease: i64,
    meta: ZMeta,
    children: i64,
    /// Child creates so far: the next sequential suffix (D5).
    creates: i32,
}

impl NodeView {
    /// A node not in the tree (never created, deleted, or not a path).
    fn absent() -> NodeView {
        NodeView {
            exists: false,
            explicit: false,
            version: 0,
            lease: 0,
            meta: ZMeta::default(),
            children: 0,
            creates: 0,
        }
    }

    /// The version ZooKeeper shows: etcd version - 1, 0 for an implicit node.
    fn zk_version(&self) -> i32 {
        if self.explicit {
            (self.version - 1) as i32
        } else {
            0
        }
    }
}

type Pending = HashMap<Vec<u8>, NodeView>;

/// ZooKeeper's validatePathForCreate / getParentPathAndValidate: the path up
/// to its last `/` (the root for `/x`); only a path without `/` or with a NUL
/// is refused here.
fn parent_of(p: &str) -> Result<Vec<u8>, ZkError> {
    match p.rfind('/') {
        Some(_) if p.contains('\0') => Err(ZkError::BadArguments),
        Some(0) => Ok(b"/".to_vec()),
        Some(i) => Ok(p.as_bytes()[..i].to_vec()),
        None => Err(ZkError::BadArguments),
    }
}

/// A validated op with every name resolved.
enum Planned {
    Create {
        key: Vec<u8>,
        data: Option<Vec<u8>>,
        lease: i64,
        meta: ZMeta,
    },
    Delete {
        key: Vec<u8>,
    },
    SetData {
        key: Vec<u8>,
        data: Option<Vec<u8>>,
    },
    SetAcl {
        key: Vec<u8>,
        meta: ZMeta,
    },
    Check {
        key: Vec<u8>,
    },
}

fn check_version(expected: i32, actual: i32) -> Result<(), ZkError> {
    if expected == -1 || expected == actual {
        Ok(())
    } else {
        Err(ZkError::BadVersion)
    }
}

impl State {
    /// ZooKeeper metadata of `path` as of this command.
    pub(crate) fn zmeta(&self, w: Option<&Wtx>, path: &[u8]) -> Result<ZMeta, CoreError> {
        if let Some(m) = w.and_then(|w| w.zmeta.get(path)) {
            return Ok(m.clone().unwrap_or_default());
        }
        if let Some(m) = self.group_zmeta(path) {
            return Ok(m.clone().unwrap_or_default());
        }
        match self.engine.get(Space::Znodes, path)? {
            None => Ok(ZMeta::default()),
            Some(b) => ZMeta::decode(&b).map_err(|e| CoreError::Corrupt {
                path: self.engine.dir().join("znodes"),
                what: format!("{}: {e}", String::from_utf8_lossy(path)),
            }),
        }
    }

    /// [`State::write_zmeta`] for a key that was not live before this
    /// write: it has no stored record (every delete removes it,
    /// [`State::delete_key`]), so the default one (an open ACL, a normal
    /// node: most creates) is written as nothing at all rather than as a
    /// tombstone per create.
    pub(crate) fn write_new_zmeta(&mut self, w: &mut Wtx, key: &[u8], meta: ZMeta) {
        if meta.is_default() {
            self.specials.remove(key);
            w.zmeta.insert(key.to_vec(), Some(meta));
        } else {
            self.write_zmeta(w, key, meta);
        }
    }

    pub(crate) fn write_zmeta(&mut self, w: &mut Wtx, key: &[u8], meta: ZMeta) {
        if meta.kind == NodeKind::Normal {
            self.specials.remove(key);
        } else {
            self.specials.insert(key.to_vec());
        }
        if meta.is_default() {
            w.batch.remove(Space::Znodes, key.to_vec());
        } else {
            w.batch.put(Space::Znodes, key.to_vec(), meta.encode());
        }
        w.zmeta.insert(key.to_vec(), Some(meta));
    }

    fn view(&self, pend: &Pending, w: &Wtx, p: &[u8]) -> Result<NodeView, CoreError> {
        if let Some(r) = pend.get(p) {
            return Ok(r.clone());
        }
        if !path::is_valid(p) {
            // Keys that are not ZooKeeper paths are invisible to ZooKeeper.
            return Ok(NodeView::absent());
        }
        let live = self.keys.get(p).and_then(|k| k.live);
        let keys = &self.keys;
        let exists = self
            .tree
            .present(p, |k| keys.get(k).is_some_and(|ki| ki.live.is_some()));
        let node = self.tree.get(p);
        Ok(NodeView {
            exists,
            explicit: live.is_some(),
            version: live.map_or(0, |l| l.version),
            lease: live.map_or(0, |l| l.lease),
            meta: if live.is_some() {
                self.zmeta(Some(w), p)?
            } else {
                ZMeta::default()
            },
            children: node.map_or(0, |n| n.children.len() as i64),
            creates: node.map_or(0, |n| n.creates),
        })
    }

    /// Applies ZooKeeper ops (a single op, or a multi when several).
    pub fn apply_zk(
        &mut self,
        w: &mut Wtx,
        session: i64,
        auth: &[Id],
        ops: &[ZkOp],
    ) -> Result<ZkWriteResult, CoreError> {
        let mut pend = Pending::new();
        let mut plan = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            match self.prep(&mut pend, w, session, auth, op)? {
                Ok(p) => plan.push(p),
                Err(error) => return Ok(ZkWriteResult::Failed { index, error }),
            }
        }
        let mut results = Vec::with_capacity(plan.len());
        for p in plan {
            results.push(self.execute(w, p)?);
        }
        Ok(ZkWriteResult::Applied(results))
    }

    /// Checks one op; the outer `Result` is a storage failure, the inner
    /// one ZooKeeper's answer.
    fn prep(
        &self,
        pend: &mut Pending,
        w: &Wtx,
        session: i64,
        auth: &[Id],
        op: &ZkOp,
    ) -> Result<Result<Planned, ZkError>, CoreError> {
        macro_rules! zk {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                }
            };
        }
        Ok(Ok(match op {
            ZkOp::Create {
                path: p,
                data,
                acl: a,
                mode,
                ttl_ms,
            } => {
                if mode.is_ttl() && (*ttl_ms <= 0 || *ttl_ms > MAX_TTL_MS) {
                    return Ok(Err(ZkError::BadArguments));
                }
                // ZooKeeper's order: a cheap shape check, the ACL, the parent
                // (NoNode), and only then full validation of the final name.
                let parent_path = zk!(parent_of(p));
                let acl_list = zk!(acl::fixup(a, auth));
                let mut parent = self.view(pend, w, &parent_path)?;
                if !parent.exists {
                    return Ok(Err(ZkError::NoNode));
                }
                zk!(acl::check(&parent.meta.acl, perms::CREATE, auth));
                let name = if mode.is_sequential() {
                    format!("{p}{:010}", parent.creates)
                } else {
                    p.clone()
                };
                zk!(path::validate(&name));
                let key = name.into_bytes();
                if self.view(pend, w, &key)?.exists {
                    return Ok(Err(ZkError::NodeExists));
                }
                if parent.explicit && parent.lease != 0 {
                    return Ok(Err(ZkError::NoChildrenForEphemerals));
                }
                let lease = if mode.is_ephemeral() {
                    if session == 0 || !self.leases.contains_key(&session) {
                        return Ok(Err(ZkError::SessionExpired));
                    }
                    session
                } else {
                    0
                };
                let kind = match mode {
                    CreateMode::Container => NodeKind::Container,
                    m if m.is_ttl() => NodeKind::Ttl(*ttl_ms),
                    _ => NodeKind::Normal,
                };
                let meta = ZMeta {
                    acl: acl_list,
                    aversion: 0,
                    kind,
                };
                parent.children += 1;
                parent.creates = parent.creates.wrapping_add(1);
                pend.insert(parent_path, parent);
                let rec = NodeView {
                    exists: true,
                    explicit: true,
                    version: 1,
                    lease,
                    meta: meta.clone(),
                    children: 0,
                    creates: 0,
                };
                pend.insert(key.clone(), rec);
                Planned::Create {
                    key,
                    data: data.clone(),
                    lease,
                    meta,
                }
            }
            ZkOp::Delete { path: p, version } => {
                if p == "/" {
                    // DataTree.isSpecialPath: the root cannot be deleted.
                    return Ok(Err(ZkError::BadArguments));
                }
                let parent_path = zk!(parent_of(p));
                let key = p.as_bytes().to_vec();
                let mut parent = self.view(pend, w, &parent_path)?;
                if !parent.exists {
                    return Ok(Err(ZkError::NoNode));
                }
                zk!(acl::check(&parent.meta.acl, perms::DELETE, auth));
                let node = self.view(pend, w, &key)?;
                if !node.exists {
                    return Ok(Err(ZkError::NoNode));
                }
                zk!(check_version(*version, node.zk_version()));
                if node.children > 0 || !node.explicit {
                    return Ok(Err(ZkError::NotEmpty));
                }
                parent.children -= 1;
                pend.insert(parent_path, parent);
                pend.insert(key.clone(), NodeView::absent());
                Planned::Delete { key }
            }
            ZkOp::SetData {
                path: p,
                data,
                version,
            } => {
                zk!(path::validate(p));
                let key = p.as_bytes().to_vec();
                let mut node = self.view(pend, w, &key)?;
                if !node.exists {
                    return Ok(Err(ZkError::NoNode));
                }
                zk!(acl::check(&node.meta.acl, perms::WRITE, auth));
                zk!(check_version(*version, node.zk_version()));
                node.version = if node.explicit { node.version + 1 } else { 2 };
                node.explicit = true;
                pend.insert(key.clone(), node);
                Planned::SetData {
                    key,
                    data: data.clone(),
                }
            }
            ZkOp::SetAcl {
                path: p,
                acl: a,
                version,
            } => {
                zk!(path::validate(p));
                let acl_list = zk!(acl::fixup(a, auth));
                let key = p.as_bytes().to_vec();
                let mut node = self.view(pend, w, &key)?;
                if !node.exists || !node.explicit {
                    return Ok(Err(ZkError::NoNode));
                }
                zk!(acl::check(&node.meta.acl, perms::ADMIN, auth));
                zk!(check_version(*version, node.meta.aversion));
                node.meta.acl = acl_list;
                node.meta.aversion = node.meta.aversion.wrapping_add(1);
                let meta = node.meta.clone();
                pend.insert(key.clone(), node);
                Planned::SetAcl { key, meta }
            }
            ZkOp::Check { path: p, version } => {
                zk!(path::validate(p));
                let node = self.view(pend, w, p.as_bytes())?;
                if !node.exists {
                    return Ok(Err(ZkError::NoNode));
                }
                zk!(acl::check(&node.meta.acl, perms::READ, auth));
                zk!(check_version(*version, node.zk_version()));
                Planned::Check {
                    key: p.as_bytes().to_vec(),
                }
            }
            ZkOp::Refused { error } => return Ok(Err(*error)),
        }))
    }

    fn execute(&mut self, w: &mut Wtx, p: Planned) -> Result<ZkOpResult, CoreError> {
        Ok(match p {
            Planned::Create {
                key,
                data,
                lease,
                meta,
            } => {
                self.put_key_from(w, &key, data, lease, 1)?;
                self.write_new_zmeta(w, &key, meta);
                let stat = self.stat_or_default(Some(w), &key)?;
                ZkOpResult::Create {
                    path: String::from_utf8_lossy(&key).into_owned(),
                    stat,
                }
            }
            Planned::Delete { key } => {
                self.delete_key(w, &key)?;
                ZkOpResult::Delete
            }
            Planned::SetData { key, data } => {
                let lease = self
                    .keys
                    .get(&key)
                    .and_then(|k| k.live)
                    .map_or(0, |l| l.lease);
                // An implicit znode shows version 0; its first write makes it 1.
                self.put_key_from(w, &key, data, lease, 2)?;
                ZkOpResult::SetData {
                    stat: self.stat_or_default(Some(w), &key)?,
                }
            }
            Planned::SetAcl { key, meta } => {
                self.write_zmeta(w, &key, meta);
                ZkOpResult::SetAcl {
                    stat: self.stat_or_default(Some(w), &key)?,
                }
            }
            Planned::Check { key } => ZkOpResult::Check {
                stat: self.stat_or_default(Some(w), &key)?,
            },
        })
    }

    fn stat_or_default(&self, w: Option<&Wtx>, key: &[u8]) -> Result<Stat, CoreError> {
        Ok(self.zk_stat(w, key)?.unwrap_or_default())
    }

    /// Leader housekeeping: removes an empty container that once had
    /// children, or a childless TTL node not modified for its TTL.
    pub fn apply_reap(&mut self, w: &mut Wtx, p: &str) -> Result<bool, CoreError> {
        let key = p.as_bytes();
        if !self.reapable(Some(w), key, w.now_ms)? {
            return Ok(false);
        }
        self.delete_key(w, key)?;
        Ok(true)
    }

    /// Whether `key` should be reaped at time `now_ms`.
    pub fn reapable(&self, w: Option<&Wtx>, key: &[u8], now_ms: i64) -> Result<bool, CoreError> {
        let Some(live) = self.keys.get(key).and_then(|k| k.live) else {
            return Ok(false);
        };
        let node = self.tree.get(key);
        if node.is_some_and(|n| !n.children.is_empty()) {
            return Ok(false);
        }
        Ok(match self.zmeta(w, key)?.kind {
            NodeKind::Normal => false,
            // ContainerManager: the persisted cversion, i.e. child creates.
            NodeKind::Container => node.is_some_and(|n| n.creates > 0),
            NodeKind::Ttl(ttl) => {
                let mtime = self.record(w, live.mod_rev)?.mtime;
                now_ms.saturating_sub(mtime) > ttl
            }
        })
    }
}
