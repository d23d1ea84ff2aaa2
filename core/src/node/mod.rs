//! The member: one raft node, its state machine and the handle frontends use.
//!
//! [`Node`] is cheap to clone and shared by every frontend task. Writes go
//! through [`Node::propose`] (one raft command each, D7); reads are served
//! from the local state machine, after [`Node::read_barrier`] when they must
//! be linearizable (D8).

mod apply;
mod clock;
mod hash_kv;
pub use hash_kv::HashKv;
mod log_writer;
mod reconfig;
pub use reconfig::{Joining, ReconfigPlan, ReconfigRequest};
mod runner;
#[cfg(feature = "sim")]
pub mod sim;
mod store_sync;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raft::RawNode;
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::command::{Applied, Command, Proposal};
use crate::engine::Engine;
use crate::kv::{LeaseInfo, RangeRequest, RangeResponse};
use crate::lease_forward::Renewal;
use crate::members::Member;
use crate::peer::{PeerEvent, Peers};
use crate::raft_log::RaftLog;
use crate::state::State;
use crate::transport::Outbox;
use crate::wal::{OsFs, WalFs, WalOptions};
use crate::watch::{WatchRequest, Watcher};
use crate::znode::{Acl, Id, Stat};
use crate::{CoreError, KvError, MembershipError, ZkError};
use clock::Clock;

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
    /// Raft entries kept below the durable applied index when the log is
    /// truncated (a briefly lagging follower catches up without a snapshot).
    pub log_keep: u64,
    /// `--initial-cluster-token`: salts member ids.
    pub cluster_token: String,
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
    /// This member's advertised peer URLs.
    pub peer_urls: Vec<String>,
    /// This member's advertised client URLs (published to the cluster).
    pub client_urls: Vec<String>,
    /// Where to accept peer connections (`None`: no peer listener).
    pub peer_listen: Option<std::net::SocketAddr>,
    /// Members of a new cluster (`--initial-cluster`), this one included.
    /// Empty: a one-member cluster of this member.
    pub initial_members: Vec<Member>,
    /// Join an existing cluster (`--initial-cluster-state existing`): start
    /// with no configuration and wait for the leader's snapshot.
    pub join_existing: bool,
    /// TLS of the peer port and of links to peers with `https://` URLs
    /// (`None`: plain TCP both ways).
    pub peer_tls: Option<crate::peer::PeerTls>,
    /// How this member appears in ZooKeeper's dynamic configuration
    /// (published to the cluster like its client URLs); `None`: shown with
    /// defaults derived from its member id and peer URL.
    pub zk_server: Option<crate::members::ZkServer>,
    /// `--quota-backend-bytes`: a write that would take the store to this
    /// size raises NOSPACE (0 or less: no quota; [`crate::alarm`]).
    pub quota_backend_bytes: i64,
}

/// Pause between tries of a forwarded keepalive that found no leader or
/// could not reach it (etcd throttles its retries the same way).
const RENEW_RETRY: Duration = Duration::from_millis(50);

/// etcd's default `--quota-backend-bytes` (2 GiB).
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

impl NodeConfig {
    /// A single member with janus defaults in `data_dir`.
    pub fn single(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            name: "default".into(),
            member_id: 1,
            cluster_id: 1,
            cluster_token: "janus-cluster".into(),
            log_keep: 10_000,
            cluster_secret: b"janus".to_vec(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            request_timeout: Duration::from_secs(7),
            reap_interval: Duration::from_secs(1),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            peer_listen: None,
            initial_members: Vec::new(),
            join_existing: false,
            peer_tls: None,
            zk_server: None,
            quota_backend_bytes: DEFAULT_QUOTA_BYTES,
        }
    }

