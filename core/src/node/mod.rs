//! The member: one raft node, its state machine and the handle frontends use.
//!
//! [`Node`] is cheap to clone and shared by every frontend task. Writes go
//! through [`Node::propose`] (one raft command each, D7); reads are served
//! from the local state machine, after [`Node::read_barrier`] when they must
//! be linearizable (D8).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use protobuf::Message as _;
use raft::prelude::{ConfChangeV2, Entry, EntryType};
use raft::{RawNode, StateRole};
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::command::{Applied, Command, CommandResult, Proposal};
use crate::engine::Engine;
use crate::kv::{LeaseInfo, RangeRequest, RangeResponse};
use crate::raft_log::RaftLog;
use crate::state::State;
use crate::watch::{WatchRequest, Watcher};
use crate::znode::{Acl, Id, Stat};
use crate::{CoreError, KvError, ZkError};

/// How to run a member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Directory of the member's fjall database.
    pub data_dir: PathBuf,
    /// Human name (etcd `--name`).
    pub name: String,
    /// Raft id of this member (etcd member id), never 0.
    pub member_id: u64,
    /// Cluster id reported in response headers.
    pub cluster_id: u64,
    /// Secret for ZooKeeper session passwords (same on every member).
    pub cluster_secret: Vec<u8>,
    /// Raft tick.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: usize,
    /// How long a proposer waits for its command to apply.
    pub request_timeout: Duration,
    /// How often the leader looks for empty containers and expired TTL nodes.
    pub reap_interval: Duration,
}

impl NodeConfig {
    /// A single member with janus defaults in `data_dir`.
    pub fn single(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            name: "default".into(),
            member_id: 1,
            cluster_id: 1,
            cluster_secret: b"janus".to_vec(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            request_timeout: Duration::from_secs(7),
            reap_interval: Duration::from_secs(1),
        }
    }
}

/// etcd's response header fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

/// What etcd's Maintenance.Status reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub header: Header,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub applied_index: u64,
    pub compact_revision: i64,
    pub db_size: i64,
}

/// A running member.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: NodeConfig,
    state: Arc<RwLock<State>>,
    tx: Mutex<std_mpsc::Sender<Msg>>,
    term: AtomicU64,
    leader: AtomicU64,
    last_index: AtomicU64,
    next_request: AtomicU64,
    /// Lease deadlines, kept by every member, acted on by the leader (D9).
    deadlines: Mutex<HashMap<i64, Instant>>,
    stopped: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

type Reply<T> = oneshot::Sender<Result<T, CoreError>>;

enum Msg {
    Propose {
        id: u64,
        data: Vec<u8>,
        reply: Option<Reply<Applied>>,
    },
    Read {
        reply: Reply<()>,
    },
    Stop,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Forwards raft-rs's slog records to tracing.
struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, r: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match r.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", r.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", r.msg()),
            slog::Level::Info => tracing::info!(target: "raft", "{}", r.msg()),
            _ => tracing::trace!(target: "raft", "{}", r.msg()),
        }
        Ok(())
    }
}

impl Node {
    /// Opens the data dir, replays the log from the applied index and starts
    /// the raft loop.
    pub fn start(cfg: NodeConfig) -> Result<Node, CoreError> {
        let engine = Arc::new(Engine::open(&cfg.data_dir)?);
        let state = State::load(Arc::clone(&engine))?;
        let applied = state.applied_index;
        let log = RaftLog::open(Arc::clone(&engine), &[cfg.member_id])?;
        let raft_cfg = raft::Config {
            id: cfg.member_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: (cfg.election_ticks / 10).max(1),
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 * 1024 * 1024,
            max_committed_size_per_ready: 16 * 1024 * 1024,
            ..Default::default()
        };
        raft_cfg
            .validate()
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(SlogToTracing, slog::o!());
        let mut raw =
            RawNode::new(&raft_cfg, log, &logger).map_err(|e| CoreError::Raft(e.to_string()))?;
        let voters = raw
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .collect::<Vec<_>>();
        if voters == [cfg.member_id] {
            // A one-member group need not wait an election timeout.
            raw.campaign().map_err(|e| CoreError::Raft(e.to_string()))?;
        }
        let now = Instant::now();
        let deadlines = state
            .leases
            .iter()
            .map(|(id, l)| (*id, now + Duration::from_millis(l.ttl_ms as u64)))
            .collect();
        tracing::info!(
            dir = %cfg.data_dir.display(),
            applied,
            revision = state.revision,
            keys = state.keys.len(),
            "member {} opened",
            cfg.member_id
        );
        let (tx, rx) = std_mpsc::channel();
        let inner = Arc::new(Inner {
            cfg,
            state: Arc::new(RwLock::new(state)),
            tx: Mutex::new(tx),
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            last_index: AtomicU64::new(0),
            next_request: AtomicU64::new(1),
            deadlines: Mutex::new(deadlines),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let mut runner = Runner {
            raw,
            inner: Arc::clone(&inner),
            rx,
            pending: HashMap::new(),
            reads_waiting: Vec::new(),
            reads_inflight: HashMap::new(),
            reads_ready: Vec::new(),
            next_read: 1,
            revoking: HashMap::new(),
            last_reap: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || runner.run())
            .map_err(|e| CoreError::Raft(format!("cannot start raft thread: {e}")))?;
        if let Ok(mut t) = inner.thread.lock() {
            *t = Some(handle);
        }
        Ok(Node { inner })
    }

    fn send(&self, m: Msg) -> Result<(), CoreError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(CoreError::Stopped);
        }
        let tx = self.inner.tx.lock().map_err(|_| CoreError::Stopped)?;
        tx.send(m).map_err(|_| CoreError::Stopped)
    }

