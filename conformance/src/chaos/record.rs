//! What a fault run records: register operations of both protocols, lock
//! holds, ephemeral owners and observations, each member's applied history
//! of the registers, and what etcd watchers received. All times come from
//! one monotonic [`Clock`] shared by every client.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::linearizability::{History, Operation, RegisterInput, RegisterOutput};

pub fn reg_key(r: usize) -> String {
    format!("/lin/r{r}")
}

pub fn parse_value(b: &[u8]) -> u64 {
    // Anything that is not one of our decimal values becomes a value no one
    // wrote, which the checks reject.
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// One monotonic clock for every client: nanoseconds since the run began.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    pub fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

pub fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Etcd,
    Zk,
}

/// One register operation as recorded.
#[derive(Clone, Debug)]
pub struct RegOp {
    pub register: usize,
    pub client: u64,
    pub proto: Proto,
    pub input: RegisterInput,
    /// `None`: never completed (outcome unknown).
    pub output: Option<RegisterOutput>,
    pub invoked: u64,
    pub completed: Option<u64>,
    /// For an acknowledged write, the revision it was applied at; for a
    /// read, the mod revision of the value it saw.
    pub revision: Option<i64>,
}

impl RegOp {
    pub fn written_value(&self) -> Option<u64> {
        match self.input {
            RegisterInput::Write(v) | RegisterInput::CompareAndSet { value: v, .. } => Some(v),
            RegisterInput::Read => None,
        }
    }
    /// Acknowledged as applied, with the version reported (if any).
    pub fn acked(&self) -> Option<Option<i64>> {
        match self.output {
            Some(RegisterOutput::Written { version }) => Some(version),
            Some(RegisterOutput::Cas { ok: true, version }) => Some(version),
            _ => None,
        }
    }
}

/// A lock hold interval.
#[derive(Clone, Debug)]
pub struct Hold {
    pub contender: u64,
    pub start: u64,
    pub end: u64,
    /// The hold ended because the session was not connected.
    pub lost: bool,
}

/// A session's ephemeral node.
#[derive(Clone, Debug)]
pub struct EphOwner {
    pub path: String,
    /// Completion of the create.
    pub created: u64,
    /// The session was certainly alive (not expirable) until this time.
    pub alive_until: u64,
    /// The client went away without closing the session: the node must go.
    pub abandoned: bool,
}

/// One etcd lease of a lease worker and the key bound to it.
#[derive(Clone, Debug)]
pub struct LeaseLife {
    pub client: u64,
    pub lease: i64,
    pub key: String,
    pub ttl: Duration,
    /// Completion of the put that bound the key (`None`: outcome unknown).
    pub bound: Option<u64>,
    /// Invocation of the grant or of the last keepalive answered with a
    /// positive TTL: the leader's deadline is at least this plus the TTL.
    pub renewed: u64,
    /// Completion of a keepalive that answered "no such lease" (TTL 0).
    pub reported_gone: Option<u64>,
    pub end: LeaseEnd,
}

/// How a lease of the workload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Kept alive until the workload stopped.
    Kept,
    /// Revoked: the revoke's invocation and completion.
    Revoked { invoked: u64, completed: u64 },
    /// Keepalives stopped (or a revoke's outcome is unknown): the lease
    /// must expire.
    Abandoned,
}

impl LeaseLife {
    /// Until when the key must be present.
    pub fn alive_until(&self, allowance: u64) -> u64 {
        let expiry = (self.renewed + nanos(self.ttl)).saturating_sub(allowance);
        match self.end {
            LeaseEnd::Revoked { invoked, .. } => expiry.min(invoked),
            _ => expiry,
        }
    }
}

/// A ZooKeeper multi (check the version of register `a`, set `a`, set
/// `b`): both of its writes are applied at one revision or neither is.
#[derive(Clone, Debug)]
pub struct MultiOp {
    pub client: u64,
    pub a: (usize, u64),
    pub b: (usize, u64),
    /// `Some(true)`: committed; `Some(false)`: the check failed; `None`:
    /// unknown.
    pub ok: Option<bool>,
}

/// One ZooKeeper watch-then-read round (same session): a getData that set a
/// watch at `version`, then plain getData reads until one shows a newer
/// version or the watch fires.
#[derive(Clone, Debug)]
pub struct WatchOrder {
    pub client: u64,
    pub register: usize,
    pub version: i64,
    /// The newer version a read returned before the event was seen
    /// (`None`: the event was seen first).
    pub read_version: Option<i64>,
    /// The watch event had been delivered when that read returned.
    pub event_before_read: bool,
    /// A read issued after the event was delivered, and the version it saw
    /// (it must be newer than `version`).
    pub read_after_event: Option<i64>,
    pub at: u64,
}

/// A linearizable etcd read of every ephemeral under `/lin-eph/`.
#[derive(Clone, Debug)]
pub struct EphObs {
    pub invoked: u64,
    pub completed: u64,
    pub present: BTreeSet<String>,
}

