//! Test support: a deterministic, seeded simulation of a janus cluster in
//! one thread, so fault scenarios replay exactly from their seed.
//!
//! Every member is the production raft loop ([`Runner`]) on its own real
//! fjall data dir; what is simulated is everything around it:
//!
//! - the network ([`SimOutbox`], the [`Outbox`] of every member): each
//!   message is dropped, delayed by 1..=`max_delay_ms` (so messages overtake
//!   each other) or duplicated, as a seeded RNG decides; partitions cut
//!   links both ways, including for messages already in flight;
//! - time: one virtual clock, advanced 1 ms per [`Sim::step`]; every member
//!   ticks every `tick_ms` at a seeded phase of its own;
//! - raft-rs's randomized election timeout, the one thing inside raft that
//!   draws from a thread-local RNG: before every tick the simulation sets it
//!   from its own RNG (a new value whenever a countdown starts), so the
//!   value raft drew is never used.
//!
//! Nothing else in a run depends on anything but the seed (raft-rs keys its
//! maps with FxHash, proposals carry virtual timestamps, members are
//! visited in id order), so a seed replays the same run: every delivery,
//! drop, role change and acknowledgement is fed to a trace hash
//! ([`Sim::trace_hash`]) that tests compare across two runs.
//!
//! Log writes: by default a member syncs its WAL inside its Ready, as a
//! disk that takes no time. [`Sim::set_log_write_ms`] gives a member a
//! disk that takes that long: its Readies are persisted asynchronously (the
//! production pipeline: appends go out first, raft learns of the sync
//! later) and each sync completes that many virtual ms after its Ready; a
//! crash before then loses the unsynced appends.
//!
//! A crash drops a member's loop between two steps, without the final sync
//! and checkpoint of a clean stop, and a restart reopens its data dir. A
//! member with the default disk syncs its WAL in every Ready and fjall
//! flushes its buffers when dropped, so its crash loses nothing that was
//! written: it tests restart and catch-up; a member with a slow disk loses
//! the WAL appends not yet synced. Power loss is tested by
//! `tests/power_cut.rs` and `tests/crash.rs`. A wiped member's dir is
//! deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::prelude::{ConfChangeType, Message, MessageType};
use raft::StateRole;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::clock::{Clock, VirtualTime};
use super::runner::Runner;
use super::{Inner, Msg, Node, NodeConfig};
use crate::command::{Applied, Command};
use crate::kv::{PutRequest, RangeRequest};
use crate::members::{member_id_for, Member};
use crate::peer::PeerEvent;
use crate::transport::{Chunks, Outbox};
use crate::CoreError;

/// How the simulated cluster and its network behave.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Members of the initial cluster (all voters).
    pub members: usize,
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Largest one-way delay; each message takes 1..=this many ms.
    pub max_delay_ms: u64,
    /// Raft tick, in virtual ms.
    pub tick_ms: u64,
    /// Election timeout in ticks (raft draws 1x..2x of it).
    pub election_ticks: usize,
    /// Raft entries kept below the applied index when the log is truncated.
    pub log_keep: u64,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            members: 3,
            drop: 0.0,
            duplicate: 0.0,
            max_delay_ms: 5,
            tick_ms: 10,
            election_ticks: 10,
            log_keep: 20,
        }
    }
}

enum Payload {
    Raft(Message),
    /// A `MsgSnapshot` with its data, delivered as one unit.
    Snapshot(Message, Vec<u8>),
}

struct Envelope {
    from: u64,
    to: u64,
    payload: Payload,
}

/// What members hand to the network, shared by their [`SimOutbox`]es.
#[derive(Default)]
struct Net {
    /// Sent during the current step, routed at its end.
    outgoing: Vec<Envelope>,
    /// Who each member can address (its `set_members`).
    links: HashMap<u64, BTreeSet<u64>>,
    /// Snapshot data received by each member, until raft installs it.
    staged: HashMap<u64, HashMap<(u64, u64), Vec<u8>>>,
    /// (from, to) of snapshots that failed before reaching the network.
    failed_snapshots: Vec<(u64, u64)>,
}

