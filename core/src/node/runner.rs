//! The raft loop: owns the RawNode, sends and receives peer messages,
//! hands committed entries to the apply thread ([`super::apply`]) and
//! applies conf changes itself, installs snapshots, answers linearizable
//! readers, and does the leader's housekeeping (lease expiry, reaping).
//!
//! Two ways to handle a Ready; in both the leader's appends go to
//! followers before its own WAL sync, and messages that must follow the
//! sync (votes, append responses) go after it.
//! - In the loop (default, and start-up catch-up): append, apply, one WAL
//!   group commit, `advance`.
//! - Asynchronous ([`crate::wal::WalOptions::writer_thread`], and the
//!   simulation's slow disks): the log writer thread
//!   ([`super::log_writer`]) syncs, raft-rs `advance_append_async` /
//!   `on_persist_ready`; messages that must follow the sync wait in
//!   `unpersisted` until the writer reports it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use raft_proto::ConfChangeI;

use super::apply::{Applier, ApplyThread, Pending};
use super::log_writer::LogWriter;
use super::store_sync::StoreSyncer;
use super::{ConfContext, Inner, Msg, Reply};
use crate::command::Applied;
use crate::command::Command;
use crate::members::{Member, MemberChange};
use crate::peer::PeerEvent;
use crate::raft_log::RaftLog;
use crate::snapshot::Export;
use crate::state::State;
use crate::CoreError;

/// (id, first peer URL) of every member but none, for the transport.
pub(super) fn peer_list(st: &State) -> Vec<(u64, String)> {
    st.members
        .values()
        .filter_map(|m| m.peer_urls.first().map(|u| (m.id, u.clone())))
        .collect()
}

pub(super) struct Runner {
    raw: RawNode<RaftLog>,
    inner: Arc<Inner>,
    rx: std_mpsc::Receiver<Msg>,
    pending: Pending,
    /// Applies normal entries inline (catch-up, simulation) or hands them
    /// to `apply_thread`.
    applier: Arc<Applier>,
    /// The apply thread (`None`: apply in the loop).
    apply_thread: Option<ApplyThread>,
    pending_conf: HashMap<u64, Reply<Vec<Member>>>,
    reads_waiting: Vec<Reply<()>>,
    reads_inflight: HashMap<u64, (Vec<Reply<()>>, Instant)>,
    reads_ready: Vec<(u64, Vec<Reply<()>>)>,
    next_read: u64,
    /// Leases whose revoke the leader proposed, and when.
    revoking: HashMap<i64, Instant>,
    last_reap: Instant,
    /// Whether this member's client URLs are published in the member table.
    published: bool,
    /// Whether this member's ZooKeeper server attributes are published.
    zk_published: bool,
    /// Applied index last written to the checkpoint file, and when.
    checkpointed: u64,
    last_checkpoint: Instant,
    /// The log writer thread (`None`: sync in the loop).
    writer: Option<LogWriter>,
    /// Readies handed to the writer and not yet durable, with the messages
    /// to send once they are.
    unpersisted: VecDeque<(u64, Vec<Message>)>,
    /// The writer failed: the loop must stop.
    failed: Option<CoreError>,
    /// The store syncer thread (`None`: the loop syncs the store and
    /// writes the checkpoint itself, as the simulation does).
    store_syncer: Option<StoreSyncer>,
    /// The simulation's stand-in for the writer thread: Ready numbers
    /// waiting for [`Runner::complete_persist`] (`None`: not in use).
    deferred: Option<Vec<u64>>,
}

impl Runner {
    pub(super) fn new(
        raw: RawNode<RaftLog>,
        inner: Arc<Inner>,
        rx: std_mpsc::Receiver<Msg>,
    ) -> Runner {
        let pending = Pending::default();
        let applier = Arc::new(Applier::new(
            Arc::clone(&inner),
            Arc::clone(&pending),
            raw.store().wal_dir(),
        ));
        Runner {
            raw,
            rx,
            pending,
            applier,
            apply_thread: None,
            pending_conf: HashMap::new(),
            reads_waiting: Vec::new(),
            reads_inflight: HashMap::new(),
            reads_ready: Vec::new(),
            next_read: 1,
            revoking: HashMap::new(),
            last_reap: inner.clock.now(),
            published: false,
            zk_published: false,
            checkpointed: 0,
            last_checkpoint: inner.clock.now(),
            writer: None,
            unpersisted: VecDeque::new(),
            failed: None,
            deferred: None,
            store_syncer: None,
            inner,
        }
    }