/// One applied change of a register in a member's MVCC history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub revision: i64,
    pub version: i64,
    /// `None`: a delete.
    pub value: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// Per register: (value, version) before the run.
    pub initial: Vec<(u64, i64)>,
    pub ops: Vec<RegOp>,
    pub holds: Vec<Hold>,
    pub owners: Vec<EphOwner>,
    pub observations: Vec<EphObs>,
    /// Per member: its name and, per register, its applied changes.
    pub applied: Vec<(String, Vec<Vec<Applied>>)>,
    /// Problems seen directly while running (unexpected session expiry,
    /// an ephemeral missing at the end).
    pub problems: Vec<String>,
    pub faults: Vec<String>,
    /// What each etcd watcher of the registers received, in order.
    pub watches: Vec<WatchLog>,
    /// etcd leases of the lease workers, and linearizable reads of every
    /// key under `/lease/`.
    pub leases: Vec<LeaseLife>,
    pub lease_observations: Vec<EphObs>,
    /// Holds of the etcd lock (lowest create revision under `/elock/`).
    pub etcd_holds: Vec<Hold>,
    pub multis: Vec<MultiOp>,
    pub watch_orders: Vec<WatchOrder>,
    /// Lease-clock jumps of the leader: (when, by how much). A lease or
    /// session may end that much earlier than its TTL says (the "leader
    /// paused" case of janus's clock-jump hook).
    pub leader_clock_jumps: Vec<(u64, Duration)>,
}

impl Recorded {
    /// How much earlier than its TTL a lease renewed at `from` may end by
    /// `until`: the leader's lease-clock jumps in between (from one second
    /// before, as a member applies a jump up to 100 ms after it is made).
    pub fn jump_allowance(&self, from: u64, until: u64) -> u64 {
        let from = from.saturating_sub(nanos(Duration::from_secs(1)));
        self.leader_clock_jumps
            .iter()
            .filter(|(at, _)| *at >= from && *at <= until)
            .map(|(_, d)| nanos(*d))
            .sum()
    }

    /// Every value some member applied to some register.
    pub fn applied_values(&self) -> HashSet<u64> {
        self.applied
            .iter()
            .flat_map(|(_, regs)| regs.iter().flatten())
            .filter_map(|e| e.value)
            .collect()
    }

    /// Whether an operation goes into the checked history. A write whose
    /// outcome is unknown and whose value no member ever applied is left
    /// out, i.e. taken as never having taken effect. That is one of the
    /// outcomes the model allows an unknown write, so a linearization found
    /// without it is a linearization of the full history (no false
    /// acceptance); and without this, every unknown write stays pending to
    /// the end of the history and the search grows as 2^(unknown writes).
    /// If a member applied it but its MVCC history hid it, the reads that
    /// saw its value or version cannot be placed and the check fails.
    pub fn checked(&self, op: &RegOp, applied: &HashSet<u64>) -> bool {
        op.output.is_some() || op.written_value().is_some_and(|v| applied.contains(&v))
    }

    pub fn history(&self) -> History {
        let applied = self.applied_values();
        let mut h = History::new();
        for (r, (v, ver)) in self.initial.iter().enumerate() {
            h.initial(&reg_key(r), Some(*v), *ver);
        }
        for op in self.ops.iter().filter(|o| self.checked(o, &applied)) {
            h.push(
                &reg_key(op.register),
                Operation {
                    client: op.client,
                    input: op.input.clone(),
                    output: op.output.clone(),
                    invoked: op.invoked,
                    completed: op.completed,
                },
            );
        }
        h
    }

    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (r, (v, ver)) in self.initial.iter().enumerate() {
            let _ = writeln!(s, "initial {} value {v} version {ver}", reg_key(r));
        }
        let mut ops: Vec<&RegOp> = self.ops.iter().collect();
        ops.sort_by_key(|o| o.invoked);
        for o in ops {
            let _ = writeln!(s, "{}", fmt_op(o));
        }
        for h in &self.holds {
            let _ = writeln!(s, "{h:?}");
        }
        for o in &self.owners {
            let _ = writeln!(s, "{o:?}");
        }
        for (m, regs) in &self.applied {
            for (r, evs) in regs.iter().enumerate() {
                let _ = writeln!(s, "member {m} {}: {evs:?}", reg_key(r));
            }
        }
        for f in &self.faults {
            let _ = writeln!(s, "fault {f}");
        }
        s
    }
}

pub fn fmt_op(o: &RegOp) -> String {
    format!(
        "{} client {} {:?} {:?} -> {:?} rev {:?} [{:.3}s, {}]",
        reg_key(o.register),
        o.client,
        o.proto,
        o.input,
        o.output,
        o.revision,
        o.invoked as f64 / 1e9,
        o.completed
            .map_or("never".to_string(), |c| format!("{:.3}s", c as f64 / 1e9))
    )
}

/// What one etcd watcher of every register (`/lin/r` prefix, from revision
/// 1) received, in arrival order, across every resumption.
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    pub client: u64,
    /// (revision, register, version, value; `None` for a delete).
    pub events: Vec<(i64, usize, i64, Option<u64>)>,
    /// How often the watch was resumed (after an error or a deliberate
    /// cancel) from the revision after the last event it had.
    pub resumes: usize,
}

/// The register a key names, if it is one of `registers`.
pub fn register_of(key: &[u8], registers: usize) -> Option<usize> {
    let s = std::str::from_utf8(key).ok()?;
    let r: usize = s.strip_prefix("/lin/r")?.parse().ok()?;
    (r < registers && reg_key(r) == s).then_some(r)
}
