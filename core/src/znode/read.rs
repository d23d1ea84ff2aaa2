//! ZooKeeper reads over the state: stats (D3) and the read ops.

use super::{acl, path, perms, Acl, Id, Stat};
use crate::state::{State, Wtx};
use crate::{CoreError, ZkError};

/// The child every ZooKeeper root has: the system node `/zookeeper`,
/// served by the ZooKeeper frontend and never stored (D1). Clients see it
/// among the root's children and in its numChildren, and a stored key of
/// that name is shadowed by it.
pub const SYSTEM_CHILD: &str = "zookeeper";

/// How many system nodes the root's subtree holds (`/zookeeper`,
/// `/zookeeper/quota`, `/zookeeper/config`), counted by
/// getAllChildrenNumber (DataTree.getAllChildrenNumber).
const SYSTEM_NODES: i32 = 3;

impl State {
    fn is_live(&self, key: &[u8]) -> bool {
        self.keys.get(key).is_some_and(|k| k.live.is_some())
    }

    /// The stat of a znode as a ZooKeeper client sees it, `None` if it is
    /// not in the tree (D3). czxid/mzxid are create/mod revisions, version
    /// = etcd version - 1 (0 for an implicit node, like a znode never
    /// written), ephemeralOwner = the lease (0 for containers and TTL
    /// nodes); the root counts its system child.
    pub fn zk_stat(&self, w: Option<&Wtx>, key: &[u8]) -> Result<Option<Stat>, CoreError> {
        if !self.tree.present(key, |k| self.is_live(k)) {
            return Ok(None);
        }
        let node = self.tree.get(key);
        let mut st = Stat {
            cversion: node.map_or(0, |n| n.cversion()),
            num_children: node.map_or(0, |n| n.children.len() as i32),
            version: 0,
            ..Default::default()
        };
        if let Some(live) = self.keys.get(key).and_then(|k| k.live) {
            let rec = self.record(w, live.mod_rev)?;
            let meta = self.zmeta(w, key)?;
            st.czxid = live.create_revision;
            st.mzxid = live.mod_rev.main;
            st.ctime = rec.ctime;
            st.mtime = rec.mtime;
            st.version = (live.version - 1) as i32;
            st.aversion = meta.aversion;
            st.ephemeral_owner = meta.ephemeral_owner(live.lease);
            st.data_length = rec.value.len() as i32;
        }
        if key == b"/" {
            // The root is never created: ZooKeeper keeps its czxid and
            // ctime at 0 even after setData.
            st.czxid = 0;
            st.ctime = 0;
            if !node.is_some_and(|n| n.children.contains(SYSTEM_CHILD.as_bytes())) {
                // One more child that was never created: the cversion,
                // derived as `2 * creates - numChildren` (see `tree`), is
                // one less, as ZooKeeper's root (-1 when fresh).
                st.num_children += 1;
                st.cversion = st.cversion.wrapping_sub(1);
            }
        }
        st.pzxid = match node.map_or(0, |n| n.pzxid) {
            0 => st.czxid,
            p => p,
        };
        Ok(Some(st))
    }

    fn readable(&self, p: &str, auth: &[Id]) -> Result<Stat, ZkError> {
        path::validate(p)?;
        let st = self
            .zk_stat(None, p.as_bytes())
            .map_err(|_| ZkError::NoNode)?;
        let st = st.ok_or(ZkError::NoNode)?;
        let meta = self
            .zmeta(None, p.as_bytes())
            .map_err(|_| ZkError::NoNode)?;
        acl::check(&meta.acl, perms::READ, auth)?;
        Ok(st)
    }

    /// getData: `None` is null data ([`crate::mvcc::Record::null_data`]);
    /// an implicit znode has empty data.
    pub fn zk_get_data(&self, p: &str, auth: &[Id]) -> Result<(Option<Vec<u8>>, Stat), ZkError> {
        let st = self.readable(p, auth)?;
        let data = match self.keys.get(p.as_bytes()).and_then(|k| k.live) {
            Some(live) => {
                let rec = self
                    .record(None, live.mod_rev)
                    .map_err(|_| ZkError::NoNode)?;
                (!rec.null_data).then_some(rec.value)
            }
            None => Some(Vec::new()),
        };
        Ok((data, st))
    }

    pub fn zk_exists(&self, p: &str) -> Option<Stat> {
        path::validate(p).ok()?;
        self.zk_stat(None, p.as_bytes()).ok().flatten()
    }

    pub fn zk_exists_checked(&self, p: &str, auth: &[Id]) -> Result<Option<Stat>, ZkError> {
        match self.zk_exists(p) {
            None => Ok(None),
            Some(st) => {
                let meta = self
                    .zmeta(None, p.as_bytes())
                    .map_err(|_| ZkError::NoNode)?;
                acl::check(&meta.acl, perms::READ, auth)?;
                Ok(Some(st))
            }
        }
    }

    pub fn zk_get_children(&self, p: &str, auth: &[Id]) -> Result<(Vec<String>, Stat), ZkError> {
        let st = self.readable(p, auth)?;
        let mut names: Vec<String> = self.tree.get(p.as_bytes()).map_or_else(Vec::new, |n| {
            n.children
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        });
        if p == "/" && !names.iter().any(|n| n == SYSTEM_CHILD) {
            let at = names.partition_point(|n| n.as_str() < SYSTEM_CHILD);
            names.insert(at, SYSTEM_CHILD.to_string());
        }
        Ok((names, st))
    }

    pub fn zk_all_children_number(&self, p: &str, auth: &[Id]) -> Result<i32, ZkError> {
        self.readable(p, auth)?;
        let root = p == "/";
        let mut count = if root { SYSTEM_NODES } else { 0 };
        let mut stack = vec![p.as_bytes().to_vec()];
        while let Some(cur) = stack.pop() {
            if let Some(n) = self.tree.get(&cur) {
                for c in &n.children {
                    if cur == b"/" && c == SYSTEM_CHILD.as_bytes() {
                        // Shadowed by the system node, counted above.
                        continue;
                    }
                    count = count.saturating_add(1);
                    stack.push(path::join(&cur, c));
                }
            }
        }
        Ok(count)
    }

    pub fn zk_get_acl(&self, p: &str, auth: &[Id]) -> Result<(Vec<Acl>, Stat), ZkError> {
        path::validate(p)?;
        let st = self
            .zk_stat(None, p.as_bytes())
            .map_err(|_| ZkError::NoNode)?
            .ok_or(ZkError::NoNode)?;
        let meta = self
            .zmeta(None, p.as_bytes())
            .map_err(|_| ZkError::NoNode)?;
        acl::check(&meta.acl, perms::READ | perms::ADMIN, auth)?;
        if acl::allowed(&meta.acl, perms::ADMIN, auth) {
            return Ok((meta.acl, st));
        }
        let masked = meta
            .acl
            .into_iter()
            .map(|mut a| {
                if a.id.scheme == "digest" {
                    let user = a.id.id.split(':').next().unwrap_or("").to_string();
                    a.id.id = format!("{user}:x");
                }
                a
            })
            .collect();
        Ok((masked, st))
    }

    pub fn zk_ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        self.leases.get(&session).map_or_else(Vec::new, |l| {
            l.keys
                .iter()
                .filter(|k| k.starts_with(prefix.as_bytes()) && path::is_valid(k))
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect()
        })
    }
}