fn lock(net: &Mutex<Net>) -> std::sync::MutexGuard<'_, Net> {
    net.lock().unwrap_or_else(|p| p.into_inner())
}

/// One member's end of the simulated network.
struct SimOutbox {
    me: u64,
    net: Arc<Mutex<Net>>,
}

impl SimOutbox {
    fn push(&self, to: u64, payload: Payload) -> bool {
        let mut net = lock(&self.net);
        if !net.links.get(&self.me).is_some_and(|l| l.contains(&to)) {
            return false;
        }
        net.outgoing.push(Envelope {
            from: self.me,
            to,
            payload,
        });
        true
    }
}

impl Outbox for SimOutbox {
    fn send_raft(&self, m: &Message) {
        self.push(m.to, Payload::Raft(m.clone()));
    }

    fn send_snapshot(&self, m: Message, chunks: Chunks) {
        let to = m.to;
        let data: Result<Vec<u8>, CoreError> =
            chunks.collect::<Result<Vec<_>, _>>().map(|c| c.concat());
        let sent = match data {
            Ok(d) => self.push(to, Payload::Snapshot(m, d)),
            Err(_) => false,
        };
        if !sent {
            lock(&self.net).failed_snapshots.push((self.me, to));
        }
    }

    fn set_members(&self, members: &[(u64, String)]) {
        let ids = members
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != self.me)
            .collect();
        lock(&self.net).links.insert(self.me, ids);
    }

    fn take_staged(&self, index: u64, term: u64) -> Option<Vec<u8>> {
        lock(&self.net)
            .staged
            .get_mut(&self.me)?
            .remove(&(index, term))
    }
}

/// A member whose raft loop is running.
struct Running {
    runner: Runner,
    inner: Arc<Inner>,
    /// Virtual ms offset of this member's ticks.
    phase: u64,
    /// Election timeout (ticks) of the current countdown.
    timeout: usize,
    /// (role, term) last seen, to trace changes.
    seen: (StateRole, u64),
}

/// What became of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// Applied; the store revision after it.
    Acked(i64),
    Failed(String),
}

/// A put proposed through [`Sim::propose_put`].
#[derive(Debug)]
pub struct Ticket {
    pub member: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Virtual ms at which it was proposed.
    pub proposed_at: u64,
    pub outcome: Outcome,
    rx: Option<oneshot::Receiver<Result<Applied, CoreError>>>,
}

/// Counters for tests that need to know a path was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Of `duplicated`, forwarded proposals.
    pub duplicated_proposals: u64,
    pub snapshots_delivered: u64,
}

/// The simulated cluster.
pub struct Sim {
    seed: u64,
    opts: SimOptions,
    root: PathBuf,
    rng: StdRng,
    time: Arc<VirtualTime>,
    net: Arc<Mutex<Net>>,
    /// Messages on the wire, by (delivery ms, send order).
    inflight: BTreeMap<(u64, u64), Envelope>,
    seq: u64,
    /// Cut links (from, to).
    blocked: BTreeSet<(u64, u64)>,
    /// Configuration of every member ever started, running or not.
    configs: BTreeMap<u64, NodeConfig>,
    running: BTreeMap<u64, Running>,
    tickets: BTreeMap<u64, Ticket>,
    /// The leader seen for each term.
    leaders: BTreeMap<u64, u64>,
    violations: Vec<String>,
    trace: Sha256,
    recent: VecDeque<String>,
    stats: Stats,
    /// Members with a slow disk: how long each log sync takes.
    log_write_ms: BTreeMap<u64, u64>,
    /// Log syncs under way, by (completion ms, member): the Ready number.
    persisting: BTreeMap<(u64, u64), u64>,
}

const CLUSTER_TOKEN: &str = "janus-cluster";
/// Trace lines kept for failure messages.
const RECENT: usize = 40;

fn peer_url(name: &str) -> String {
    format!("sim://{name}")
}