    /// Stops the raft loop after a final sync. Idempotent.
    pub fn stop(&self) {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(tx) = self.inner.tx.lock() {
            let _ = tx.send(Msg::Stop);
        }
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Proposes a command and waits until it is applied on this member.
    pub async fn propose(&self, command: Command) -> Result<Applied, CoreError> {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let p = Proposal {
            proposer: self.inner.cfg.member_id,
            request_id: id,
            now_ms: now_ms(),
            command,
        };
        let data = postcard::to_stdvec(&p).map_err(|e| CoreError::Encoding(e.to_string()))?;
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Propose {
            id,
            data,
            reply: Some(reply),
        })?;
        match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CoreError::Stopped),
            Err(_) => Err(CoreError::Timeout),
        }
    }

    /// Returns once this member has applied everything committed when the
    /// call was made (raft ReadIndex, batched): reads after it are
    /// linearizable.
    pub async fn read_barrier(&self) -> Result<(), CoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Read { reply })?;
        match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CoreError::Stopped),
            Err(_) => Err(CoreError::Timeout),
        }
    }

    pub fn member_id(&self) -> u64 {
        self.inner.cfg.member_id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    pub fn header(&self) -> Header {
        Header {
            cluster_id: self.inner.cfg.cluster_id,
            member_id: self.inner.cfg.member_id,
            revision: self.revision(),
            raft_term: self.inner.term.load(Ordering::Acquire),
        }
    }

    pub fn status(&self) -> Status {
        let st = self.state();
        Status {
            header: Header {
                cluster_id: self.inner.cfg.cluster_id,
                member_id: self.inner.cfg.member_id,
                revision: st.revision,
                raft_term: self.inner.term.load(Ordering::Acquire),
            },
            leader: self.inner.leader.load(Ordering::Acquire),
            raft_index: self.inner.last_index.load(Ordering::Acquire),
            raft_term: self.inner.term.load(Ordering::Acquire),
            applied_index: st.applied_index,
            compact_revision: st.compact_revision,
            db_size: st.engine.disk_size() as i64,
        }
    }

    /// Current store revision.
    pub fn revision(&self) -> i64 {
        self.state().revision
    }

    /// Local read (see [`crate::kv`] and [`crate::mvcc::range`]).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        Ok(self.state().range(None, req)?)
    }

    pub fn watch(&self, req: WatchRequest) -> Result<Watcher, KvError> {
        Watcher::subscribe(&self.inner.state, req)
    }

    /// Refreshes a lease; returns its TTL in seconds.
    pub fn lease_keepalive(&self, id: i64) -> Result<i64, KvError> {
        let ttl_ms = self
            .state()
            .leases
            .get(&id)
            .map(|l| l.ttl_ms)
            .ok_or(KvError::LeaseNotFound)?;
        if let Ok(mut d) = self.inner.deadlines.lock() {
            d.insert(id, Instant::now() + Duration::from_millis(ttl_ms as u64));
        }
        Ok(crate::lease::ttl_secs(ttl_ms))
    }

    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseInfo, KvError> {
        let mut info = self
            .state()
            .lease_info(id, keys)
            .ok_or(KvError::LeaseNotFound)?;
        if let Some(deadline) = self
            .inner
            .deadlines
            .lock()
            .ok()
            .and_then(|d| d.get(&id).copied())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            info.ttl = crate::lease::ttl_secs(left.as_millis() as i64).min(info.granted_ttl);
        }
        Ok(info)
    }

    pub fn leases(&self) -> Vec<i64> {
        self.state().leases.keys().copied().collect()
    }

    /// Whether a lease (session) currently exists.
    pub fn lease_exists(&self, id: i64) -> bool {
        self.state().leases.contains_key(&id)
    }

    /// etcd HashKV: crc32 (Castagnoli as etcd? no: IEEE over our records) of
    /// every retained record up to `revision` (0 = current), in revision
    /// order. Equal on members with equal history. Returns (hash,
    /// compact_revision, revision).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), KvError> {
        let st = self.state();
        let rev = st.read_revision(revision)?;
        let mut h = crc32fast::Hasher::new();
        let end = crate::mvcc::Rev::new(rev + 1, 0).to_bytes();
        for item in st.engine.scan(crate::engine::Space::Revs, ..end, false) {
            let (k, v) = item?;
            h.update(&k);
            h.update(&v);
        }
        Ok((h.finalize(), st.compact_revision, rev))
    }

    /// A consistent export of the member's state, in chunks: every keyspace
    /// except the raft log, as length-prefixed (keyspace, key, value)
    /// records (Maintenance.Snapshot).
    pub fn export_snapshot(&self) -> Result<Vec<Vec<u8>>, CoreError> {
        let st = self.state();
        let mut chunks = Vec::new();
        let mut cur = Vec::new();
        for (tag, space) in crate::engine::Space::EXPORTED.iter().enumerate() {
            for item in st.engine.scan_all(*space) {
                let (k, v) = item?;
                cur.push(tag as u8);
                cur.extend_from_slice(&(k.len() as u32).to_be_bytes());
                cur.extend_from_slice(&k);
                cur.extend_from_slice(&(v.len() as u32).to_be_bytes());
                cur.extend_from_slice(&v);
                if cur.len() >= 64 * 1024 {
                    chunks.push(std::mem::take(&mut cur));
                }
            }
        }
        if !cur.is_empty() {
            chunks.push(cur);
        }
        Ok(chunks)
    }

    /// Compacts the storage engine's files (etcd Defragment).
    pub fn defragment(&self) -> Result<(), CoreError> {
        self.state().engine.major_compact()
    }

    /// ZooKeeper session password: HMAC-SHA256 of the session id under the
    /// cluster secret, truncated to 16 bytes (D4), so any member can check it.
    pub fn session_password(&self, session: i64) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.inner.cfg.cluster_secret) {
            mac.update(&session.to_be_bytes());
            let tag = mac.finalize().into_bytes();
            out.copy_from_slice(&tag[..16]);
        }
        out
    }

    /// getData: data and stat, READ permission checked against `auth`.
    pub fn zk_get_data(&self, path: &str, auth: &[Id]) -> Result<(Vec<u8>, Stat), ZkError> {
        self.state().zk_get_data(path, auth)
    }

    /// exists: stat of an explicit or implicit node.
    pub fn zk_exists(&self, path: &str) -> Option<Stat> {
        self.state().zk_exists(path)
    }

    /// getChildren: sorted child names and the node's stat, READ checked.
    pub fn zk_get_children(&self, path: &str, auth: &[Id]) -> Result<(Vec<String>, Stat), ZkError> {
        self.state().zk_get_children(path, auth)
    }

    /// getAllChildrenNumber: number of descendants, READ checked.
    pub fn zk_all_children_number(&self, path: &str, auth: &[Id]) -> Result<i32, ZkError> {
        self.state().zk_all_children_number(path, auth)
    }

    /// getACL (no permission check, as ZooKeeper 3.8 does for getACL).
    pub fn zk_get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ZkError> {
        self.state().zk_get_acl(path)
    }

    /// getEphemerals: paths owned by `session` starting with `prefix`.
    pub fn zk_ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        self.state().zk_ephemerals(session, prefix)
    }
}