    /// The members of a new cluster.
    fn bootstrap_members(&self) -> Vec<Member> {
        if self.initial_members.is_empty() {
            vec![Member {
                id: self.member_id,
                name: self.name.clone(),
                peer_urls: self.peer_urls.clone(),
                client_urls: self.client_urls.clone(),
                is_learner: false,
            }]
        } else {
            self.initial_members.clone()
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
    /// The state's applied index, kept apart from it so the raft loop can
    /// read it while the apply thread holds the state's write lock.
    applied: AtomicU64,
    next_request: AtomicU64,
    /// Random per boot: names this member's proposals apart from those of
    /// its earlier runs ([`crate::dedup`]).
    epoch: u64,
    /// Lease deadlines, kept by every member, acted on by the leader (D9).
    deadlines: Mutex<HashMap<i64, Instant>>,
    stopped: AtomicBool,
    /// This member was removed from the cluster: it serves nothing more.
    removed: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    peers: Arc<dyn Outbox>,
    /// What the data directory occupies on disk (Status db size, quota).
    disk: crate::disk_usage::DiskUsage,
    /// Real time, or the simulation's virtual time.
    clock: Clock,
}

impl Inner {
    /// Names a command for the log (D7, exactly-once apply): this member,
    /// its boot epoch and a fresh request id, stamped with the proposer's
    /// clock (everything non-deterministic is chosen here).
    fn proposal(&self, command: Command) -> Proposal {
        Proposal {
            proposer: self.cfg.member_id,
            epoch: self.epoch,
            request_id: self.next_request.fetch_add(1, Ordering::Relaxed),
            now_ms: self.clock.now_ms(),
            command,
        }
    }
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
    ConfChange {
        id: u64,
        cc: ConfChangeV2,
        reply: Reply<Vec<Member>>,
    },
    TransferLeader(u64),
    Peer(PeerEvent),
    /// From the log writer thread.
    Persisted(log_writer::Report),
    /// From the store syncer thread.
    StoreDurable(store_sync::Report),
    /// From the apply thread.
    Applied(apply::Report),
    Stop,
}

/// Carried in a conf change's context: who waits for it, the member it
/// adds, and the proposer's wall clock (like a command's `now_ms`: when the
/// configuration changed, the same on every member).
#[derive(serde::Serialize, serde::Deserialize)]
struct ConfContext {
    proposer: u64,
    request_id: u64,
    member: Option<Member>,
    now_ms: i64,
}

/// A context written before conf changes carried a time.
#[derive(serde::Deserialize)]
struct ConfContextV1 {
    proposer: u64,
    request_id: u64,
    member: Option<Member>,
}

impl ConfContext {
    /// Reads a context of either encoding (entries of older members stay
    /// in the log); `None` for an empty or foreign one.
    fn decode(b: &[u8]) -> Option<ConfContext> {
        postcard::from_bytes(b).ok().or_else(|| {
            let v1: ConfContextV1 = postcard::from_bytes(b).ok()?;
            Some(ConfContext {
                proposer: v1.proposer,
                request_id: v1.request_id,
                member: v1.member,
                now_ms: 0,
            })
        })
    }
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

/// Opens the member's database and builds its raft loop, neither started
/// nor caught up with its log yet: [`Node::start`] runs the loop on a thread
/// over TCP, the simulation ([`sim`]) drives it by hand over a simulated
/// network and a virtual clock.
fn open(
    cfg: NodeConfig,
    wal_fs: Arc<dyn WalFs>,
    wal_opts: WalOptions,
    (tx, rx): (std_mpsc::Sender<Msg>, std_mpsc::Receiver<Msg>),
    peers: Arc<dyn Outbox>,
    clock: Clock,
    epoch: u64,
) -> Result<(Arc<Inner>, runner::Runner), CoreError> {
    let engine = Arc::new(Engine::open(&cfg.data_dir)?);
    let mut state = State::load(Arc::clone(&engine))?;
    crate::checkpoint::verify(&cfg.data_dir, state.applied_index)?;
    let voters: Vec<u64> = if cfg.join_existing {
        Vec::new()
    } else {
        let members = cfg.bootstrap_members();
        state.bootstrap_members(&members)?;
        members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    };
    let applied = state.applied_index;
    let log = RaftLog::open(Arc::clone(&engine), wal_fs, wal_opts, &voters, applied)?;
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
    let now = clock.now();
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
        members = state.members.len(),
        "member {:x} opened",
        cfg.member_id
    );
    if state.members.is_empty() {
        // A joining member reaches the others through --initial-cluster
        // until the leader's snapshot brings the member table.
        let list: Vec<(u64, String)> = cfg
            .initial_members
            .iter()
            .filter_map(|m| m.peer_urls.first().map(|u| (m.id, u.clone())))
            .collect();
        peers.set_members(&list);
    } else {
        peers.set_members(&runner::peer_list(&state));
    }
    let disk = crate::disk_usage::DiskUsage::new(&cfg.data_dir);
    let inner = Arc::new(Inner {
        cfg,
        state: Arc::new(RwLock::new(state)),
        tx: Mutex::new(tx),
        term: AtomicU64::new(0),
        leader: AtomicU64::new(0),
        last_index: AtomicU64::new(0),
        applied: AtomicU64::new(applied),
        next_request: AtomicU64::new(1),
        epoch,
        deadlines: Mutex::new(deadlines),
        stopped: AtomicBool::new(false),
        removed: AtomicBool::new(false),
        thread: Mutex::new(None),
        peers,
        disk,
        clock,
    });
    let runner = runner::Runner::new(raw, Arc::clone(&inner), rx);
    Ok((inner, runner))
}

/// One conf change, with the context that names its proposer (who answers
/// the caller) and the member it adds.
fn conf_change_v2(
    proposer: u64,
    request_id: u64,
    change: ConfChangeType,
    id: u64,
    member: Option<Member>,
    now_ms: i64,
) -> Result<ConfChangeV2, CoreError> {
    let ctx = ConfContext {
        proposer,
        request_id,
        member,
        now_ms,
    };
    let mut single = ConfChangeSingle::default();
    single.set_change_type(change);
    single.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    cc.context = postcard::to_stdvec(&ctx)
        .map_err(|e| CoreError::Encoding(e.to_string()))?
        .into();
    Ok(cc)
}

impl Node {
    /// Opens the data dir, replays the log from the applied index and starts
    /// the raft loop. Must run inside a tokio runtime (peer connections and
    /// timers run on it); the raft loop itself has its own thread.
    ///
    /// ```
    /// use janus_core::{Node, NodeConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// // One member, no peer listener: a cluster of itself.
    /// let node = Node::start(NodeConfig::single(dir.path().join("data")))?;
    /// assert_eq!(node.member_id(), 1);
    /// node.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(cfg: NodeConfig) -> Result<Node, CoreError> {
        Node::start_on(cfg, Arc::new(OsFs), WalOptions::from_env())
    }

    /// [`Node::start`] with the WAL on the given file system and options
    /// (tests put it on [`crate::wal::PowerCutFs`] to lose unsynced data,
    /// and use small segments to exercise segment rolls and truncation).
    #[doc(hidden)]
    pub fn start_on(
        cfg: NodeConfig,
        wal_fs: Arc<dyn WalFs>,
        wal_opts: WalOptions,
    ) -> Result<Node, CoreError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| CoreError::Raft("Node::start must run inside a tokio runtime".into()))?;
        let (tx, rx) = std_mpsc::channel();
        let peer_tx = Mutex::new(tx.clone());
        let peers = Peers::new(
            cfg.member_id,
            rt.clone(),
            cfg.peer_tls.clone(),
            Arc::new(move |ev| {
                if let Ok(tx) = peer_tx.lock() {
                    let _ = tx.send(Msg::Peer(ev));
                }
            }),
        );
        let writer_thread = wal_opts.writer_thread;
        let (inner, mut runner) = open(
            cfg,
            wal_fs,
            wal_opts,
            (tx, rx),
            peers.clone(),
            clock::ClockJumps::from_env(),
            rand::random(),
        )?;
        // Peers' HashKV requests; weak, so the transport does not keep the
        // member alive.
        let weak = Arc::downgrade(&inner);
        peers.set_hash_source(Arc::new(move |revision| {
            let inner = weak.upgrade().ok_or_else(|| {
                crate::corrupt_check::PeerHashError::Unreachable("member stopped".into())
            })?;
            crate::corrupt_check::answer(&Node { inner }, revision)
        }));
        let weak = Arc::downgrade(&inner);
        peers.set_renewal_source(Arc::new(move |lease| match weak.upgrade() {
            Some(inner) => Node { inner }.renew_forwarded(lease),
            None => Renewal::NotLeader,
        }));
        if let Some(addr) = inner.cfg.peer_listen {
            let _guard = rt.enter();
            let l = crate::sockets::listen(addr)
                .map_err(|e| CoreError::Raft(format!("cannot listen for peers on {addr}: {e}")))?;
            rt.spawn(Arc::clone(&peers).serve(l));
        }
        // Apply what the log already holds as committed before serving, so
        // that no local read after a restart misses an acknowledged write.
        runner.catch_up()?;
        if writer_thread {
            runner.start_writer()?;
        }
        runner.start_store_syncer()?;
        runner.start_apply_thread()?;
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
        if self.inner.removed.load(Ordering::Acquire) {
            return Err(CoreError::Removed);
        }
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
        self.inner.peers.shutdown();
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Proposes a command and waits until it is applied on this member
    /// (D7): the answer is the command's result and the revision it was
    /// applied at. A refused command (a failed compare, a missing parent)
    /// is an `Ok` carrying the refusal; `Err` means it may not have been
    /// applied at all (stopped, timed out, no leader).
    ///
    /// ```
    /// use janus_core::kv::PutRequest;
    /// use janus_core::{Command, CommandResult, Node, NodeConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = Node::start(NodeConfig::single(dir.path().join("data")))?;
    /// let applied = node
    ///     .propose(Command::Put(PutRequest {
    ///         key: b"k".to_vec(),
    ///         value: b"v".to_vec(),
    ///         ..Default::default()
    ///     }))
    ///     .await?;
    /// assert!(matches!(applied.result, CommandResult::Put(Ok(_))));
    /// assert_eq!(applied.revision, node.revision());
    /// # node.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn propose(&self, command: Command) -> Result<Applied, CoreError> {
        if let Command::Zk { ops, .. } = &command {
            self.raise_nospace_before(crate::alarm::zk_cost(ops));
        }
        let pending = crate::metrics::PendingProposal::start();
        let (reply, rx) = oneshot::channel();
        self.send_proposal(command, Some(reply))?;
        let answer = match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CoreError::Stopped),
            Err(_) => Err(CoreError::Timeout),
        };
        if answer.is_ok() {
            pending.succeeded();
        }
        answer
    }

    fn send_proposal(
        &self,
        command: Command,
        reply: Option<oneshot::Sender<Result<Applied, CoreError>>>,
    ) -> Result<(), CoreError> {
        let p = self.inner.proposal(command);
        let id = p.request_id;
        let data = postcard::to_stdvec(&p).map_err(|e| CoreError::Encoding(e.to_string()))?;
        self.send(Msg::Propose { id, data, reply })
    }

    /// A ZooKeeper write's quota check: it is always proposed (its FIFO
    /// number is taken, so it cannot be dropped here), but when it would
    /// take the store to the quota, NOSPACE is proposed right before it, so
    /// apply refuses it and what follows ([`crate::alarm::refusal`]).
    fn raise_nospace_before(&self, cost: u64) {
        use crate::alarm::{quota_check, Alarm, AlarmKind, QuotaVerdict};
        let db_size = self.inner.disk.bytes() as i64;
        let verdict = quota_check(
            &self.state().alarms,
            db_size,
            cost,
            self.inner.cfg.quota_backend_bytes,
        );
        if verdict == QuotaVerdict::RaiseAndRefuse {
            tracing::warn!(db_size, "database space exceeded");
            let alarm = Alarm {
                member_id: self.member_id(),
                kind: AlarmKind::NoSpace,
            };
            let _ = self.send_proposal(
                Command::Alarm {
                    activate: true,
                    alarm,
                },
                None,
            );
        }
    }

    /// Returns once this member has applied everything committed when the
    /// call was made (raft ReadIndex, batched): reads after it are
    /// linearizable (D8).
    ///
    /// ```
    /// use janus_core::kv::RangeRequest;
    /// use janus_core::{Node, NodeConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = Node::start(NodeConfig::single(dir.path().join("data")))?;
    /// node.read_barrier().await?;
    /// // Nothing acknowledged before the barrier is missing from this read.
    /// let all = node.range(&RangeRequest {
    ///     key: b"a".to_vec(),
    ///     ..Default::default()
    /// })?;
    /// assert!(all.kvs.is_empty());
    /// # node.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_barrier(&self) -> Result<(), CoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Read { reply })?;
        match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CoreError::Stopped),
            Err(_) => Err(CoreError::Timeout),
        }
    }

    /// Whether the raft loop has stopped: after [`Node::stop`], or on its
    /// own after a storage failure (a WAL write or fsync error, a full
    /// disk), after which the member acknowledges nothing more (fail-stop,
    /// as etcd).
    pub fn has_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
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
            db_size: self.inner.disk.bytes() as i64,
        }
    }

    /// Current store revision.
    pub fn revision(&self) -> i64 {
        self.state().revision
    }

    /// Local read of the etcd keyspace, at the revision this member has
    /// applied (see [`crate::kv`] for the range conventions); call
    /// [`Node::read_barrier`] first for a linearizable read.
    ///
    /// ```
    /// use janus_core::kv::{PutRequest, RangeRequest};
    /// use janus_core::{Command, Node, NodeConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = Node::start(NodeConfig::single(dir.path().join("data")))?;
    /// for key in ["a/1", "a/2", "b/1"] {
    ///     let put = PutRequest {
    ///         key: key.into(),
    ///         value: b"v".to_vec(),
    ///         ..Default::default()
    ///     };
    ///     node.propose(Command::Put(put)).await?;
    /// }
    /// // The prefix "a/": keys from "a/" up to, not including, "a0".
    /// let resp = node.range(&RangeRequest {
    ///     key: b"a/".to_vec(),
    ///     range_end: b"a0".to_vec(),
    ///     ..Default::default()
    /// })?;
    /// let keys: Vec<&[u8]> = resp.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    /// assert_eq!(keys, [b"a/1".as_slice(), b"a/2".as_slice()]);
    /// # node.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        Ok(self.state().range(None, req)?)
    }

    /// Local read, with the store revision the read saw (etcd reports it
    /// in the response header).
    pub fn range_with_revision(&self, req: &RangeRequest) -> Result<(RangeResponse, i64), KvError> {
        let st = self.state();
        let resp = st.range(None, req)?;
        Ok((resp, st.revision))
    }

    /// Subscribes to the changes of a key range, from history (a start
    /// revision in the past) and live (D6). Both protocols' watches are
    /// built on it.
    ///
    /// ```
    /// use janus_core::kv::PutRequest;
    /// use janus_core::{Command, EventKind, Node, NodeConfig, WatchRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let node = Node::start(NodeConfig::single(dir.path().join("data")))?;
    /// let mut watcher = node.watch(WatchRequest {
    ///     key: b"k".to_vec(),
    ///     ..Default::default()
    /// })?;
    /// let put = PutRequest {
    ///     key: b"k".to_vec(),
    ///     value: b"v".to_vec(),
    ///     ..Default::default()
    /// };
    /// let applied = node.propose(Command::Put(put)).await?;
    /// let events = watcher.next().await?;
    /// assert_eq!(events[0].kind, EventKind::Put);
    /// assert_eq!(events[0].kv.mod_revision, applied.revision);
    /// # node.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self, req: WatchRequest) -> Result<Watcher, KvError> {
        Watcher::subscribe(self.inner.state.clone(), req, false)
    }

    /// [`Node::watch`] for a subscriber that watches a few keys of its
    /// range: it is fed only events on the keys it registers through
    /// [`Watcher::interest`] (a ZooKeeper connection: its watched paths).
    pub fn watch_paths(&self, req: WatchRequest) -> Result<Watcher, KvError> {
        Watcher::subscribe(self.inner.state.clone(), req, true)
    }

    /// Ids of leases revoked from now on, as this member applies the
    /// revokes (see [`crate::watch::Hub::revocations`]).
    pub fn lease_revocations(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.state().hub.revocations()
    }

    /// Refreshes a lease: `Some(TTL in seconds)`, or `None` if there is no
    /// such lease.
    ///
    /// Only the leader's clock expires leases (D9), so on a follower the
    /// keepalive counts only once the leader has renewed the lease: it is
    /// forwarded and this waits for the leader's answer (retrying across a
    /// leader change, as etcd's `LeaseRenew` does) up to the request
    /// timeout, then fails with [`CoreError::Timeout`]. A renewal the
    /// client is told of is then always one the leader made.
    pub async fn lease_keepalive(&self, id: i64) -> Result<Option<i64>, CoreError> {
        let give_up = Instant::now() + self.inner.cfg.request_timeout;
        loop {
            let leader = self.inner.leader.load(Ordering::Acquire);
            if leader == self.inner.cfg.member_id {
                return Ok(self.renew_here(id));
            }
            if leader != 0 {
                let left = give_up.saturating_duration_since(Instant::now());
                let asked = self.inner.peers.renew_lease(leader, id);
                match tokio::time::timeout(left, asked).await {
                    Ok(Ok(Renewal::Renewed(ttl))) => {
                        // This member's own clock follows the leader's, for
                        // TimeToLive here and for a takeover.
                        self.renew_here(id);
                        return Ok(Some(ttl));
                    }
                    Ok(Ok(Renewal::NotFound)) => return Ok(None),
                    Ok(Ok(Renewal::NotLeader)) => {}
                    Ok(Err(e)) => tracing::debug!(lease = id, "keepalive not forwarded: {e}"),
                    Err(_) => return Err(CoreError::Timeout),
                }
            }
            if self.inner.stopped.load(Ordering::Acquire) {
                return Err(CoreError::Stopped);
            }
            if Instant::now() + RENEW_RETRY >= give_up {
                return Err(CoreError::Timeout);
            }
            tokio::time::sleep(RENEW_RETRY).await;
        }
    }

    /// Restarts lease `id`'s clock on this member; its TTL in seconds, or
    /// `None` if there is no such lease.
    fn renew_here(&self, id: i64) -> Option<i64> {
        let ttl_ms = self.state().leases.get(&id).map(|l| l.ttl_ms)?;
        if let Ok(mut d) = self.inner.deadlines.lock() {
            d.insert(
                id,
                self.inner.clock.now() + Duration::from_millis(ttl_ms as u64),
            );
        }
        Some(crate::lease::ttl_secs(ttl_ms))
    }

    /// The leader's answer to a follower's forwarded keepalive.
    fn renew_forwarded(&self, id: i64) -> Renewal {
        if self.inner.leader.load(Ordering::Acquire) != self.inner.cfg.member_id {
            return Renewal::NotLeader;
        }
        match self.renew_here(id) {
            Some(ttl) => Renewal::Renewed(ttl),
            None => Renewal::NotFound,
        }
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
            let left = deadline.saturating_duration_since(self.inner.clock.now());
            info.ttl = (left.as_millis() as i64 / 1000).min(info.granted_ttl);
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

    /// Peer `to`'s HashKV at `revision` over the peer transport (the
    /// corruption check, [`crate::corrupt_check`]).
    pub async fn peer_hash_kv(
        &self,
        to: u64,
        revision: i64,
        timeout: Duration,
    ) -> Result<crate::corrupt_check::PeerHash, crate::corrupt_check::PeerHashError> {
        self.inner.peers.hash_kv(to, revision, timeout).await
    }

    /// A consistent export of the member's state, in chunks: every keyspace
    /// of the state store (the raft log is in the WAL), as length-prefixed (keyspace, key, value)
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

    /// The raised alarms of the cluster as this member has applied them
    /// (etcd's Alarm GET reads them locally too).
    pub fn alarms(&self) -> Vec<crate::alarm::Alarm> {
        self.state().alarms.list()
    }

    /// Raises (`activate`) or clears an alarm through the log; answers the
    /// alarms the command changed, as etcd's applier does.
    pub async fn alarm(
        &self,
        activate: bool,
        alarm: crate::alarm::Alarm,
    ) -> Result<Vec<crate::alarm::Alarm>, CoreError> {
        match self
            .propose(Command::Alarm { activate, alarm })
            .await?
            .result
        {
            crate::CommandResult::Alarm(changed) => Ok(changed),
            other => Err(CoreError::Raft(format!("alarm answered {other:?}"))),
        }
    }

    /// The proposer's quota check before a write of quota cost `cost`
    /// ([`crate::alarm::quota_check`]): refused with `NoSpace` while NOSPACE
    /// is raised; a write that would reach the quota raises NOSPACE through
    /// the log first and is refused.
    pub async fn check_quota(&self, cost: u64) -> Result<(), KvError> {
        use crate::alarm::{quota_check, Alarm, AlarmKind, QuotaVerdict};
        let db_size = self.inner.disk.bytes() as i64;
        let verdict = quota_check(
            &self.state().alarms,
            db_size,
            cost,
            self.inner.cfg.quota_backend_bytes,
        );
        match verdict {
            QuotaVerdict::Fits => Ok(()),
            QuotaVerdict::Refuse => Err(KvError::NoSpace),
            QuotaVerdict::RaiseAndRefuse => {
                tracing::warn!(
                    db_size,
                    quota = self.inner.cfg.quota_backend_bytes,
                    "database space exceeded"
                );
                let alarm = Alarm {
                    member_id: self.member_id(),
                    kind: AlarmKind::NoSpace,
                };
                self.alarm(true, alarm).await?;
                Err(KvError::NoSpace)
            }
        }
    }

    /// A consistent copy of this member's state ([`crate::backup`]).
    pub fn backup(&self) -> Result<crate::backup::Backup, CoreError> {
        // The view and its numbers under the lock; the copy without it.
        let (view, applied, revision, compact) = {
            let st = self.state();
            (
                st.engine.view(),
                st.applied_index,
                st.revision,
                st.compact_revision,
            )
        };
        crate::backup::Backup::take(&view, applied, revision, compact)
    }

    /// Compacts the storage engine's files (etcd Defragment).
    pub fn defragment(&self) -> Result<(), CoreError> {
        // Not under the state lock: a long compaction would hold off the
        // apply thread and, behind it, every reader (pings included).
        let engine = std::sync::Arc::clone(&self.state().engine);
        let r = engine.major_compact();
        self.inner.disk.invalidate();
        r
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

    /// The members of the cluster, by id.
    pub fn members(&self) -> Vec<Member> {
        self.state().members.values().cloned().collect()
    }

    /// The current leader's id (0 if none is known).
    pub fn leader(&self) -> u64 {
        self.inner.leader.load(Ordering::Acquire)
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == self.inner.cfg.member_id
    }

    async fn conf_change(
        &self,
        change: ConfChangeType,
        id: u64,
        member: Option<Member>,
    ) -> Result<Vec<Member>, CoreError> {
        let request_id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let cc = conf_change_v2(
            self.inner.cfg.member_id,
            request_id,
            change,
            id,
            member,
            self.inner.clock.now_ms(),
        )?;
        let (reply, rx) = oneshot::channel();
        self.send(Msg::ConfChange {
            id: request_id,
            cc,
            reply,
        })?;
        match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CoreError::Stopped),
            Err(_) => Err(CoreError::Timeout),
        }
    }

    /// etcd MemberAdd: adds a member (as a learner or a voter) with a fresh
    /// id. Returns the new member and the member list after the change.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), CoreError> {
        if self
            .members()
            .iter()
            .any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(CoreError::Membership(MembershipError::PeerUrlExists));
        }
        let id = crate::members::member_id_for(&peer_urls, &self.inner.cfg.cluster_token);
        let m = Member {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        let kind = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let list = self.conf_change(kind, id, Some(m.clone())).await?;
        Ok((m, list))
    }

    /// etcd MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, CoreError> {
        if !self.members().iter().any(|m| m.id == id) {
            return Err(CoreError::Membership(MembershipError::NotFound));
        }
        self.conf_change(ConfChangeType::RemoveNode, id, None).await
    }

    /// etcd MemberPromote: a learner becomes a voter once it has caught up.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, CoreError> {
        let m = self.members().into_iter().find(|m| m.id == id);
        match m {
            None => return Err(CoreError::Membership(MembershipError::NotFound)),
            Some(m) if !m.is_learner => {
                return Err(CoreError::Membership(MembershipError::NotLearner))
            }
            Some(_) => {}
        }
        self.conf_change(ConfChangeType::AddNode, id, None).await
    }

    /// A voter becomes a learner (ZooKeeper's reconfig of a participant as
    /// an observer; etcd has no such call). One voter changes, so raft-rs
    /// takes it as a simple conf change; a leader demoted hands leadership
    /// to a voter once the change applies.
    pub async fn member_demote(&self, id: u64) -> Result<Vec<Member>, CoreError> {
        match self.members().into_iter().find(|m| m.id == id) {
            None => Err(CoreError::Membership(MembershipError::NotFound)),
            Some(m) if m.is_learner => Ok(self.members()),
            Some(_) => {
                let was_leader = self.leader() == id;
                let list = self
                    .conf_change(ConfChangeType::AddLearnerNode, id, None)
                    .await?;
                // Proposals made while the leadership moves are dropped:
                // the caller's next step waits for the new leader.
                let deadline = Instant::now() + self.inner.cfg.request_timeout;
                while was_leader && (self.leader() == 0 || self.leader() == id) {
                    if Instant::now() >= deadline {
                        return Err(CoreError::Timeout);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(list)
            }
        }
    }

    /// etcd MemberUpdate: new peer URLs for a member.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, CoreError> {
        if !self.members().iter().any(|m| m.id == id) {
            return Err(CoreError::Membership(MembershipError::NotFound));
        }
        self.propose(Command::MemberUpdate {
            id,
            name: None,
            client_urls: None,
            peer_urls: Some(peer_urls),
        })
        .await?;
        Ok(self.members())
    }

    /// etcd MoveLeader: hands leadership to `target` and waits for it.
    pub async fn move_leader(&self, target: u64) -> Result<(), CoreError> {
        if !self
            .members()
            .iter()
            .any(|m| m.id == target && !m.is_learner)
        {
            return Err(CoreError::Membership(MembershipError::NotFound));
        }
        if !self.is_leader() {
            return Err(CoreError::NotLeader);
        }
        self.send(Msg::TransferLeader(target))?;
        let deadline = Instant::now() + self.inner.cfg.request_timeout;
        while Instant::now() < deadline {
            if self.leader() == target {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(CoreError::Timeout)
    }

    /// getData: data and stat, READ permission checked against `auth`.
    pub fn zk_get_data(&self, path: &str, auth: &[Id]) -> Result<(Option<Vec<u8>>, Stat), ZkError> {
        self.state().zk_get_data(path, auth)
    }

    /// exists: stat of an explicit or implicit node.
    pub fn zk_exists(&self, path: &str) -> Option<Stat> {
        self.state().zk_exists(path)
    }

    /// exists with ZooKeeper 3.8's READ check on an existing node.
    pub fn zk_exists_checked(&self, path: &str, auth: &[Id]) -> Result<Option<Stat>, ZkError> {
        self.state().zk_exists_checked(path, auth)
    }

    /// getChildren: sorted child names and the node's stat, READ checked.
    pub fn zk_get_children(&self, path: &str, auth: &[Id]) -> Result<(Vec<String>, Stat), ZkError> {
        self.state().zk_get_children(path, auth)
    }

    /// getAllChildrenNumber: number of descendants, READ checked.
    pub fn zk_all_children_number(&self, path: &str, auth: &[Id]) -> Result<i32, ZkError> {
        self.state().zk_all_children_number(path, auth)
    }

    /// getACL as ZooKeeper 3.8: READ or ADMIN needed; without ADMIN the
    /// digest hashes are masked (`user:x`).
    pub fn zk_get_acl(&self, path: &str, auth: &[Id]) -> Result<(Vec<Acl>, Stat), ZkError> {
        self.state().zk_get_acl(path, auth)
    }

    /// getEphemerals: paths owned by `session` starting with `prefix`.
    pub fn zk_ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        self.state().zk_ephemerals(session, prefix)
    }
}
