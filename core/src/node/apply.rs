//! Applying committed entries to the state machine (D10): one store batch
//! per group of entries, the replies to proposers waiting on this member,
//! and the lease deadlines the leader acts on.
//!
//! Once a member serves, this runs on its own thread ("apply"), so the
//! raft loop appends, syncs and replicates the next entries while a group
//! is written (etcd's apply loop does the same). Groups take everything
//! queued (up to [`MAX_GROUP`] entries), so under load one store commit
//! covers the entries of several Readies. A Ready of at most
//! [`INLINE_MAX`] entries while the thread is idle (nothing handed over is
//! still unapplied) is applied by the raft loop itself: at low load the
//! hand-over to another thread and back costs more than the apply (one
//! client's etcd put: p50 0.30 ms inline, 0.33 ms through the thread). The
//! raft loop also applies inline during start-up catch-up (nothing is
//! served yet) and in the simulation (one thread, deterministic order).
//!
//! Conf changes are not applied here: raft-rs applies them to its node on
//! the raft loop, which first waits until this thread has applied
//! everything it was given ([`ApplyThread::drain`]), as it does before
//! installing a snapshot. Durability does not depend on this thread: the
//! store's batches are not synced per group; the WAL holds every entry a
//! restart must replay, and replay is idempotent (applied index and
//! per-proposer windows are written in the same batch as the effects).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::prelude::Entry;

use super::{Inner, Reply};
use crate::command::{Applied, Command, CommandResult, Proposal};
use crate::state::State;
use crate::CoreError;

/// Most entries of a Ready the raft loop applies itself when the apply
/// thread is idle.
pub(super) const INLINE_MAX: usize = 4;

/// Most entries the apply thread takes from its queue at once.
const MAX_GROUP: usize = 4096;

/// Longest a group holds the state's write lock: readers (ZooKeeper and
/// serializable reads, watch catch-up) wait for it, so a long queue is
/// applied as several groups with the lock released in between.
const GROUP_TIME: Duration = Duration::from_millis(1);

/// Proposals of this member waiting for their entry to be applied, by
/// request id, with when they were proposed: filled by the raft loop,
/// answered by whoever applies.
pub(super) type Pending = Arc<Mutex<HashMap<u64, (Reply<Applied>, Instant)>>>;

/// Applies groups of normal (non-conf-change) entries.
pub(super) struct Applier {
    inner: Arc<Inner>,
    pending: Pending,
    /// Named in the error for an entry that does not decode.
    wal_dir: PathBuf,
}

impl Applier {
    pub(super) fn new(inner: Arc<Inner>, pending: Pending, wal_dir: PathBuf) -> Applier {
        Applier {
            inner,
            pending,
            wal_dir,
        }
    }

    /// Applies `entries` (normal entries, in log order; already applied
    /// ones are skipped) in groups of at most [`GROUP_TIME`], and answers
    /// their proposers after each. Returns the applied index after them.
    pub(super) fn apply(&self, entries: &[Entry]) -> Result<u64, CoreError> {
        let mut rest = entries;
        let mut applied = self.inner.applied.load(Ordering::Acquire);
        while !rest.is_empty() {
            let (done, index) = self.apply_group(rest)?;
            rest = rest.get(done..).unwrap_or_default();
            applied = index;
        }
        Ok(applied)
    }