    /// A sender into this loop's queue, for a helper thread's reports.
    fn loop_sender(&self) -> Result<std_mpsc::Sender<Msg>, CoreError> {
        Ok(self
            .inner
            .tx
            .lock()
            .map_err(|_| CoreError::Stopped)?
            .clone())
    }

    /// Moves the periodic store sync and checkpoint to their own thread.
    pub(super) fn start_store_syncer(&mut self) -> Result<(), CoreError> {
        let tx = self.loop_sender()?;
        let s = StoreSyncer::start(
            Arc::clone(&self.inner.state),
            self.inner.cfg.data_dir.clone(),
            move |r| {
                let _ = tx.send(Msg::StoreDurable(r));
            },
        )
        .map_err(|e| CoreError::Raft(format!("cannot start the store syncer: {e}")))?;
        self.store_syncer = Some(s);
        Ok(())
    }

    /// Asynchronous persistence driven by the caller (the simulation, which
    /// delays log writes in virtual time): Readies are acknowledged to raft
    /// only through [`Runner::complete_persist`].
    #[cfg(feature = "sim")]
    pub(super) fn defer_persistence(&mut self) {
        if self.deferred.is_none() {
            self.deferred = Some(Vec::new());
        }
    }

    /// Ready numbers handed over since the last call (deferred mode).
    #[cfg(feature = "sim")]
    pub(super) fn take_persist_requests(&mut self) -> Vec<u64> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Does the writer's work for Ready `number` (deferred mode).
    #[cfg(feature = "sim")]
    pub(super) fn complete_persist(&mut self, number: u64) -> Result<(), CoreError> {
        self.raw.store().sync()?;
        self.on_persisted(number);
        Ok(())
    }

    /// Moves WAL syncs to the log writer thread (after catch-up).
    pub(super) fn start_writer(&mut self) -> Result<(), CoreError> {
        let tx = self.loop_sender()?;
        let w = LogWriter::start(self.raw.store().wal_handle(), move |r| {
            let _ = tx.send(Msg::Persisted(r));
        })
        .map_err(|e| CoreError::Raft(format!("cannot start the log writer: {e}")))?;
        self.writer = Some(w);
        Ok(())
    }

    /// Moves applying committed entries to their own thread (after
    /// catch-up).
    pub(super) fn start_apply_thread(&mut self) -> Result<(), CoreError> {
        let tx = self.loop_sender()?;
        let t = ApplyThread::start(Arc::clone(&self.applier), move |r| {
            let _ = tx.send(Msg::Applied(r));
        })
        .map_err(|e| CoreError::Raft(format!("cannot start the apply thread: {e}")))?;
        self.apply_thread = Some(t);
        Ok(())
    }