impl Sim {
    /// Starts `opts.members` voters in fresh data dirs under `root` (which
    /// must exist and be empty of their names).
    pub fn new(seed: u64, root: &Path, opts: SimOptions) -> Sim {
        let mut sim = Sim {
            seed,
            root: root.to_path_buf(),
            rng: StdRng::seed_from_u64(seed),
            time: VirtualTime::new(),
            net: Arc::new(Mutex::new(Net::default())),
            inflight: BTreeMap::new(),
            seq: 0,
            blocked: BTreeSet::new(),
            configs: BTreeMap::new(),
            running: BTreeMap::new(),
            tickets: BTreeMap::new(),
            leaders: BTreeMap::new(),
            violations: Vec::new(),
            trace: Sha256::new(),
            recent: VecDeque::new(),
            stats: Stats::default(),
            log_write_ms: BTreeMap::new(),
            persisting: BTreeMap::new(),
            opts,
        };
        let members: Vec<Member> = (1..=sim.opts.members)
            .map(|i| {
                let name = format!("m{i}");
                let urls = vec![peer_url(&name)];
                Member {
                    id: member_id_for(&urls, CLUSTER_TOKEN),
                    name,
                    peer_urls: urls,
                    client_urls: Vec::new(),
                    is_learner: false,
                }
            })
            .collect();
        for m in &members {
            let cfg = sim.config(&m.name, &members, false);
            sim.configs.insert(cfg.member_id, cfg);
            sim.start(m.id);
        }
        sim
    }

    fn config(&self, name: &str, members: &[Member], join: bool) -> NodeConfig {
        let mut c = NodeConfig::single(self.root.join(name));
        c.name = name.to_string();
        c.peer_urls = vec![peer_url(name)];
        c.client_urls = Vec::new();
        c.cluster_token = CLUSTER_TOKEN.into();
        c.member_id = member_id_for(&c.peer_urls, CLUSTER_TOKEN);
        c.tick = Duration::from_millis(self.opts.tick_ms);
        c.election_ticks = self.opts.election_ticks;
        c.log_keep = self.opts.log_keep;
        c.initial_members = members.to_vec();
        c.join_existing = join;
        c.peer_listen = None;
        c
    }