/// The raft loop: owns the RawNode, applies committed entries, answers
/// proposers and readers, and does the leader's housekeeping.
struct Runner {
    raw: RawNode<RaftLog>,
    inner: Arc<Inner>,
    rx: std_mpsc::Receiver<Msg>,
    pending: HashMap<u64, Reply<Applied>>,
    reads_waiting: Vec<Reply<()>>,
    reads_inflight: HashMap<u64, (Vec<Reply<()>>, Instant)>,
    reads_ready: Vec<(u64, Vec<Reply<()>>)>,
    next_read: u64,
    /// Leases whose revoke the leader proposed, and when.
    revoking: HashMap<i64, Instant>,
    last_reap: Instant,
}

impl Runner {
    fn run(&mut self) {
        let tick = self.inner.cfg.tick;
        let mut last_tick = Instant::now();
        loop {
            let wait = tick.saturating_sub(last_tick.elapsed());
            let mut stop = false;
            match self.rx.recv_timeout(wait) {
                Ok(m) => stop |= self.handle(m),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => stop = true,
            }
            // Group everything already queued into this Ready.
            for _ in 0..4096 {
                match self.rx.try_recv() {
                    Ok(m) => stop |= self.handle(m),
                    Err(_) => break,
                }
            }
            if last_tick.elapsed() >= tick {
                last_tick = Instant::now();
                self.raw.tick();
                self.housekeeping();
            }
            self.issue_reads();
            if let Err(e) = self.on_ready() {
                tracing::error!("raft loop stopped: {e}");
                self.inner.stopped.store(true, Ordering::Release);
                break;
            }
            if stop {
                break;
            }
        }
        if let Err(e) = self.raw.store().sync_engine() {
            tracing::error!("final sync failed: {e}");
        }
        for (_, r) in self.pending.drain() {
            let _ = r.send(Err(CoreError::Stopped));
        }
    }