    pub(super) fn run(&mut self) {
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
                self.tick();
            }
            if let Err(e) = self.process() {
                tracing::error!("raft loop stopped: {e}");
                self.inner.stopped.store(true, Ordering::Release);
                break;
            }
            if stop {
                break;
            }
        }
        if let Some(mut a) = self.apply_thread.take() {
            a.stop();
        }
        if let Some(mut w) = self.writer.take() {
            w.stop();
        }
        if let Some(mut s) = self.store_syncer.take() {
            s.stop();
        }
        if let Err(e) = self.raw.store().sync() {
            tracing::error!("final WAL sync failed: {e}");
        }
        if let Err(e) = self.checkpoint() {
            tracing::error!("final checkpoint failed: {e}");
        }
        let pending = std::mem::take(&mut *self.pending_lock());
        for (_, (r, _)) in pending {
            let _ = r.send(Err(CoreError::Stopped));
        }
    }

    /// One raft tick and the housekeeping that goes with it.
    pub(super) fn tick(&mut self) {
        self.raw.tick();
        self.housekeeping();
    }

    /// Issues waiting reads and handles the Ready, if any: what the loop does
    /// after every batch of messages.
    pub(super) fn process(&mut self) -> Result<(), CoreError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.issue_reads();
        if self.writer.is_some() || self.deferred.is_some() {
            self.on_ready_async()
        } else {
            self.on_ready()
        }
    }

    /// The writer made every Ready up to `number` durable.
    fn on_persisted(&mut self, number: u64) {
        while self.unpersisted.front().is_some_and(|(n, _)| *n <= number) {
            if let Some((_, msgs)) = self.unpersisted.pop_front() {
                self.send_messages(msgs);
            }
        }
        self.raw.on_persist_ready(number);
    }

    /// The raft node, for the simulation's checks (role, term) and its
    /// seeded election timeouts.
    #[cfg(feature = "sim")]
    pub(super) fn raft_mut(&mut self) -> &mut raft::Raft<RaftLog> {
        &mut self.raw.raft
    }

    /// Applies every entry the durable log records as committed (restart).
    pub(super) fn catch_up(&mut self) -> Result<(), CoreError> {
        let commit = self.raw.store().hard_state().commit;
        for _ in 0..10_000 {
            if self.state().applied_index >= commit || !self.raw.has_ready() {
                break;
            }
            self.on_ready()?;
        }
        Ok(())
    }

    /// Returns true on Stop.
    pub(super) fn handle(&mut self, m: Msg) -> bool {
        match m {
            Msg::Propose { id, data, reply } => {
                // Followers forward proposals to the leader (raft-rs does).
                match self.raw.propose(vec![], data) {
                    Err(e) => {
                        if let Some(r) = reply {
                            let err = match e {
                                raft::Error::ProposalDropped => CoreError::NotLeader,
                                e => CoreError::Raft(e.to_string()),
                            };
                            let _ = r.send(Err(err));
                        }
                    }
                    Ok(()) => {
                        if let Some(r) = reply {
                            let now = self.inner.clock.now();
                            self.pending_lock().insert(id, (r, now));
                        }
                    }
                }
            }
            Msg::Read { reply } => self.reads_waiting.push(reply),
            Msg::ConfChange { id, cc, reply } => {
                // Like proposals, raft-rs forwards a follower's to the leader.
                match self.raw.propose_conf_change(vec![], cc) {
                    Err(raft::Error::ProposalDropped) => {
                        let _ = reply.send(Err(CoreError::NotLeader));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(CoreError::Raft(e.to_string())));
                    }
                    Ok(()) => {
                        self.pending_conf.insert(id, reply);
                    }
                }
            }
            Msg::TransferLeader(to) => self.raw.transfer_leader(to),
            Msg::Persisted(Ok(n)) => self.on_persisted(n),
            Msg::Applied(Ok(_)) => {
                self.advance_applied();
                self.answer_reads();
            }
            Msg::Applied(Err(e)) => {
                self.failed = Some(CoreError::Raft(format!("apply failed: {e}")));
            }
            Msg::Persisted(Err(e)) => {
                self.failed = Some(CoreError::Raft(format!("WAL write failed: {e}")));
            }
            Msg::StoreDurable(Ok(applied)) => {
                self.checkpointed = applied;
                if let Err(e) = self.truncate_log(applied) {
                    self.failed = Some(e);
                }
            }
            Msg::StoreDurable(Err(e)) => {
                self.failed = Some(CoreError::Raft(format!("store sync failed: {e}")));
            }
            Msg::Peer(ev) => match ev {
                PeerEvent::Raft(m) => {
                    if let Err(e) = self.raw.step(m) {
                        tracing::trace!("raft step: {e}");
                    }
                }
                PeerEvent::SnapshotSent { to, ok } => {
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    self.raw.report_snapshot(to, status);
                }
                PeerEvent::Unreachable(to) => self.raw.report_unreachable(to),
            },
            Msg::Stop => return true,
        }
        false
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Reply<Applied>, Instant)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The applied index, without the state's lock (the apply thread may
    /// hold it for a whole group).
    fn applied(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    /// Tells raft-rs how far the state machine has applied (it wants
    /// applied <= min(committed, persisted); an installed snapshot counts
    /// as persisted only once the writer reports it) and lets snapshot
    /// exports describe it.
    fn advance_applied(&mut self) {
        let applied = self.applied();
        let rl = &self.raw.raft.raft_log;
        let to = applied.min(rl.committed).min(rl.persisted);
        if to > rl.applied {
            self.raw.advance_apply_to(to);
        }
        self.raw.store().set_durable_applied(applied);
    }

    /// One ReadIndex request serves every read waiting now; a request with
    /// no answer after an election timeout is retried (a new leader drops
    /// them until it commits in its term).
    fn issue_reads(&mut self) {
        let timeout = self.inner.cfg.tick * self.inner.cfg.election_ticks as u32;
        let clock = &self.inner.clock;
        let stale: Vec<u64> = self
            .reads_inflight
            .iter()
            .filter(|(_, (_, t))| clock.elapsed(*t) > timeout)
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
            (
                std::mem::take(&mut self.reads_waiting),
                self.inner.clock.now(),
            ),
        );
    }

    fn answer_reads(&mut self) {
        let applied = self.applied();
        let (done, wait): (Vec<_>, Vec<_>) =
            self.reads_ready.drain(..).partition(|(i, _)| *i <= applied);
        self.reads_ready = wait;
        for (_, rs) in done {
            for r in rs {
                let _ = r.send(Ok(()));
            }
        }
    }

    fn send_messages(&mut self, msgs: Vec<Message>) {
        for mut m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(m);
                continue;
            }
            m.from = self.inner.cfg.member_id;
            self.inner.peers.send_raft(&m);
        }
    }

    /// Sends a snapshot of the state as it is now: the metadata is rewritten
    /// to the exported applied index so that data and index agree.
    fn send_snapshot(&mut self, mut m: Message) {
        let export = {
            let st = self.state();
            Export::take(&st.engine, st.applied_index)
        };
        let Ok(term) = raft::Storage::term(self.raw.store(), export.applied_index) else {
            self.raw.report_snapshot(m.to, SnapshotStatus::Failure);
            return;
        };
        let meta = m.mut_snapshot().mut_metadata();
        meta.index = export.applied_index;
        meta.term = term;
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        tracing::info!(to = m.to, index = export.applied_index, "sending snapshot");
        let chunks = Box::new(export.chunks());
        self.inner.peers.send_snapshot(m, chunks);
    }

    /// The seven steps of a raft-rs Ready (see the raft crate's docs), with
    /// the log append moved before the apply so that the commit index is
    /// recorded with or before the entries it covers are applied.
    fn on_ready(&mut self) -> Result<(), CoreError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.ready_front(&mut ready)?;
        // 4 + 5. New entries and hard state, one batch.
        self.raw.mut_store().append(ready.entries(), ready.hs())?;
        if let Some(hs) = ready.hs() {
            self.inner.term.store(hs.term, Ordering::Release);
            crate::metrics::PROPOSALS_COMMITTED.store(hs.commit, Ordering::Relaxed);
        }
        self.inner
            .last_index
            .store(self.raw.store().last(), Ordering::Release);
        // 3. Committed entries (raft-rs hands out only persisted ones).
        self.apply(ready.take_committed_entries())?;
        // Group commit: one WAL fdatasync covers the appends above. The
        // store's batches are not synced here: a crash replays them from
        // the WAL.
        self.raw.store().sync()?;
        let applied = self.applied();
        self.raw.store().set_durable_applied(applied);
        if self.store_syncer.is_none()
            && self.inner.clock.elapsed(self.last_checkpoint) >= crate::checkpoint::INTERVAL
            && applied > self.checkpointed
        {
            self.checkpoint()?;
        }
        // 6. Messages that must follow the sync (votes, append responses).
        self.send_messages(ready.take_persisted_messages());
        // 7. Advance, then the LightReady.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
            crate::metrics::PROPOSALS_COMMITTED.store(commit, Ordering::Relaxed);
        }
        self.send_messages(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.advance_applied();
        self.answer_reads();
        Ok(())
    }

    /// Steps 1 and 2 of a Ready and its soft state and read states: what
    /// needs no durability first.
    fn ready_front(&mut self, ready: &mut raft::Ready) -> Result<(), CoreError> {
        // 1. Messages that may go out before the sync (leader appends).
        self.send_messages(ready.take_messages());
        // 2. A snapshot from the leader.
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
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
        Ok(())
    }

    /// A Ready with its WAL sync on the writer thread: committed entries
    /// (durable already; raft-rs hands out only persisted ones) are applied
    /// while the writer flushes the previous appends, the new appends join
    /// the WAL buffer, and the Ready is acknowledged to raft-rs when the
    /// writer reports it durable ([`Runner::on_persisted`]).
    fn on_ready_async(&mut self) -> Result<(), CoreError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.ready_front(&mut ready)?;
        self.apply(ready.take_committed_entries())?;
        let wrote =
            !ready.entries().is_empty() || ready.hs().is_some() || !ready.snapshot().is_empty();
        self.raw.mut_store().append(ready.entries(), ready.hs())?;
        if let Some(hs) = ready.hs() {
            self.inner.term.store(hs.term, Ordering::Release);
            crate::metrics::PROPOSALS_COMMITTED.store(hs.commit, Ordering::Relaxed);
        }
        self.inner
            .last_index
            .store(self.raw.store().last(), Ordering::Release);
        let persisted = ready.take_persisted_messages();
        let number = ready.number();
        self.raw.advance_append_async(ready);
        if wrote || !self.unpersisted.is_empty() {
            self.unpersisted.push_back((number, persisted));
            if let Some(w) = &self.writer {
                w.request(number);
            } else if let Some(d) = &mut self.deferred {
                d.push(number);
            }
        } else {
            self.send_messages(persisted);
            self.raw.on_persist_ready(number);
        }
        self.advance_applied();
        let applied = self.applied();
        if self.store_syncer.is_none()
            && self.inner.clock.elapsed(self.last_checkpoint) >= crate::checkpoint::INTERVAL
            && applied > self.checkpointed
        {
            self.checkpoint()?;
        }
        self.answer_reads();
        Ok(())
    }

    /// Replaces this member's state with a snapshot streamed by the leader,
    /// in one atomic batch with the raft metadata (a crash leaves either the
    /// old state or the new one).
    fn install_snapshot(&mut self, snap: raft::prelude::Snapshot) -> Result<(), CoreError> {
        self.drain_apply()?;
        let meta = snap.get_metadata().clone();
        let data = self
            .inner
            .peers
            .take_staged(meta.index, meta.term)
            .ok_or_else(|| {
                CoreError::Raft(format!(
                    "snapshot {} at term {} has no data",
                    meta.index, meta.term
                ))
            })?;
        let records = crate::snapshot::parse(&data)
            .map_err(|e| CoreError::Raft(format!("bad snapshot from leader: {e}")))?;
        let engine = Arc::clone(&self.state().engine);
        let mut batch = engine.batch();
        crate::snapshot::install_into(&engine, &mut batch, records)?;
        self.raw.store().snapshot_into(&mut batch, &meta)?;
        engine.commit(batch)?;
        engine.sync()?;
        self.raw.store().snapshot_installed(&meta)?;
        let fresh = State::load(Arc::clone(&engine))?;
        {
            let mut st = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
            let hub = std::mem::take(&mut st.hub);
            *st = fresh;
            st.hub = hub;
            // Under the write lock: no watcher reads history before the
            // new store is in place.
            st.hub.resync_all();
            st.hub.config_changed(st.config_index);
            self.inner.peers.set_members(&peer_list(&st));
            self.inner
                .applied
                .store(st.applied_index, Ordering::Release);
        }
        tracing::info!(index = meta.index, "installed snapshot from leader");
        Ok(())
    }

    /// Makes the state store durable, records its applied index in the
    /// checkpoint file, then truncates the WAL below it: the order that
    /// keeps every entry the store may still need in the log (D10).
    fn checkpoint(&mut self) -> Result<(), CoreError> {
        let applied = self.state().applied_index;
        self.raw.store().sync_store()?;
        crate::checkpoint::write(&self.inner.cfg.data_dir, applied)?;
        self.checkpointed = applied;
        self.last_checkpoint = self.inner.clock.now();
        self.truncate_log(applied)
    }

    /// Drops old log entries, keeping `log_keep` below `durable_applied`
    /// (an applied index the store has persisted: restart replays from
    /// there, so nothing below it is needed again on this member).
    fn truncate_log(&mut self, durable_applied: u64) -> Result<(), CoreError> {
        let first = self.raw.store().first();
        let keep = self.inner.cfg.log_keep.max(1);
        if durable_applied > first + 2 * keep {
            self.raw.mut_store().compact(durable_applied - keep)?;
        }
        Ok(())
    }

    fn role_changed(&mut self, leader: u64, role: StateRole) {
        let before = self.inner.leader.swap(leader, Ordering::AcqRel);
        if before != leader {
            tracing::info!(leader = format!("{leader:x}"), "leader changed");
            if leader != 0 {
                crate::metrics::LEADER_CHANGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if role == StateRole::Leader {
            // D9: a new leader restarts every lease's clock, plus an
            // election timeout, so a failover expires no healthy session.
            let extra = self.inner.cfg.tick * self.inner.cfg.election_ticks as u32;
            let now = self.inner.clock.now();
            let st = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
            if let Ok(mut d) = self.inner.deadlines.lock() {
                for (id, l) in &st.leases {
                    d.insert(*id, now + Duration::from_millis(l.ttl_ms as u64) + extra);
                }
            }
        }
    }

    /// Applies committed entries in log order: runs of normal entries as
    /// groups (on the apply thread once it runs), each conf change here,
    /// on raft-rs's node, after everything before it is applied.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), CoreError> {
        let mut run = Vec::new();
        for e in entries {
            let conf = matches!(
                e.get_entry_type(),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2
            ) && !e.data.is_empty();
            if conf {
                self.apply_normal(std::mem::take(&mut run))?;
                self.drain_apply()?;
                self.apply_conf_change(&e)?;
            } else {
                run.push(e);
            }
        }
        self.apply_normal(run)
    }

    fn apply_normal(&mut self, run: Vec<Entry>) -> Result<(), CoreError> {
        if run.is_empty() {
            return Ok(());
        }
        // A few entries while the thread is idle (it has applied all it
        // was given, so the log order holds) cost less here than the
        // hand-over to it and back (see `super::apply`).
        let inline = run.len() <= super::apply::INLINE_MAX;
        if let Some(t) = self.apply_thread.as_ref().filter(|t| !(inline && t.idle())) {
            return if t.submit(run) {
                Ok(())
            } else {
                Err(CoreError::Raft("the apply thread has stopped".into()))
            };
        }
        self.applier.apply(&run).map(|_| ())
    }

    /// Waits until the apply thread (if any) has applied all it was given.
    fn drain_apply(&mut self) -> Result<(), CoreError> {
        match &self.apply_thread {
            Some(t) => t.drain(),
            None => Ok(()),
        }
    }

    /// A membership change: the member table, raft-rs's conf state (in the
    /// same store batch) and the transport's peer list.
    fn apply_conf_change(&mut self, e: &Entry) -> Result<(), CoreError> {
        let state = Arc::clone(&self.inner.state);
        let mut st = state.write().unwrap_or_else(|p| p.into_inner());
        if e.index <= st.applied_index {
            return Ok(());
        }
        let cc = if e.get_entry_type() == EntryType::EntryConfChangeV2 {
            ConfChangeV2::parse_from_bytes(&e.data)
                .map_err(|err| CoreError::Raft(err.to_string()))?
        } else {
            ConfChange::parse_from_bytes(&e.data)
                .map_err(|err| CoreError::Raft(err.to_string()))?
                .into_v2()
        };
        let ctx = ConfContext::decode(&cc.context);
        let mut w = st.begin(ctx.as_ref().map_or(0, |c| c.now_ms));
        for c in cc.get_changes() {
            let known = st.members.contains_key(&c.node_id);
            let change = match c.get_change_type() {
                ConfChangeType::AddNode if known => MemberChange::Promote(c.node_id),
                ConfChangeType::AddLearnerNode if known => MemberChange::Demote(c.node_id),
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let mut m = ctx
                        .as_ref()
                        .and_then(|x| x.member.clone())
                        .unwrap_or_default();
                    m.id = c.node_id;
                    m.is_learner = c.get_change_type() == ConfChangeType::AddLearnerNode;
                    MemberChange::Add(m)
                }
                ConfChangeType::RemoveNode => MemberChange::Remove(c.node_id),
            };
            if change == MemberChange::Remove(self.inner.cfg.member_id) {
                tracing::warn!("this member was removed from the cluster");
                self.inner.removed.store(true, Ordering::Release);
            }
            st.apply_member_change(&mut w, change);
        }
        st.note_config_change(&mut w, e.index);
        let cs = self
            .raw
            .apply_conf_change(&cc)
            .map_err(|err| CoreError::Raft(err.to_string()))?;
        crate::raft_log::put_conf_state(&mut w.batch, &cs)?;
        self.hand_over_if_demoted(&cs.voters);
        self.raw.mut_store().set_conf_state(cs);
        st.commit(w, e.index)?;
        self.inner.peers.set_members(&peer_list(&st));
        self.inner
            .applied
            .store(st.applied_index, Ordering::Release);
        let waiting = ctx
            .filter(|c| c.proposer == self.inner.cfg.member_id)
            .and_then(|c| self.pending_conf.remove(&c.request_id));
        if let Some(r) = waiting {
            let members = st.members.values().cloned().collect::<Vec<_>>();
            drop(st);
            let _ = r.send(Ok(members));
        }
        Ok(())
    }

    /// raft-rs keeps a leader that a conf change made a learner leading
    /// (`post_conf_change`): it hands leadership to the most caught-up
    /// voter instead, as ZooKeeper's leader steps down when it is no
    /// longer a participant.
    fn hand_over_if_demoted(&mut self, voters: &[u64]) {
        let me = self.inner.cfg.member_id;
        if self.raw.raft.state != raft::StateRole::Leader || voters.contains(&me) {
            return;
        }
        let best = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| voters.contains(id))
            .max_by_key(|(_, pr)| pr.matched)
            .map(|(id, _)| *id);
        if let Some(to) = best {
            self.raw.transfer_leader(to);
        }
    }

    fn propose_internal(&mut self, command: Command) {
        let p = self.inner.proposal(command);
        if let Ok(data) = postcard::to_stdvec(&p) {
            self.handle(Msg::Propose {
                id: p.request_id,
                data,
                reply: None,
            });
        }
    }

    /// Every member: publish its client URLs once, and forget proposals
    /// nobody can answer any more. Leader only: revoke expired leases (D9)
    /// and reap empty containers and idle TTL nodes, by proposing commands
    /// like any client would.
    fn housekeeping(&mut self) {
        let horizon = self.inner.cfg.request_timeout + Duration::from_secs(1);
        let clock = self.inner.clock.clone();
        self.pending_lock()
            .retain(|_, (_, t)| clock.elapsed(*t) < horizon);
        let me = self.inner.cfg.member_id;
        if !self.published && self.raw.raft.leader_id != 0 {
            let current = self.state().members.get(&me).cloned();
            match current {
                Some(m)
                    if m.client_urls == self.inner.cfg.client_urls
                        && m.name == self.inner.cfg.name =>
                {
                    self.published = true;
                }
                Some(_) => self.propose_internal(Command::MemberUpdate {
                    id: me,
                    name: Some(self.inner.cfg.name.clone()),
                    client_urls: Some(self.inner.cfg.client_urls.clone()),
                    peer_urls: None,
                }),
                None => {}
            }
        }
        if let Some(zk) = self.inner.cfg.zk_server.clone() {
            if !self.zk_published && self.raw.raft.leader_id != 0 {
                let st = self.state();
                let known = st.zk_servers.get(&me) == Some(&zk);
                let member = st.members.contains_key(&me);
                drop(st);
                if known {
                    self.zk_published = true;
                } else if member {
                    self.propose_internal(Command::ZkServer { id: me, server: zk });
                }
            }
        }
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        let now = self.inner.clock.now();
        let expired: Vec<i64> = match self.inner.deadlines.lock() {
            Ok(d) => {
                // A revoke that applied ended its deadline.
                self.revoking.retain(|id, _| d.contains_key(id));
                d.iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(id, _)| *id)
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        // In id order, not the map's: the revokes' log order is then a
        // function of the deadlines alone (the simulation replays by seed).
        let mut expired = expired;
        expired.sort_unstable();
        for id in expired {
            let again = self
                .revoking
                .get(&id)
                .is_none_or(|t| now.saturating_duration_since(*t) > Duration::from_secs(3));
            if again {
                tracing::debug!(lease = id, "lease expired, revoking");
                self.revoking.insert(id, now);
                self.propose_internal(Command::LeaseRevoke { id });
            }
        }
        if now.saturating_duration_since(self.last_reap) >= self.inner.cfg.reap_interval {
            self.last_reap = now;
            let t = self.inner.clock.now_ms();
            let reap: Vec<String> = {
                let st = self.state();
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