    /// A failure message prefix: the seed and the latest trace lines.
    pub fn context(&self) -> String {
        let recent: Vec<&str> = self.recent.iter().map(String::as_str).collect();
        format!(
            "seed={} (rerun with JANUS_SIM_SEED={}) at t={}ms; recent trace:\n  {}",
            self.seed,
            self.seed,
            self.now(),
            recent.join("\n  ")
        )
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.context())
    }

    fn log(&mut self, line: String) {
        self.trace.update(line.as_bytes());
        self.trace.update(b"\n");
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual ms since the start.
    pub fn now(&self) -> u64 {
        self.time.elapsed_ms()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Hash of everything that happened so far: equal for equal seeds.
    pub fn trace_hash(&self) -> String {
        self.trace
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Safety violations seen while stepping (two leaders in one term).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn set_drop(&mut self, p: f64) {
        self.opts.drop = p;
    }

    pub fn set_duplicate(&mut self, p: f64) {
        self.opts.duplicate = p;
    }

    pub fn set_max_delay(&mut self, ms: u64) {
        self.opts.max_delay_ms = ms.max(1);
    }

    /// Ids of running members, in order.
    pub fn running(&self) -> Vec<u64> {
        self.running.keys().copied().collect()
    }

    /// Ids of every member ever started, in order.
    pub fn all(&self) -> Vec<u64> {
        self.configs.keys().copied().collect()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.running.contains_key(&id)
    }

    pub fn name(&self, id: u64) -> String {
        self.configs
            .get(&id)
            .map_or_else(|| format!("{id:x}"), |c| c.name.clone())
    }

    fn start(&mut self, id: u64) {
        let Some(cfg) = self.configs.get(&id).cloned() else {
            self.fail(&format!("no member {id:x}"));
        };
        let outbox = Arc::new(SimOutbox {
            me: id,
            net: Arc::clone(&self.net),
        });
        let (tx, rx) = std_mpsc::channel();
        let name = cfg.name.clone();
        let opened = super::open(
            cfg,
            Arc::new(crate::wal::OsFs),
            crate::wal::WalOptions::default(),
            (tx, rx),
            outbox,
            Clock::Virtual(Arc::clone(&self.time)),
            // Seeded, so a seed replays the same trace.
            self.rng.gen(),
        )
        .and_then(|(inner, mut runner)| runner.catch_up().map(|()| (inner, runner)));
        let (inner, runner) = match opened {
            Ok(x) => x,
            Err(e) => self.fail(&format!("member {name} failed to open: {e}")),
        };
        let phase = self.rng.gen_range(0..self.opts.tick_ms);
        let mut runner = runner;
        if self.log_write_ms.contains_key(&id) {
            runner.defer_persistence();
        }
        self.running.insert(
            id,
            Running {
                runner,
                inner,
                phase,
                timeout: 0,
                seen: (StateRole::Follower, 0),
            },
        );
        self.log(format!("{} start {name}", self.now()));
    }

    /// Stops a member abruptly: its loop is dropped without a final sync
    /// or checkpoint, its received-but-uninstalled snapshots are lost, and
    /// its waiting proposers see the reply channel close.
    pub fn crash(&mut self, id: u64) {
        if self.running.remove(&id).is_none() {
            return;
        }
        lock(&self.net).staged.remove(&id);
        self.persisting.retain(|(_, m), _| *m != id);
        let line = format!("{} crash {}", self.now(), self.name(id));
        self.log(line);
    }

    /// Reopens a crashed member from its own data dir.
    pub fn restart(&mut self, id: u64) {
        if !self.running.contains_key(&id) {
            self.start(id);
        }
    }

    /// Deletes a crashed member's data dir.
    pub fn wipe(&mut self, id: u64) {
        if self.running.contains_key(&id) {
            self.fail("wipe of a running member");
        }
        if let Some(c) = self.configs.get(&id) {
            let _ = std::fs::remove_dir_all(&c.data_dir);
        }
        let line = format!("{} wipe {}", self.now(), self.name(id));
        self.log(line);
    }

    /// Cuts every link between members of different groups (both ways).
    pub fn partition(&mut self, groups: &[&[u64]]) {
        self.blocked.clear();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in a.iter() {
                        for y in b.iter() {
                            self.blocked.insert((*x, *y));
                        }
                    }
                }
            }
        }
        let line = format!("{} partition {groups:?}", self.now());
        self.log(line);
    }

    /// Cuts `id` off from every other member.
    pub fn isolate(&mut self, id: u64) {
        let rest: Vec<u64> = self.all().into_iter().filter(|m| *m != id).collect();
        self.partition(&[&[id], &rest]);
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
        let line = format!("{} heal", self.now());
        self.log(line);
    }

    fn cut(&self, from: u64, to: u64) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Advances virtual time by 1 ms: delivers due messages, ticks members
    /// whose tick falls now, runs every member's Ready, routes what they
    /// sent and records roles and acknowledgements.
    pub fn step(&mut self) {
        self.time.advance(1);
        let now = self.now();
        let later = self.inflight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.inflight, later);
        for (_, env) in due {
            self.deliver(env);
        }
        let failed: Vec<(u64, u64)> = std::mem::take(&mut lock(&self.net).failed_snapshots);
        for (from, to) in failed {
            self.report_snapshot(from, to, false);
        }
        self.complete_log_writes();
        let ids = self.running();
        let tick_ms = self.opts.tick_ms;
        for id in &ids {
            let Some(run) = self.running.get_mut(id) else {
                continue;
            };
            if !(now + run.phase).is_multiple_of(tick_ms) {
                continue;
            }
            let r = run.runner.raft_mut();
            if r.election_elapsed == 0 {
                let base = r.election_timeout();
                run.timeout = self.rng.gen_range(base..2 * base);
            }
            r.set_randomized_election_timeout(run.timeout);
            run.runner.tick();
        }
        for id in &ids {
            let Some(run) = self.running.get_mut(id) else {
                continue;
            };
            if let Err(e) = run.runner.process() {
                let what = format!("member {} raft loop failed: {e}", self.name(*id));
                self.fail(&what);
            }
        }
        self.start_log_writes();
        self.route();
        self.observe();
    }

    /// Gives member `id` a disk whose log syncs take `ms` virtual ms (see
    /// the module); from now on it persists asynchronously, also after a
    /// restart.
    pub fn set_log_write_ms(&mut self, id: u64, ms: u64) {
        self.log_write_ms.insert(id, ms);
        if let Some(run) = self.running.get_mut(&id) {
            run.runner.defer_persistence();
        }
        let line = format!("{} log write {ms}ms {}", self.now(), self.name(id));
        self.log(line);
    }

    /// Completes the log syncs due now.
    fn complete_log_writes(&mut self) {
        let now = self.now();
        let later = self.persisting.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.persisting, later);
        for ((_, id), number) in due {
            let Some(run) = self.running.get_mut(&id) else {
                continue;
            };
            if let Err(e) = run.runner.complete_persist(number) {
                let what = format!("member {} log write failed: {e}", self.name(id));
                self.fail(&what);
            }
        }
    }

    /// Queues the log syncs members asked for in this step.
    fn start_log_writes(&mut self) {
        let now = self.now();
        for (id, ms) in &self.log_write_ms {
            let Some(run) = self.running.get_mut(id) else {
                continue;
            };
            if let Some(n) = run.runner.take_persist_requests().into_iter().max() {
                let slot = self.persisting.entry((now + ms.max(&1), *id)).or_default();
                *slot = (*slot).max(n);
            }
        }
    }

    /// Runs `n` steps.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Steps until `done` holds (checked every step), at most `max` steps.
    pub fn run_until(&mut self, max: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn deliver(&mut self, env: Envelope) {
        let now = self.now();
        let alive = self.running.contains_key(&env.to);
        if !alive || self.cut(env.from, env.to) {
            self.stats.dropped += 1;
            self.log(format!("{now} lost {}->{}", env.from, env.to));
            if let Payload::Snapshot(..) = env.payload {
                self.report_snapshot(env.from, env.to, false);
            }
            return;
        }
        self.stats.delivered += 1;
        let (from, to) = (env.from, env.to);
        let ev = match env.payload {
            Payload::Raft(m) => {
                self.log(format!(
                    "{now} {from:x}->{to:x} {:?} t{} i{} lt{} c{} n{} r{}",
                    m.get_msg_type(),
                    m.term,
                    m.index,
                    m.log_term,
                    m.commit,
                    m.entries.len(),
                    m.reject
                ));
                PeerEvent::Raft(m)
            }
            Payload::Snapshot(m, data) => {
                let meta = m.get_snapshot().get_metadata();
                self.log(format!(
                    "{now} {from:x}->{to:x} snapshot i{} t{} {}B",
                    meta.index,
                    meta.term,
                    data.len()
                ));
                lock(&self.net)
                    .staged
                    .entry(to)
                    .or_default()
                    .insert((meta.index, meta.term), data);
                self.stats.snapshots_delivered += 1;
                self.report_snapshot(from, to, true);
                PeerEvent::Raft(m)
            }
        };
        if let Some(run) = self.running.get_mut(&to) {
            run.runner.handle(Msg::Peer(ev));
        }
    }

    fn report_snapshot(&mut self, from: u64, to: u64, ok: bool) {
        if let Some(run) = self.running.get_mut(&from) {
            run.runner
                .handle(Msg::Peer(PeerEvent::SnapshotSent { to, ok }));
        }
    }

    /// Decides the fate of everything sent during this step, in send order.
    fn route(&mut self) {
        let now = self.now();
        let out = std::mem::take(&mut lock(&self.net).outgoing);
        for env in out {
            let lost = self.rng.gen_bool(self.opts.drop.clamp(0.0, 1.0));
            let twice = self.rng.gen_bool(self.opts.duplicate.clamp(0.0, 1.0));
            if lost || self.cut(env.from, env.to) {
                self.stats.dropped += 1;
                self.log(format!("{now} drop {}->{}", env.from, env.to));
                if let Payload::Snapshot(..) = env.payload {
                    self.report_snapshot(env.from, env.to, false);
                }
                continue;
            }
            // Forwarded proposals too: raft-rs appends every MsgPropose it
            // receives, so a copy is committed twice and the state machine
            // must apply it once ([`crate::dedup`]).
            if let Payload::Raft(m) = &env.payload {
                if twice {
                    if m.get_msg_type() == MessageType::MsgPropose {
                        self.stats.duplicated_proposals += 1;
                    }
                    let copy = Envelope {
                        from: env.from,
                        to: env.to,
                        payload: Payload::Raft(m.clone()),
                    };
                    self.stats.duplicated += 1;
                    self.send_later(copy);
                }
            }
            self.send_later(env);
        }
    }

    fn send_later(&mut self, env: Envelope) {
        let delay = self.rng.gen_range(1..=self.opts.max_delay_ms.max(1));
        self.seq += 1;
        self.inflight.insert((self.now() + delay, self.seq), env);
    }

    /// Records role changes and acknowledgements; checks that no term has
    /// two leaders.
    fn observe(&mut self) {
        let now = self.now();
        let mut lines = Vec::new();
        for (id, run) in self.running.iter_mut() {
            let r = run.runner.raft_mut();
            let seen = (r.state, r.term);
            if seen != run.seen {
                run.seen = seen;
                lines.push(format!("{now} role {id:x} {:?} t{}", seen.0, seen.1));
            }
            if seen.0 == StateRole::Leader {
                match self.leaders.get(&seen.1) {
                    Some(other) if other != id => self.violations.push(format!(
                        "two leaders in term {}: {other:x} and {id:x} (t={now}ms)",
                        seen.1
                    )),
                    Some(_) => {}
                    None => {
                        self.leaders.insert(seen.1, *id);
                    }
                }
            }
        }
        for (t, ticket) in self.tickets.iter_mut() {
            let Some(rx) = ticket.rx.as_mut() else {
                continue;
            };
            let outcome = match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => continue,
                Err(oneshot::error::TryRecvError::Closed) => Outcome::Failed("dropped".into()),
                Ok(Ok(a)) => Outcome::Acked(a.revision),
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
            };
            lines.push(format!("{now} ticket {t} {outcome:?}"));
            ticket.outcome = outcome;
            ticket.rx = None;
        }
        for l in lines {
            self.log(l);
        }
    }

    fn running_member(&mut self, id: u64) -> &mut Running {
        if !self.running.contains_key(&id) {
            self.fail(&format!("member {id:x} is not running"));
        }
        self.running.get_mut(&id).expect("checked above")
    }

    /// Proposes a put on member `on` (raft forwards it to the leader) with
    /// the virtual time as its timestamp. Returns the ticket id.
    pub fn propose_put(&mut self, on: u64, key: &[u8], value: &[u8]) -> u64 {
        let proposed_at = self.now();
        let run = self.running_member(on);
        // Named as every proposal is: the member's id, boot epoch, a fresh
        // request id, and its (virtual) clock.
        let p = run.inner.proposal(Command::Put(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        }));
        let id = p.request_id;
        let data = postcard::to_stdvec(&p).expect("a put encodes");
        let (reply, rx) = oneshot::channel();
        run.runner.handle(Msg::Propose {
            id,
            data,
            reply: Some(reply),
        });
        let t = self.tickets.len() as u64 + 1;
        self.tickets.insert(
            t,
            Ticket {
                member: on,
                key: key.to_vec(),
                value: value.to_vec(),
                proposed_at,
                outcome: Outcome::Pending,
                rx: Some(rx),
            },
        );
        self.log(format!(
            "{proposed_at} propose {t} on {on:x} {}",
            String::from_utf8_lossy(key)
        ));
        // An immediate refusal (no leader) is already in the channel.
        self.observe();
        t
    }

    pub fn ticket(&self, t: u64) -> &Ticket {
        &self.tickets[&t]
    }

    pub fn tickets(&self) -> impl Iterator<Item = (u64, &Ticket)> {
        self.tickets.iter().map(|(t, k)| (*t, k))
    }

    /// The raft role and term of a running member.
    pub fn role(&mut self, id: u64) -> Option<(StateRole, u64)> {
        let run = self.running.get_mut(&id)?;
        let r = run.runner.raft_mut();
        Some((r.state, r.term))
    }

    /// The running member that leads the highest term any running member
    /// has reached (`None` while that term has no leader yet, e.g. while a
    /// deposed leader still believes it leads an older term).
    pub fn leader(&mut self) -> Option<u64> {
        let ids = self.running();
        let mut best: Option<(u64, u64)> = None;
        for id in &ids {
            if let Some((StateRole::Leader, term)) = self.role(*id) {
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, *id));
                }
            }
        }
        let (term, leader) = best?;
        let max_term = ids
            .iter()
            .filter_map(|id| self.role(*id).map(|r| r.1))
            .max()?;
        (term == max_term).then_some(leader)
    }

    /// Steps until a leader is known (at most `max` steps).
    pub fn wait_leader(&mut self, max: u64) -> u64 {
        for _ in 0..max {
            if let Some(l) = self.leader() {
                return l;
            }
            self.step();
        }
        self.fail("no leader elected");
    }

    /// Asks the leader to hand leadership to `to` (etcd MoveLeader).
    pub fn transfer_leader(&mut self, to: u64) {
        let Some(l) = self.leader() else {
            self.fail("transfer without a leader");
        };
        self.running_member(l)
            .runner
            .handle(Msg::TransferLeader(to));
        let line = format!("{} transfer {l:x}->{to:x}", self.now());
        self.log(line);
    }

    fn conf_change(
        &mut self,
        via: u64,
        change: ConfChangeType,
        id: u64,
        member: Option<Member>,
        max: u64,
    ) -> Result<(), String> {
        let run = self.running_member(via);
        let request_id = run
            .inner
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cc = super::conf_change_v2(
            via,
            request_id,
            change,
            id,
            member,
            run.inner.clock.now_ms(),
        )
        .map_err(|e| e.to_string())?;
        let (reply, mut rx) = oneshot::channel();
        run.runner.handle(Msg::ConfChange {
            id: request_id,
            cc,
            reply,
        });
        let line = format!("{} conf {change:?} {id:x} via {via:x}", self.now());
        self.log(line);
        for _ in 0..max {
            match rx.try_recv() {
                Ok(r) => return r.map(|_| ()).map_err(|e| e.to_string()),
                Err(oneshot::error::TryRecvError::Closed) => return Err("dropped".into()),
                Err(oneshot::error::TryRecvError::Empty) => self.step(),
            }
        }
        Err(format!("no answer in {max} steps"))
    }

    /// Removes member `id` through member `via` (etcd MemberRemove).
    pub fn remove_member(&mut self, via: u64, id: u64, max: u64) -> Result<(), String> {
        self.conf_change(via, ConfChangeType::RemoveNode, id, None, max)
    }

    /// Adds a voter named `name` through member `via` (etcd MemberAdd),
    /// then starts it with an empty data dir (`--initial-cluster-state
    /// existing`): it is caught up by a snapshot. Returns its id.
    pub fn add_member(&mut self, via: u64, name: &str, max: u64) -> Result<u64, String> {
        let urls = vec![peer_url(name)];
        let id = member_id_for(&urls, CLUSTER_TOKEN);
        let m = Member {
            id,
            name: name.to_string(),
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner: false,
        };
        self.conf_change(via, ConfChangeType::AddNode, id, Some(m), max)?;
        let members = self.node(via).members();
        let cfg = self.config(name, &members, true);
        let _ = std::fs::remove_dir_all(&cfg.data_dir);
        self.configs.insert(id, cfg);
        self.start(id);
        Ok(id)
    }

    /// A read handle on a running member (the public [`Node`] read API).
    fn node(&mut self, id: u64) -> Node {
        Node {
            inner: Arc::clone(&self.running_member(id).inner),
        }
    }

    /// Ids in member `id`'s member table.
    pub fn member_ids(&mut self, id: u64) -> Vec<u64> {
        let mut ids: Vec<u64> = self.node(id).members().iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }

    /// (applied index, store revision, HashKV) of a running member.
    pub fn digest(&mut self, id: u64) -> (u64, i64, u32) {
        let node = self.node(id);
        let st = node.status();
        let hash = match node.hash_kv(0) {
            Ok((h, _, _)) => h,
            Err(e) => self.fail(&format!("hash_kv on {id:x}: {e}")),
        };
        (st.applied_index, st.header.revision, hash)
    }

    /// A key's value and mod revision on a running member (local read).
    pub fn get(&mut self, id: u64, key: &[u8]) -> Option<(Vec<u8>, i64)> {
        let r = self
            .node(id)
            .range(&RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .ok()?;
        r.kvs.first().map(|kv| (kv.value.clone(), kv.mod_revision))
    }

    /// Steps until every running member in `ids` has the same applied
    /// index, revision and HashKV; returns that digest or why not.
    pub fn wait_converged(&mut self, ids: &[u64], max: u64) -> Result<(u64, i64, u32), String> {
        let mut last = Vec::new();
        for i in 0..=max {
            if i % 25 == 0 {
                last = ids.iter().map(|id| (*id, self.digest(*id))).collect();
                if last.windows(2).all(|w| w[0].1 == w[1].1) {
                    return Ok(last[0].1);
                }
            }
            self.step();
        }
        Err(format!(
            "members did not converge in {max} steps: {:?}",
            last.iter()
                .map(|(id, d)| format!("{id:x}: applied {} rev {} hash {:08x}", d.0, d.1, d.2))
                .collect::<Vec<_>>()
        ))
    }

    /// Keys proposed (acknowledged or not) that a member holds at a version
    /// above 1: every key is put once, so a higher version is a command
    /// applied twice.
    pub fn applied_twice(&mut self, ids: &[u64]) -> Vec<String> {
        let keys: Vec<Vec<u8>> = self.tickets.values().map(|t| t.key.clone()).collect();
        let mut problems = Vec::new();
        for id in ids {
            for key in &keys {
                let version = self
                    .node(*id)
                    .range(&RangeRequest {
                        key: key.clone(),
                        ..Default::default()
                    })
                    .ok()
                    .and_then(|r| r.kvs.first().map(|kv| kv.version));
                if let Some(v) = version.filter(|v| *v > 1) {
                    problems.push(format!(
                        "{} at version {v} on member {id:x}",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
        problems
    }

    /// Every acknowledged put is present, with its value and the revision
    /// it was acknowledged at, on every member in `ids`. Returns the
    /// problems found.
    pub fn lost_writes(&mut self, ids: &[u64]) -> Vec<String> {
        let acked: Vec<(u64, Vec<u8>, Vec<u8>, i64)> = self
            .tickets
            .iter()
            .filter_map(|(t, k)| match k.outcome {
                Outcome::Acked(rev) => Some((*t, k.key.clone(), k.value.clone(), rev)),
                _ => None,
            })
            .collect();
        let mut problems = Vec::new();
        for id in ids {
            for (t, key, value, rev) in &acked {
                let got = self.get(*id, key);
                if got.as_ref() != Some(&(value.clone(), *rev)) {
                    problems.push(format!(
                        "ticket {t} ({}) acked at rev {rev}, member {id:x} has {got:?}",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
        problems
    }
}