    /// Applies a prefix of `entries` as one store commit under one write
    /// lock, so no reader sees half a group. Returns how many entries it
    /// took and the applied index after them.
    fn apply_group(&self, entries: &[Entry]) -> Result<(usize, u64), CoreError> {
        let me = self.inner.cfg.member_id;
        let epoch = self.inner.epoch;
        let mut answered = Vec::new();
        let mut taken = 0;
        let applied = {
            let mut st = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
            // The member's clock: virtual in the simulation, where a
            // group is then never cut short.
            let started = self.inner.clock.now();
            st.begin_group();
            for e in entries {
                if taken > 0 && self.inner.clock.elapsed(started) >= GROUP_TIME {
                    break;
                }
                taken += 1;
                if e.index <= st.applied_index {
                    continue;
                }
                if e.data.is_empty() {
                    st.apply_empty(e.index)?;
                    continue;
                }
                let p: Proposal =
                    postcard::from_bytes(&e.data).map_err(|err| CoreError::Corrupt {
                        path: self.wal_dir.clone(),
                        what: format!("entry {}: {err}", e.index),
                    })?;
                let Some(applied) = st.apply(&p, e.index)? else {
                    continue;
                };
                self.track_leases(&p.command, &applied.result, &st);
                // An entry of an earlier boot of this member carries
                // another epoch: its request id may equal a new one's.
                if p.proposer == me && p.epoch == epoch {
                    answered.push((p.request_id, applied));
                }
            }
            let commit = Instant::now();
            st.end_group()?;
            crate::metrics::observe(&crate::metrics::BACKEND_COMMIT, commit.elapsed());
            st.applied_index
        };
        self.inner.applied.store(applied, Ordering::Release);
        if !answered.is_empty() {
            let replies: Vec<_> = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                answered
                    .into_iter()
                    .filter_map(|(id, a)| pending.remove(&id).map(|(r, _)| (r, a)))
                    .collect()
            };
            for (r, a) in replies {
                let _ = r.send(Ok(a));
            }
        }
        Ok((taken, applied))
    }

    /// Every member keeps lease deadlines (D9): a grant starts one, a
    /// revoke ends it.
    fn track_leases(&self, cmd: &Command, result: &CommandResult, st: &State) {
        let Ok(mut d) = self.inner.deadlines.lock() else {
            return;
        };
        match (cmd, result) {
            (Command::LeaseGrant { id, ttl_ms }, CommandResult::LeaseGrant(Ok(_))) => {
                d.insert(
                    *id,
                    self.inner.clock.now() + Duration::from_millis(*ttl_ms as u64),
                );
            }
            (Command::LeaseRevoke { id }, _) if !st.leases.contains_key(id) => {
                d.remove(id);
            }
            _ => {}
        }
    }
}

enum Work {
    Entries(Vec<Entry>),
    /// Answered once everything given before it is applied.
    Drain(std_mpsc::Sender<()>),
}

/// What the apply thread reports after each group: the applied index, or
/// why it stopped (the member must stop).
pub(super) type Report = Result<u64, String>;

/// Handle of the apply thread.
pub(super) struct ApplyThread {
    tx: Option<std_mpsc::Sender<Work>>,
    /// Hand-overs of entries not yet applied.
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ApplyThread {
    /// Starts the thread; `report` is called from it after each group.
    pub(super) fn start(
        applier: Arc<Applier>,
        report: impl Fn(Report) + Send + 'static,
    ) -> std::io::Result<ApplyThread> {
        let (tx, rx) = std_mpsc::channel::<Work>();
        let queued = Arc::new(AtomicUsize::new(0));
        let left = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || {
                let mut drains = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut group = Vec::new();
                    let mut handovers = 0;
                    let mut next = Some(first);
                    while let Some(w) = next.take() {
                        match w {
                            Work::Entries(mut es) => {
                                group.append(&mut es);
                                handovers += 1;
                            }
                            Work::Drain(d) => drains.push(d),
                        }
                        if group.len() < MAX_GROUP && drains.is_empty() {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !group.is_empty() {
                        let r = applier.apply(&group);
                        left.fetch_sub(handovers, Ordering::AcqRel);
                        match r {
                            Ok(applied) => report(Ok(applied)),
                            Err(e) => {
                                report(Err(e.to_string()));
                                return;
                            }
                        }
                    }
                    for d in drains.drain(..) {
                        let _ = d.send(());
                    }
                }
            })?;
        Ok(ApplyThread {
            tx: Some(tx),
            queued,
            thread: Some(thread),
        })
    }

    /// Hands entries over; false if the thread has stopped.
    pub(super) fn submit(&self, entries: Vec<Entry>) -> bool {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send(Work::Entries(entries)).is_ok())
    }

    /// Whether everything handed over is applied (only the raft loop hands
    /// over, so an idle thread stays idle until it does again).
    pub(super) fn idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// Waits until everything handed over is applied.
    pub(super) fn drain(&self) -> Result<(), CoreError> {
        let (dtx, drx) = std_mpsc::channel();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Work::Drain(dtx)).is_ok());
        if sent && drx.recv().is_ok() {
            Ok(())
        } else {
            Err(CoreError::Raft("the apply thread has stopped".into()))
        }
    }

    /// Applies what was handed over, then ends the thread.
    pub(super) fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApplyThread {
    fn drop(&mut self) {
        self.stop();
    }
}
