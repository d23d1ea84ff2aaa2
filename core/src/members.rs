//! Cluster membership as the state machine knows it: who the members are,
//! their names and URLs (etcd's Cluster API), kept in the `meta` keyspace
//! under `member/<id>` and changed only by applied log entries (conf changes
//! carry the member in their context) — or, for a brand-new cluster, written
//! identically by every member at bootstrap from `--initial-cluster`.
//!
//! Beside each member, how it appears in ZooKeeper's dynamic configuration
//! (`/zookeeper/config`): its ZooKeeper server id (`myid`), election port
//! and client address ([`ZkServer`], under `zkserver/<id>`), and the
//! configuration's version, the raft index of the last change to either
//! table (`config_index`). They are kept apart from [`Member`] so the
//! member records (in the store and in conf-change entries) keep their
//! encoding.

use serde::{Deserialize, Serialize};

use crate::engine::Space;
use crate::state::{State, Wtx};
use crate::CoreError;

const PREFIX: &[u8] = b"member/";
const ZK_PREFIX: &[u8] = b"zkserver/";
const CONFIG_INDEX: &[u8] = b"config_index";
const CONFIG_TIME: &[u8] = b"config_time";

/// One member of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Member, postcard::Error> {
        postcard::from_bytes(b)
    }
}

/// How a member appears in ZooKeeper's dynamic configuration
/// (`server.<server_id>=<peer host>:<peer port>:<election_port>:<role>;<client_addr>`).
/// A member that never published one is shown with its member id as
/// server id and its peer port as election port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZkServer {
    /// ZooKeeper's server id (`myid`, `server.N`).
    pub server_id: u64,
    /// ZooKeeper's election port; janus members elect over their peer
    /// port, so this is only shown.
    pub election_port: u16,
    /// `host:port` of the member's ZooKeeper endpoint (empty: unknown).
    pub client_addr: String,
}

/// A member's id: derived from its sorted peer URLs and the cluster token,
/// so that a member started with `--initial-cluster-state existing` knows the
/// id `member add` gave it. Never 0.
pub fn member_id_for(peer_urls: &[String], token: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha256::new();
    h.update(urls.join(",").as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // Positive as an i64 too (etcd prints ids as hex of a uint64; some
    // clients parse them as int64).
    (u64::from_be_bytes(b) >> 1).max(1)
}

fn key(id: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn zk_key(id: u64) -> Vec<u8> {
    let mut k = ZK_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// What a conf change does to the member table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Add(Member),
    Promote(u64),
    /// A voter becomes a learner (ZooKeeper: a participant becomes an
    /// observer).
    Demote(u64),
    Remove(u64),
}

impl State {
    pub(crate) fn load_members(&mut self) -> Result<(), CoreError> {
        let mut end = PREFIX.to_vec();
        end.push(0xff);
        for item in self.engine.scan(Space::Meta, PREFIX.to_vec()..end, false) {
            let (k, v) = item?;
            let m = Member::decode(&v).map_err(|e| CoreError::Corrupt {
                path: self.engine.dir().join("meta"),
                what: format!("member {}: {e}", String::from_utf8_lossy(&k)),
            })?;
            self.members.insert(m.id, m);
        }
        let mut end = ZK_PREFIX.to_vec();
        end.push(0xff);
        for item in self
            .engine
            .scan(Space::Meta, ZK_PREFIX.to_vec()..end, false)
        {
            let (k, v) = item?;
            let id = k
                .get(ZK_PREFIX.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            let server: Option<ZkServer> = postcard::from_bytes(&v).ok();
            match (id, server) {
                (Some(id), Some(server)) => {
                    self.zk_servers.insert(id, server);
                }
                _ => {
                    return Err(CoreError::Corrupt {
                        path: self.engine.dir().join("meta"),
                        what: format!("zk server {}", String::from_utf8_lossy(&k)),
                    })
                }
            }
        }
        self.config_index = crate::state::read_u64(&self.engine, CONFIG_INDEX)?.unwrap_or(0);
        self.config_time_ms =
            crate::state::read_u64(&self.engine, CONFIG_TIME)?.unwrap_or(0) as i64;
        self.hub.config_changed(self.config_index);
        Ok(())
    }

    /// Records that the cluster configuration changed at raft `index`
    /// (ZooKeeper's config version), at the proposer's wall-clock time
    /// carried in the entry (`w.now_ms`, so every member records the same
    /// time: the config node's mtime), and announces it to the hub.
    pub(crate) fn note_config_change(&mut self, w: &mut Wtx, index: u64) {
        self.config_index = index;
        self.config_time_ms = w.now_ms;
        w.batch.put(
            Space::Meta,
            CONFIG_INDEX.to_vec(),
            index.to_be_bytes().to_vec(),
        );
        w.batch.put(
            Space::Meta,
            CONFIG_TIME.to_vec(),
            (w.now_ms as u64).to_be_bytes().to_vec(),
        );
        self.hub.config_changed(index);
    }

    /// Sets how member `id` appears in ZooKeeper's dynamic configuration;
    /// false (and nothing written) if there is no such member.
    pub(crate) fn apply_zk_server(
        &mut self,
        w: &mut Wtx,
        id: u64,
        server: &ZkServer,
        index: u64,
    ) -> bool {
        if !self.members.contains_key(&id) {
            return false;
        }
        if self.zk_servers.get(&id) != Some(server) {
            let Ok(bytes) = postcard::to_stdvec(server) else {
                return false;
            };
            w.batch.put(Space::Meta, zk_key(id), bytes);
            self.zk_servers.insert(id, server.clone());
            self.note_config_change(w, index);
        }
        true
    }

    fn write_member(&mut self, w: &mut Wtx, m: Member) {
        w.batch.put(Space::Meta, key(m.id), m.encode());
        self.members.insert(m.id, m);
    }

    /// Bootstrap of a new cluster: the same initial members on every member.
    pub fn bootstrap_members(&mut self, members: &[Member]) -> Result<(), CoreError> {
        if !self.members.is_empty() {
            return Ok(());
        }
        let mut w = self.begin(0);
        for m in members {
            self.write_member(&mut w, m.clone());
        }
        self.engine.commit(w.batch)
    }

    pub fn apply_member_change(&mut self, w: &mut Wtx, change: MemberChange) {
        match change {
            MemberChange::Add(m) => self.write_member(w, m),
            MemberChange::Promote(id) | MemberChange::Demote(id) => {
                if let Some(mut m) = self.members.get(&id).cloned() {
                    m.is_learner = matches!(change, MemberChange::Demote(_));
                    self.write_member(w, m);
                }
            }
            MemberChange::Remove(id) => {
                self.members.remove(&id);
                w.batch.remove(Space::Meta, key(id));
                if self.zk_servers.remove(&id).is_some() {
                    w.batch.remove(Space::Meta, zk_key(id));
                }
            }
        }
    }

    /// A member's published attributes (name, client URLs) or new peer URLs.
    pub fn apply_member_update(
        &mut self,
        w: &mut Wtx,
        id: u64,
        name: Option<String>,
        client_urls: Option<Vec<String>>,
        peer_urls: Option<Vec<String>>,
    ) -> bool {
        let Some(mut m) = self.members.get(&id).cloned() else {
            return false;
        };
        if let Some(n) = name {
            m.name = n;
        }
        if let Some(c) = client_urls {
            m.client_urls = c;
        }
        if let Some(p) = peer_urls {
            m.peer_urls = p;
        }
        self.write_member(w, m);
        true
    }
}