    /// Returns true on Stop.
    fn handle(&mut self, m: Msg) -> bool {
        match m {
            Msg::Propose { id, data, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    if let Some(r) = reply {
                        let _ = r.send(Err(CoreError::NotLeader));
                    }
                } else if let Err(e) = self.raw.propose(vec![], data) {
                    if let Some(r) = reply {
                        let _ = r.send(Err(CoreError::Raft(e.to_string())));
                    }
                } else if let Some(r) = reply {
                    self.pending.insert(id, r);
                }
                false
            }
            Msg::Read { reply } => {
                self.reads_waiting.push(reply);
                false
            }
            Msg::Stop => true,
        }
    }

    /// One ReadIndex request serves every read waiting now; a request with
    /// no answer after an election timeout is retried (a new leader drops
    /// them until it commits in its term).
    fn issue_reads(&mut self) {
        let timeout = self.inner.cfg.tick * self.inner.cfg.election_ticks as u32;
        let stale: Vec<u64> = self
            .reads_inflight
            .iter()
            .filter(|(_, (_, t))| t.elapsed() > timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some((mut rs, _)) = self.reads_inflight.remove(&k) {
                self.reads_waiting.append(&mut rs);
            }
        }
        if self.reads_waiting.is_empty() {
            return;
        }
        let ctx = self.next_read;
        self.next_read += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.reads_inflight.insert(
            ctx,
            (std::mem::take(&mut self.reads_waiting), Instant::now()),
        );
    }

    fn answer_reads(&mut self, applied: u64) {
        let (done, wait): (Vec<_>, Vec<_>) =
            self.reads_ready.drain(..).partition(|(i, _)| *i <= applied);
        self.reads_ready = wait;
        for (_, rs) in done {
            for r in rs {
                let _ = r.send(Ok(()));
            }
        }
    }

    /// The seven steps of a raft-rs Ready (see the raft crate's docs), with
    /// the log append moved before the apply so that the commit index is
    /// recorded with or before the entries it covers are applied.
    fn on_ready(&mut self) -> Result<(), CoreError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        // 1. Messages to peers (none in a one-member group).
        let _ = ready.take_messages();
        // 2. A snapshot from the leader (multi-member only).
        if !ready.snapshot().is_empty() {
            return Err(CoreError::Raft(
                "snapshot install needs replication (issue 5)".into(),
            ));
        }
        if let Some(ss) = ready.ss() {
            self.role_changed(ss.leader_id, ss.raft_state);
        }
        for rs in ready.take_read_states() {
            let ctx = rs
                .request_ctx
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if let Some((replies, _)) = self.reads_inflight.remove(&ctx) {
                self.reads_ready.push((rs.index, replies));
            }
        }
        // 4 + 5. New entries and hard state, one batch.
        self.raw.mut_store().append(ready.entries(), ready.hs())?;
        if let Some(hs) = ready.hs() {
            self.inner.term.store(hs.term, Ordering::Release);
        }
        self.inner
            .last_index
            .store(self.raw.store().last(), Ordering::Release);
        // 3. Committed entries.
        self.apply(ready.take_committed_entries())?;
        // Group commit: appends above and every apply so far become durable.
        self.raw.store().sync_engine()?;
        // 6. Messages that must follow the sync.
        let _ = ready.take_persisted_messages();
        // 7. Advance, then the LightReady.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        let _ = light.take_messages();
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        let applied = self.inner.state.read().map_or(0, |st| st.applied_index);
        self.answer_reads(applied);
        Ok(())
    }

    fn role_changed(&mut self, leader: u64, role: StateRole) {
        self.inner.leader.store(leader, Ordering::Release);
        if role == StateRole::Leader {
            // D9: a new leader restarts every lease's clock, plus an
            // election timeout, so a failover expires no healthy session.
            let extra = self.inner.cfg.tick * self.inner.cfg.election_ticks as u32;
            let now = Instant::now();
            let st = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
            if let Ok(mut d) = self.inner.deadlines.lock() {
                for (id, l) in &st.leases {
                    d.insert(*id, now + Duration::from_millis(l.ttl_ms as u64) + extra);
                }
            }
        } else {
            for (_, r) in self.pending.drain() {
                let _ = r.send(Err(CoreError::NotLeader));
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), CoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut replies = Vec::new();
        {
            let state = Arc::clone(&self.inner.state);
            let mut st = state.write().unwrap_or_else(|p| p.into_inner());
            for e in entries {
                if e.index <= st.applied_index {
                    continue;
                }
                match e.get_entry_type() {
                    EntryType::EntryNormal if !e.data.is_empty() => {
                        let p: Proposal =
                            postcard::from_bytes(&e.data).map_err(|err| CoreError::Corrupt {
                                path: st.engine.dir().join("raft_log"),
                                what: format!("entry {}: {err}", e.index),
                            })?;
                        let applied = st.apply(&p, e.index)?;
                        self.track_leases(&p.command, &applied.result, &st);
                        if p.proposer == self.inner.cfg.member_id {
                            if let Some(r) = self.pending.remove(&p.request_id) {
                                replies.push((r, applied));
                            }
                        }
                    }
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                        if !e.data.is_empty() =>
                    {
                        let cc = if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                            ConfChangeV2::parse_from_bytes(&e.data)
                                .map_err(|err| CoreError::Raft(err.to_string()))?
                        } else {
                            use raft::prelude::ConfChange;
                            use raft_proto::ConfChangeI;
                            ConfChange::parse_from_bytes(&e.data)
                                .map_err(|err| CoreError::Raft(err.to_string()))?
                                .into_v2()
                        };
                        let cs = self
                            .raw
                            .apply_conf_change(&cc)
                            .map_err(|err| CoreError::Raft(err.to_string()))?;
                        self.raw.mut_store().set_conf_state(cs)?;
                        st.apply_empty(e.index)?;
                    }
                    _ => st.apply_empty(e.index)?,
                }
            }
        }
        for (r, a) in replies {
            let _ = r.send(Ok(a));
        }
        Ok(())
    }

    fn track_leases(&mut self, cmd: &Command, result: &CommandResult, st: &State) {
        let Ok(mut d) = self.inner.deadlines.lock() else {
            return;
        };
        match (cmd, result) {
            (Command::LeaseGrant { id, ttl_ms }, CommandResult::LeaseGrant(Ok(_))) => {
                d.insert(*id, Instant::now() + Duration::from_millis(*ttl_ms as u64));
            }
            (Command::LeaseRevoke { id }, _) if !st.leases.contains_key(id) => {
                d.remove(id);
                self.revoking.remove(id);
            }
            _ => {}
        }
    }

    fn propose_internal(&mut self, command: Command) {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let p = Proposal {
            proposer: self.inner.cfg.member_id,
            request_id: id,
            now_ms: now_ms(),
            command,
        };
        if let Ok(data) = postcard::to_stdvec(&p) {
            self.handle(Msg::Propose {
                id,
                data,
                reply: None,
            });
        }
    }

    /// Leader only: revoke expired leases (D9) and reap empty containers and
    /// idle TTL nodes, by proposing commands like any client would.
    fn housekeeping(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        let now = Instant::now();
        let expired: Vec<i64> = match self.inner.deadlines.lock() {
            Ok(d) => d
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => Vec::new(),
        };
        for id in expired {
            let again = self
                .revoking
                .get(&id)
                .is_none_or(|t| t.elapsed() > Duration::from_secs(3));
            if again {
                tracing::debug!(lease = id, "lease expired, revoking");
                self.revoking.insert(id, now);
                self.propose_internal(Command::LeaseRevoke { id });
            }
        }
        if self.last_reap.elapsed() >= self.inner.cfg.reap_interval {
            self.last_reap = now;
            let t = now_ms();
            let reap: Vec<String> = {
                let st = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
                st.specials
                    .iter()
                    .filter(|k| st.reapable(None, k, t).unwrap_or(false))
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            };
            for path in reap {
                self.propose_internal(Command::ZkReap { path });
            }
        }
    }
}
