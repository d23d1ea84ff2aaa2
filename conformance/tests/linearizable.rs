//! Fault-checked linearizability: a 3-member janus cluster
//! on loopback, concurrent etcd and ZooKeeper clients doing reads, writes and
//! compare-and-set on a few registers while members are killed (-9) and
//! restarted and stopped (SIGSTOP) and continued, then checked:
//!
//! 1. The register history is linearizable (`linearizability::History`, a
//!    porcupine-style search, partitioned per register).
//! 2. No acknowledged write is lost, and nothing else was applied: every
//!    member's MVCC history of each register (an etcd watch from revision 1)
//!    has consecutive versions; each value in it was written by exactly one
//!    invoked operation and appears once; every acknowledged write is in it
//!    at the revision and version its client was told; no failed
//!    compare-and-set is in it; every member's history is the same.
//! 3. No two ZooKeeper lock holders at once: three contenders run the
//!    ephemeral-sequential lock recipe and record hold intervals, which must
//!    not overlap. A holder whose session is not `SyncConnected` (it may have
//!    lost its session: the server could expire it) stops being a holder at
//!    the moment it notices, as Curator treats SUSPENDED; that ephemerals are
//!    not deleted while their session is alive is checked separately (4), so
//!    this leaves no gap.
//! 4. Ephemerals vanish only after session expiry: sessions that stay alive
//!    keep their ephemeral in every observation (linearizable etcd reads
//!    polled during the run) and at the end; sessions that are abandoned
//!    (client gone without closeSession) keep it in every observation that
//!    completed before last contact + session timeout, lose it afterwards,
//!    and never get it back. No session may expire during the run: every
//!    fault is shorter than the session timeout (D9).
//!
//! Choices:
//! - A register's value is a decimal u64, unique per write; its version is
//!   the etcd version (ZooKeeper version + 1, D3); the registers `/lin/r0..4`
//!   are created by ZooKeeper with value 0 (version 1) before the run.
//! - ZooKeeper reads are only sequentially consistent, so a ZooKeeper read
//!   is recorded only as `sync` followed by `getData` on the same session,
//!   with the interval from the sync's invocation to the getData's
//!   completion. janus's sync waits for a ReadIndex (D8), and a member never
//!   answers a session with a zxid below one it has seen, so the pair must
//!   be linearizable even across a reconnect between the two.
//! - Any error other than a definite "compare failed" (etcd txn not
//!   succeeded, ZooKeeper BadVersion) leaves the outcome unknown: the
//!   operation is recorded as never completed.
//!   An unknown write whose value no member's MVCC history contains is
//!   left out of the checked history (taken as never applied, which the
//!   model allows); see `Recorded::checked` for why that is sound and why
//!   the search needs it.
//! - All times come from one monotonic clock shared by every client.
//!
//! The seed (operation mix) is printed; rerun with `JANUS_LIN_SEED=<seed>`.
//! On failure the whole history is written next to the test binaries
//! (`CARGO_TARGET_TMPDIR`) and its path printed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use janus_conformance::cluster::Cluster;
use janus_conformance::linearizability::{History, Operation, RegisterInput, RegisterOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zookeeper_client as zk;

const REGISTERS: usize = 5;
const ETCD_CLIENTS: u64 = 3;
const ZK_CLIENTS: u64 = 3;
const LOCK_CONTENDERS: u64 = 3;
/// Requested ZooKeeper session timeout (the cluster's maximum at
/// `--zk-tick-ms 500`); every fault below is shorter.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-operation timeout; past it the outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(8);
/// Search budget per register.
const CHECK_BUDGET: Duration = Duration::from_secs(30);

fn reg_key(r: usize) -> String {
    format!("/lin/r{r}")
}

fn parse_value(b: &[u8]) -> u64 {
    // Anything that is not one of our decimal values becomes a value no one
    // wrote, which the checks reject.
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// One monotonic clock for every client: nanoseconds since the run began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Etcd,
    Zk,
}

/// One register operation as recorded.
#[derive(Clone, Debug)]
struct RegOp {
    register: usize,
    client: u64,
    proto: Proto,
    input: RegisterInput,
    /// `None`: never completed (outcome unknown).
    output: Option<RegisterOutput>,
    invoked: u64,
    completed: Option<u64>,
    /// For an acknowledged write, the revision it was applied at; for a
    /// read, the mod revision of the value it saw.
    revision: Option<i64>,
}

impl RegOp {
    fn written_value(&self) -> Option<u64> {
        match self.input {
            RegisterInput::Write(v) | RegisterInput::CompareAndSet { value: v, .. } => Some(v),
            RegisterInput::Read => None,
        }
    }
    /// Acknowledged as applied, with the version reported (if any).
    fn acked(&self) -> Option<Option<i64>> {
        match self.output {
            Some(RegisterOutput::Written { version }) => Some(version),
            Some(RegisterOutput::Cas { ok: true, version }) => Some(version),
            _ => None,
        }
    }
}

/// A lock hold interval.
#[derive(Clone, Debug)]
struct Hold {
    contender: u64,
    start: u64,
    end: u64,
    /// The hold ended because the session was not connected.
    lost: bool,
}

/// A session's ephemeral node.
#[derive(Clone, Debug)]
struct EphOwner {
    path: String,
    /// Completion of the create.
    created: u64,
    /// The session was certainly alive (not expirable) until this time.
    alive_until: u64,
    /// The client went away without closing the session: the node must go.
    abandoned: bool,
}

/// A linearizable etcd read of every ephemeral under `/lin-eph/`.
#[derive(Clone, Debug)]
struct EphObs {
    invoked: u64,
    completed: u64,
    present: BTreeSet<String>,
}

/// One applied change of a register in a member's MVCC history.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    revision: i64,
    version: i64,
    /// `None`: a delete.
    value: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct Recorded {
    /// Per register: (value, version) before the run.
    initial: Vec<(u64, i64)>,
    ops: Vec<RegOp>,
    holds: Vec<Hold>,
    owners: Vec<EphOwner>,
    observations: Vec<EphObs>,
    /// Per member: its name and, per register, its applied changes.
    applied: Vec<(String, Vec<Vec<Applied>>)>,
    /// Problems seen directly while running (unexpected session expiry,
    /// an ephemeral missing at the end).
    problems: Vec<String>,
    faults: Vec<String>,
}

impl Recorded {
    /// Every value some member applied to some register.
    fn applied_values(&self) -> HashSet<u64> {
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
    fn checked(&self, op: &RegOp, applied: &HashSet<u64>) -> bool {
        op.output.is_some() || op.written_value().is_some_and(|v| applied.contains(&v))
    }

    fn history(&self) -> History {
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

    fn dump(&self) -> String {
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

fn fmt_op(o: &RegOp) -> String {
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

/// Runs every check on a recording. `Ok` carries a one-line summary.
fn check_run(rec: &Recorded) -> Result<String, Vec<String>> {
    let mut errors: Vec<String> = rec.problems.clone();

    // 1. Linearizability.
    let report = rec.history().check(CHECK_BUDGET);
    if !report.is_linearizable() {
        let mut msg = format!("not linearizable: {report}");
        // A history excerpt around the first operation no order could place.
        for v in &report.violations {
            let Some(first) = v.stuck.first() else {
                continue;
            };
            let reg = rec
                .initial
                .iter()
                .enumerate()
                .position(|(r, _)| reg_key(r) == v.register);
            let mut near: Vec<&RegOp> = rec
                .ops
                .iter()
                .filter(|o| Some(o.register) == reg)
                .filter(|o| {
                    let second = nanos(Duration::from_secs(1));
                    let lo = first.invoked.saturating_sub(second);
                    let hi = first
                        .completed
                        .unwrap_or(first.invoked)
                        .saturating_add(second);
                    o.invoked <= hi && o.completed.unwrap_or(u64::MAX) >= lo
                })
                .collect();
            near.sort_by_key(|o| o.invoked);
            let _ = write!(
                msg,
                "\n  excerpt of {} around the stuck operation:",
                v.register
            );
            for o in near.iter().take(40) {
                let _ = write!(msg, "\n    {}", fmt_op(o));
            }
        }
        errors.push(msg);
    }

    // 2. Applied writes: nothing acknowledged lost, nothing extra applied.
    let mut writer_of: HashMap<u64, &RegOp> = HashMap::new();
    for op in &rec.ops {
        if let Some(v) = op.written_value() {
            if writer_of.insert(v, op).is_some() {
                errors.push(format!("test bug: value {v} written twice"));
            }
        }
    }
    let mut applied_writes = 0;
    if rec.applied.is_empty() {
        errors.push("no member history was collected".into());
    }
    for (member, regs) in &rec.applied {
        for (r, events) in regs.iter().enumerate() {
            let (init_value, init_version) = rec.initial[r];
            let key = reg_key(r);
            match events.first() {
                Some(e) if e.value == Some(init_value) && e.version == init_version => {}
                other => errors.push(format!(
                    "member {member} {key}: history starts with {other:?}, not the initial value"
                )),
            }
            let mut seen: HashMap<u64, &Applied> = HashMap::new();
            for w in events.windows(2) {
                if w[1].version != w[0].version + 1 || w[1].revision <= w[0].revision {
                    errors.push(format!(
                        "member {member} {key}: {:?} follows {:?} (lost or reordered write)",
                        w[1], w[0]
                    ));
                }
            }
            for e in events.iter().skip(1) {
                let Some(v) = e.value else {
                    errors.push(format!("member {member} {key}: deleted at {e:?}"));
                    continue;
                };
                if seen.insert(v, e).is_some() {
                    errors.push(format!("member {member} {key}: value {v} applied twice"));
                }
                match writer_of.get(&v) {
                    None => errors.push(format!(
                        "member {member} {key}: {e:?} was never written by any client"
                    )),
                    Some(op) if op.register != r => errors.push(format!(
                        "member {member} {key}: {e:?} was written to {}",
                        reg_key(op.register)
                    )),
                    Some(op) => {
                        if matches!(op.output, Some(RegisterOutput::Cas { ok: false, .. })) {
                            errors.push(format!(
                                "member {member} {key}: failed compare-and-set applied: {} at {e:?}",
                                fmt_op(op)
                            ));
                        }
                        if op.acked().is_some() && op.revision.is_some_and(|rev| rev != e.revision)
                        {
                            errors.push(format!(
                                "member {member} {key}: {} acknowledged at another revision than {e:?}",
                                fmt_op(op)
                            ));
                        }
                        if let Some(Some(ver)) = op.acked() {
                            if ver != e.version {
                                errors.push(format!(
                                    "member {member} {key}: {} acknowledged with another version than {e:?}",
                                    fmt_op(op)
                                ));
                            }
                        }
                    }
                }
            }
            applied_writes += events.len().saturating_sub(1);
            for op in rec.ops.iter().filter(|o| o.register == r) {
                if op.acked().is_some() {
                    let v = op.written_value().expect("write");
                    if !seen.contains_key(&v) {
                        errors.push(format!(
                            "member {member} {key}: acknowledged write lost: {}",
                            fmt_op(op)
                        ));
                    }
                }
                if let (Some(RegisterOutput::Read { value: Some(v), .. }), Some(rev)) =
                    (&op.output, op.revision)
                {
                    let at = if *v == init_value {
                        events.first().map(|e| e.revision)
                    } else {
                        seen.get(v).map(|e| e.revision)
                    };
                    if at != Some(rev) {
                        errors.push(format!(
                            "member {member} {key}: read saw value {v} at revision {rev}, applied at {at:?}: {}",
                            fmt_op(op)
                        ));
                    }
                }
            }
        }
    }
    if let Some((first, regs)) = rec.applied.first() {
        for (member, other) in &rec.applied[1..] {
            if other != regs {
                errors.push(format!(
                    "members {first} and {member} applied different register histories"
                ));
            }
        }
    }

    // 3. Mutual exclusion.
    for (i, a) in rec.holds.iter().enumerate() {
        for b in &rec.holds[i + 1..] {
            if a.contender != b.contender && a.start < b.end && b.start < a.end {
                errors.push(format!(
                    "two ZooKeeper lock holders at once: {a:?} and {b:?}"
                ));
            }
        }
    }

    // 4. Ephemerals vanish only after session expiry.
    for o in &rec.owners {
        let mut gone_at: Option<&EphObs> = None;
        let mut obs: Vec<&EphObs> = rec.observations.iter().collect();
        obs.sort_by_key(|x| x.invoked);
        for x in obs {
            let present = x.present.contains(&o.path);
            if x.invoked >= o.created && x.completed <= o.alive_until && !present {
                errors.push(format!(
                    "ephemeral {} missing at {:.3}s..{:.3}s while its session was alive (until {:.3}s)",
                    o.path,
                    x.invoked as f64 / 1e9,
                    x.completed as f64 / 1e9,
                    o.alive_until as f64 / 1e9
                ));
            }
            if x.invoked >= o.created && !present && gone_at.is_none() {
                gone_at = Some(x);
            }
            if let Some(g) = gone_at {
                if present && x.invoked > g.completed {
                    errors.push(format!(
                        "ephemeral {} came back at {:.3}s after it was gone at {:.3}s",
                        o.path,
                        x.invoked as f64 / 1e9,
                        g.completed as f64 / 1e9
                    ));
                }
            }
        }
        if o.abandoned && gone_at.is_none() {
            errors.push(format!(
                "ephemeral {} of an abandoned session never vanished",
                o.path
            ));
        }
    }

    if errors.is_empty() {
        // When each abandoned session's ephemeral was first seen gone,
        // counted from the earliest moment its expiry was allowed.
        let expiries: Vec<String> = rec
            .owners
            .iter()
            .filter(|o| o.abandoned)
            .filter_map(|o| {
                let gone = rec
                    .observations
                    .iter()
                    .filter(|x| x.invoked >= o.created && !x.present.contains(&o.path))
                    .map(|x| x.completed)
                    .min()?;
                Some(format!(
                    "{} gone {:+.2}s after its expiry was allowed",
                    o.path,
                    (gone as f64 - o.alive_until as f64) / 1e9
                ))
            })
            .collect();
        let completed = rec.ops.iter().filter(|o| o.completed.is_some()).count();
        let unknown = rec.ops.len() - completed;
        let applied = rec.applied_values();
        let unapplied = rec
            .ops
            .iter()
            .filter(|o| o.written_value().is_some() && !rec.checked(o, &applied))
            .count();
        let count = |p: Proto| {
            rec.ops
                .iter()
                .filter(|o| o.proto == p && o.completed.is_some())
                .count()
        };
        let cas = |ok: bool| {
            rec.ops
                .iter()
                .filter(|o| matches!(o.output, Some(RegisterOutput::Cas { ok: k, .. }) if k == ok))
                .count()
        };
        Ok(format!(
            "{} register operations checked ({completed} completed: {} etcd, {} ZooKeeper; \
             {unknown} with unknown outcome, of which {unapplied} writes no member applied; \
             compare-and-set {} won, {} lost), \
             {applied_writes} applied writes across {} members, {} lock holds \
             ({} ended by a lost connection), {} ephemerals over {} observations ({})",
            rec.ops.len(),
            count(Proto::Etcd),
            count(Proto::Zk),
            cas(true),
            cas(false),
            rec.applied.len(),
            rec.holds.len(),
            rec.holds.iter().filter(|h| h.lost).count(),
            rec.owners.len(),
            rec.observations.len(),
            expiries.join(", ")
        ))
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------
// Deliberate corruptions: each must be rejected by `check_run`.

/// A completed read made to return the value of a write that was invoked
/// only after the read completed.
fn corrupt_read_from_future(rec: &Recorded) -> Option<Recorded> {
    let mut reads: Vec<usize> = (0..rec.ops.len())
        .filter(|&i| rec.ops[i].input == RegisterInput::Read && rec.ops[i].completed.is_some())
        .collect();
    reads.sort_by_key(|&i| rec.ops[i].invoked);
    for i in reads {
        let r = &rec.ops[i];
        let end = r.completed.expect("completed");
        let later = rec
            .ops
            .iter()
            .filter(|w| w.register == r.register && w.acked().is_some() && w.invoked > end)
            .min_by_key(|w| w.invoked);
        if let Some(w) = later {
            let mut c = rec.clone();
            c.ops[i].output = Some(RegisterOutput::Read {
                value: w.written_value(),
                version: w.acked().flatten(),
            });
            c.ops[i].revision = w.revision;
            return Some(c);
        }
    }
    None
}

/// An acknowledged write removed from one member's applied history.
fn corrupt_lose_write(rec: &Recorded) -> Option<Recorded> {
    let op = rec.ops.iter().find(|o| o.acked().is_some())?;
    let v = op.written_value()?;
    let mut c = rec.clone();
    let events = &mut c.applied.first_mut()?.1[op.register];
    let at = events.iter().position(|e| e.value == Some(v))?;
    events.remove(at);
    Some(c)
}

/// A second contender made to hold the lock during another's hold.
fn corrupt_overlap_holds(rec: &Recorded) -> Option<Recorded> {
    let a = rec.holds.iter().find(|h| h.end > h.start)?.clone();
    let j = rec.holds.iter().position(|h| h.contender != a.contender)?;
    let mut c = rec.clone();
    c.holds[j].start = a.start;
    c.holds[j].end = a.end;
    Some(c)
}

/// A live session's ephemeral removed from one observation.
fn corrupt_ephemeral(rec: &Recorded) -> Option<Recorded> {
    for o in rec.owners.iter().filter(|o| !o.abandoned) {
        if let Some(i) = rec
            .observations
            .iter()
            .position(|x| x.invoked >= o.created && x.completed <= o.alive_until)
        {
            let mut c = rec.clone();
            c.observations[i].present.remove(&o.path);
            return Some(c);
        }
    }
    None
}

/// Asserts that every corruption that applies to `rec` is rejected, each
/// for the expected reason. Returns how many were tried.
fn assert_corruptions_rejected(rec: &Recorded) -> usize {
    type Corrupt = fn(&Recorded) -> Option<Recorded>;
    let cases: [(&str, Corrupt, &str); 4] = [
        (
            "read from the future",
            corrupt_read_from_future,
            "not linearizable",
        ),
        ("lost write", corrupt_lose_write, "acknowledged write lost"),
        (
            "overlapping holds",
            corrupt_overlap_holds,
            "two ZooKeeper lock holders",
        ),
        (
            "vanished ephemeral",
            corrupt_ephemeral,
            "while its session was alive",
        ),
    ];
    let mut tried = 0;
    for (name, corrupt, expect) in cases {
        let Some(bad) = corrupt(rec) else {
            panic!("self-check: could not build the '{name}' corruption from this history");
        };
        tried += 1;
        match check_run(&bad) {
            Ok(s) => panic!("self-check: corrupted history ({name}) was accepted: {s}"),
            Err(errs) => assert!(
                errs.iter().any(|e| e.contains(expect)),
                "self-check: corrupted history ({name}) rejected for another reason: {errs:#?}"
            ),
        }
    }
    tried
}

// ---------------------------------------------------------------------------
// The checking path on a small hand-made recording (no cluster).

fn synthetic() -> Recorded {
    let s = |x: u64| x * 1_000_000_000;
    let op = |client, proto, input, output, invoked, completed, revision| RegOp {
        register: 0,
        client,
        proto,
        input,
        output: Some(output),
        invoked: s(invoked),
        completed: Some(s(completed)),
        revision: Some(revision),
    };
    let applied = vec![vec![
        Applied {
            revision: 2,
            version: 1,
            value: Some(0),
        },
        Applied {
            revision: 5,
            version: 2,
            value: Some(11),
        },
        Applied {
            revision: 6,
            version: 3,
            value: Some(12),
        },
    ]];
    Recorded {
        initial: vec![(0, 1)],
        ops: vec![
            op(
                1,
                Proto::Etcd,
                RegisterInput::Read,
                RegisterOutput::Read {
                    value: Some(0),
                    version: Some(1),
                },
                0,
                1,
                2,
            ),
            op(
                1,
                Proto::Etcd,
                RegisterInput::Write(11),
                RegisterOutput::Written { version: Some(2) },
                2,
                3,
                5,
            ),
            op(
                2,
                Proto::Zk,
                RegisterInput::Read,
                RegisterOutput::Read {
                    value: Some(11),
                    version: Some(2),
                },
                4,
                5,
                5,
            ),
            op(
                2,
                Proto::Zk,
                RegisterInput::CompareAndSet {
                    expected_version: 2,
                    value: 12,
                },
                RegisterOutput::Cas {
                    ok: true,
                    version: Some(3),
                },
                6,
                7,
                6,
            ),
            op(
                1,
                Proto::Etcd,
                RegisterInput::CompareAndSet {
                    expected_version: 2,
                    value: 13,
                },
                RegisterOutput::Cas {
                    ok: false,
                    version: None,
                },
                8,
                9,
                0,
            ),
            RegOp {
                register: 0,
                client: 3,
                proto: Proto::Zk,
                input: RegisterInput::Write(14),
                output: None,
                invoked: s(8),
                completed: None,
                revision: None,
            },
        ],
        holds: vec![
            Hold {
                contender: 1,
                start: s(1),
                end: s(2),
                lost: false,
            },
            Hold {
                contender: 2,
                start: s(3),
                end: s(4),
                lost: false,
            },
        ],
        owners: vec![
            EphOwner {
                path: "/lin-eph/a".into(),
                created: 0,
                alive_until: s(20),
                abandoned: false,
            },
            EphOwner {
                path: "/lin-eph/b".into(),
                created: 0,
                alive_until: s(5),
                abandoned: true,
            },
        ],
        observations: vec![
            EphObs {
                invoked: s(1),
                completed: s(2),
                present: ["/lin-eph/a".to_string(), "/lin-eph/b".to_string()].into(),
            },
            EphObs {
                invoked: s(6),
                completed: s(7),
                present: ["/lin-eph/a".to_string()].into(),
            },
            EphObs {
                invoked: s(8),
                completed: s(9),
                present: ["/lin-eph/a".to_string()].into(),
            },
        ],
        applied: vec![("m0".into(), applied.clone()), ("m1".into(), applied)],
        problems: vec![],
        faults: vec![],
    }
}

#[test]
fn checking_path_accepts_a_good_recording_and_rejects_corrupted_ones() {
    let rec = synthetic();
    if let Err(e) = check_run(&rec) {
        panic!("the synthetic recording is valid: {e:#?}");
    }
    assert_eq!(assert_corruptions_rejected(&rec), 4);

    // More ways to be wrong, each rejected.
    let rejected = |c: Recorded, what: &str| {
        let errs = check_run(&c).expect_err(what);
        assert!(errs.iter().any(|e| e.contains(what)), "{what}: {errs:#?}");
    };
    let mut c = rec.clone();
    c.applied[1].1[0][2].value = Some(13); // the failed CAS applied on m1
    rejected(c, "failed compare-and-set applied");
    let mut c = rec.clone();
    c.applied[0].1[0][1].revision = 4; // acknowledged at revision 5
    rejected(c, "acknowledged at another revision");
    let mut c = rec.clone();
    c.applied[0].1[0].push(Applied {
        revision: 9,
        version: 4,
        value: Some(77),
    });
    rejected(c, "never written by any client");
    let mut c = rec.clone();
    c.observations[2].present.insert("/lin-eph/b".into()); // back after expiry
    rejected(c, "came back");
    let mut c = rec.clone();
    c.observations[1].present.insert("/lin-eph/b".into());
    c.observations[2].present.insert("/lin-eph/b".into());
    rejected(c, "never vanished");
    let mut c = rec.clone();
    c.owners[1].alive_until = c.observations[1].completed; // expired too early
    rejected(c, "while its session was alive");
    // An unknown write that a member applied and a client read: fine. The
    // same read without the write in any member's history: rejected.
    let mut c = rec.clone();
    for (_, regs) in &mut c.applied {
        regs[0].push(Applied {
            revision: 7,
            version: 4,
            value: Some(14),
        });
    }
    c.ops.push(RegOp {
        register: 0,
        client: 1,
        proto: Proto::Etcd,
        input: RegisterInput::Read,
        output: Some(RegisterOutput::Read {
            value: Some(14),
            version: Some(4),
        }),
        invoked: 10_000_000_000,
        completed: Some(11_000_000_000),
        revision: Some(7),
    });
    if let Err(e) = check_run(&c) {
        panic!("an applied unknown write may be read: {e:#?}");
    }
    for (_, regs) in &mut c.applied {
        regs[0].pop();
    }
    rejected(c, "not linearizable");
    let mut c = rec.clone();
    c.ops[2].output = Some(RegisterOutput::Read {
        value: Some(0),
        version: Some(1),
    }); // stale read after a completed write
    c.ops[2].revision = Some(2);
    rejected(c, "not linearizable");
}

// ---------------------------------------------------------------------------
// The run.

async fn etcd_connect(eps: &[String]) -> Client {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(4))
        .with_connect_timeout(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(eps, Some(opts.clone())).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "etcd connect: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn zk_session(cs: &str, detached: bool) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = zk::Client::connector();
        c.session_timeout(SESSION_TIMEOUT);
        if detached {
            c.detached();
        }
        match tokio::time::timeout(Duration::from_secs(10), c.connect(cs)).await {
            Ok(Ok(cl)) => return cl,
            e => {
                assert!(Instant::now() < deadline, "zk connect: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// Creates the session's ephemeral (retrying through connection loss) and
/// registers its owner; `alive_until` is filled in at the end.
async fn own_ephemeral(
    cl: &zk::Client,
    path: &str,
    clock: Clock,
    rec: &Mutex<Recorded>,
    abandoned: bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(OP_TIMEOUT, cl.create(path, b"", &ephemeral())).await {
            Ok(Ok(_)) | Ok(Err(zk::Error::NodeExists)) => break,
            e => {
                assert!(Instant::now() < deadline, "create {path}: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let mut r = rec.lock().unwrap();
    r.owners.push(EphOwner {
        path: path.to_string(),
        created: clock.now(),
        alive_until: 0,
        abandoned,
    });
    r.owners.len() - 1
}

struct Shared {
    clock: Clock,
    rec: Mutex<Recorded>,
    stop: AtomicBool,
    stop_monitor: AtomicBool,
    seed: u64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn push(&self, op: RegOp) {
        self.rec.lock().unwrap().ops.push(op);
    }
    fn problem(&self, p: String) {
        eprintln!("PROBLEM: {p}");
        self.rec.lock().unwrap().problems.push(p);
    }
}

fn value_of(client: u64, seq: u64) -> u64 {
    client * 1_000_000_000 + seq
}

async fn etcd_worker(id: u64, eps: Vec<String>, sh: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cl = etcd_connect(&eps).await;
    let mut known = [1i64; REGISTERS];
    let mut seq = 0u64;
    while !sh.stopped() {
        let r = rng.gen_range(0..REGISTERS);
        let key = reg_key(r);
        let kind = rng.gen_range(0..10);
        let mut op = RegOp {
            register: r,
            client: id,
            proto: Proto::Etcd,
            input: RegisterInput::Read,
            output: None,
            invoked: 0,
            completed: None,
            revision: None,
        };
        let mut failed = false;
        if kind < 4 {
            op.invoked = sh.clock.now();
            match tokio::time::timeout(OP_TIMEOUT, cl.get(key.as_str(), None)).await {
                Ok(Ok(resp)) => {
                    op.completed = Some(sh.clock.now());
                    let (value, version, rev) = match resp.kvs().first() {
                        Some(kv) => (
                            Some(parse_value(kv.value())),
                            kv.version(),
                            Some(kv.mod_revision()),
                        ),
                        None => (None, 0, None),
                    };
                    known[r] = version;
                    op.output = Some(RegisterOutput::Read {
                        value,
                        version: Some(version),
                    });
                    op.revision = rev;
                }
                _ => failed = true,
            }
        } else {
            seq += 1;
            let value = value_of(id, seq);
            let data = value.to_string();
            if kind < 7 {
                op.input = RegisterInput::Write(value);
                op.invoked = sh.clock.now();
                let put = cl.put(
                    key.as_str(),
                    data.as_str(),
                    Some(PutOptions::new().with_prev_key()),
                );
                match tokio::time::timeout(OP_TIMEOUT, put).await {
                    Ok(Ok(resp)) => {
                        op.completed = Some(sh.clock.now());
                        let version = resp.prev_key().map(|p| p.version() + 1);
                        if let Some(v) = version {
                            known[r] = v;
                        }
                        op.output = Some(RegisterOutput::Written { version });
                        op.revision = resp.header().map(|h| h.revision());
                    }
                    _ => failed = true,
                }
            } else {
                let expected = known[r];
                op.input = RegisterInput::CompareAndSet {
                    expected_version: expected,
                    value,
                };
                let txn = Txn::new()
                    .when([Compare::version(key.as_str(), CompareOp::Equal, expected)])
                    .and_then([TxnOp::put(key.as_str(), data.as_str(), None)])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                op.invoked = sh.clock.now();
                match tokio::time::timeout(OP_TIMEOUT, cl.txn(txn)).await {
                    Ok(Ok(resp)) => {
                        op.completed = Some(sh.clock.now());
                        if resp.succeeded() {
                            known[r] = expected + 1;
                            op.output = Some(RegisterOutput::Cas {
                                ok: true,
                                version: Some(expected + 1),
                            });
                            op.revision = resp.header().map(|h| h.revision());
                        } else {
                            op.output = Some(RegisterOutput::Cas {
                                ok: false,
                                version: None,
                            });
                            for o in resp.op_responses() {
                                if let TxnOpResponse::Get(g) = o {
                                    if let Some(kv) = g.kvs().first() {
                                        known[r] = kv.version();
                                    }
                                }
                            }
                        }
                    }
                    _ => failed = true,
                }
            }
        }
        sh.push(op);
        if failed {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A ZooKeeper client on its own session. Returns the session (still open)
/// and its ephemeral's owner index, for the end-of-run checks.
async fn zk_worker(id: u64, cs: String, sh: Arc<Shared>) -> (zk::Client, usize) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cl = zk_session(&cs, false).await;
    let mut owner = own_ephemeral(&cl, &format!("/lin-eph/zk{id}"), sh.clock, &sh.rec, false).await;
    let mut known = [1i64; REGISTERS];
    let mut seq = 0u64;
    let mut sessions = 1;
    while !sh.stopped() {
        let r = rng.gen_range(0..REGISTERS);
        let key = reg_key(r);
        let kind = rng.gen_range(0..10);
        let mut op = RegOp {
            register: r,
            client: id,
            proto: Proto::Zk,
            input: RegisterInput::Read,
            output: None,
            invoked: 0,
            completed: None,
            revision: None,
        };
        let mut err = None;
        if kind < 4 {
            // sync, then getData: recorded as one linearizable read.
            op.invoked = sh.clock.now();
            match tokio::time::timeout(OP_TIMEOUT, cl.sync(&key)).await {
                Ok(Ok(())) => match tokio::time::timeout(OP_TIMEOUT, cl.get_data(&key)).await {
                    Ok(Ok((data, stat))) => {
                        op.completed = Some(sh.clock.now());
                        let version = stat.version as i64 + 1;
                        known[r] = version;
                        op.output = Some(RegisterOutput::Read {
                            value: Some(parse_value(&data)),
                            version: Some(version),
                        });
                        op.revision = Some(stat.mzxid);
                    }
                    Ok(Err(zk::Error::NoNode)) => {
                        op.completed = Some(sh.clock.now());
                        op.output = Some(RegisterOutput::Read {
                            value: None,
                            version: Some(0),
                        });
                    }
                    Ok(Err(e)) => err = Some(e),
                    Err(_) => err = Some(zk::Error::Timeout),
                },
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some(zk::Error::Timeout),
            }
        } else {
            seq += 1;
            let value = value_of(id, seq);
            let data = value.to_string();
            let expected = (kind >= 7).then_some(known[r]);
            op.input = match expected {
                None => RegisterInput::Write(value),
                Some(v) => RegisterInput::CompareAndSet {
                    expected_version: v,
                    value,
                },
            };
            op.invoked = sh.clock.now();
            let zk_expected = expected.map(|v| (v - 1) as i32);
            match tokio::time::timeout(OP_TIMEOUT, cl.set_data(&key, data.as_bytes(), zk_expected))
                .await
            {
                Ok(Ok(stat)) => {
                    op.completed = Some(sh.clock.now());
                    let version = stat.version as i64 + 1;
                    known[r] = version;
                    op.output = Some(match expected {
                        None => RegisterOutput::Written {
                            version: Some(version),
                        },
                        Some(_) => RegisterOutput::Cas {
                            ok: true,
                            version: Some(version),
                        },
                    });
                    op.revision = Some(stat.mzxid);
                }
                Ok(Err(zk::Error::BadVersion)) if expected.is_some() => {
                    op.completed = Some(sh.clock.now());
                    op.output = Some(RegisterOutput::Cas {
                        ok: false,
                        version: None,
                    });
                }
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some(zk::Error::Timeout),
            }
        }
        sh.push(op);
        match err {
            None => {}
            Some(zk::Error::SessionExpired) => {
                sh.problem(format!(
                    "ZooKeeper session of client {id} expired at {:.3}s (no fault outlasts the session timeout)",
                    sh.clock.secs()
                ));
                // The expired session's ephemeral is no longer protected.
                let t = sh.rec.lock().unwrap().owners[owner].created;
                sh.rec.lock().unwrap().owners[owner].alive_until = t;
                sessions += 1;
                cl = zk_session(&cs, false).await;
                owner = own_ephemeral(
                    &cl,
                    &format!("/lin-eph/zk{id}-{sessions}"),
                    sh.clock,
                    &sh.rec,
                    false,
                )
                .await;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    (cl, owner)
}

fn seq_of(child: &str) -> i64 {
    child
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX)
}

/// Deletes a lock node, retrying through connection loss.
async fn release(cl: &zk::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(OP_TIMEOUT, cl.delete(path, None)).await {
            Ok(Ok(())) | Ok(Err(zk::Error::NoNode)) | Ok(Err(zk::Error::SessionExpired)) => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A lock contender: the ephemeral-sequential recipe (lowest sequence
/// holds), polling the children. Returns its session and ephemeral owner.
async fn lock_contender(id: u64, cs: String, sh: Arc<Shared>) -> (zk::Client, usize) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (0x10c0 + id));
    let cl = zk_session(&cs, false).await;
    let owner = own_ephemeral(&cl, &format!("/lin-eph/lock{id}"), sh.clock, &sh.rec, false).await;
    let mut attempt = 0u64;
    'attempts: while !sh.stopped() {
        if cl.state() == zk::SessionState::Expired {
            sh.problem(format!(
                "lock contender {id}: session expired at {:.3}s",
                sh.clock.secs()
            ));
            let t = sh.rec.lock().unwrap().owners[owner].created;
            sh.rec.lock().unwrap().owners[owner].alive_until = t;
            break;
        }
        attempt += 1;
        let prefix = format!("c{id}-{attempt}-");
        let path = format!("/lin-lock/{prefix}");
        let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let me = match tokio::time::timeout(OP_TIMEOUT, cl.create(&path, b"", &opts)).await {
            Ok(Ok((_, seq))) => format!("{prefix}{seq}"),
            Ok(Err(zk::Error::SessionExpired)) => continue,
            _ => {
                // Unknown: the node may exist; found (or cleaned up) below
                // as one of this contender's stale nodes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Wait until ours is the lowest.
        let start = loop {
            if sh.stopped() {
                release(&cl, &format!("/lin-lock/{me}")).await;
                break 'attempts;
            }
            match tokio::time::timeout(OP_TIMEOUT, cl.list_children("/lin-lock")).await {
                Ok(Ok(children)) => {
                    let done = sh.clock.now();
                    if !children.contains(&me) {
                        // Our node is gone (the session expired): start over.
                        continue 'attempts;
                    }
                    for stale in children
                        .iter()
                        .filter(|c| c.starts_with(&format!("c{id}-")) && **c != me)
                    {
                        release(&cl, &format!("/lin-lock/{stale}")).await;
                    }
                    let lowest = children.iter().min_by_key(|c| seq_of(c));
                    if lowest == Some(&me) && cl.state() == zk::SessionState::SyncConnected {
                        break done;
                    }
                }
                Ok(Err(zk::Error::SessionExpired)) => continue 'attempts,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Hold it, unless the session stops being connected.
        let until = Instant::now() + Duration::from_millis(rng.gen_range(20..150));
        let mut lost = false;
        while Instant::now() < until {
            if cl.state() != zk::SessionState::SyncConnected {
                lost = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let end = sh.clock.now();
        sh.rec.lock().unwrap().holds.push(Hold {
            contender: id,
            start,
            end,
            lost,
        });
        release(&cl, &format!("/lin-lock/{me}")).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
    }
    (cl, owner)
}

/// Polls every ephemeral under `/lin-eph/` with linearizable etcd reads.
async fn monitor(eps: Vec<String>, sh: Arc<Shared>) {
    let mut cl = etcd_connect(&eps).await;
    while !sh.stop_monitor.load(Ordering::Relaxed) {
        let invoked = sh.clock.now();
        let get = cl.get(
            "/lin-eph/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        );
        if let Ok(Ok(resp)) = tokio::time::timeout(OP_TIMEOUT, get).await {
            let completed = sh.clock.now();
            let present = resp
                .kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect();
            sh.rec.lock().unwrap().observations.push(EphObs {
                invoked,
                completed,
                present,
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A session that goes away without closing: its ephemeral must stay until
/// last contact + session timeout, then go.
async fn abandon_session(name: String, cs: String, sh: Arc<Shared>) {
    let cl = zk_session(&cs, true).await;
    let owner = own_ephemeral(&cl, &format!("/lin-eph/{name}"), sh.clock, &sh.rec, true).await;
    let timeout = cl.session_timeout();
    // Last contact: a request's invocation (any request refreshes the
    // session, as in ZooKeeper).
    let mut last = sh.rec.lock().unwrap().owners[owner].created;
    loop {
        let t = sh.clock.now();
        if let Ok(Ok(_)) = tokio::time::timeout(OP_TIMEOUT, cl.check_stat("/lin")).await {
            last = t;
            break;
        }
        if sh.clock.now() > last + nanos(timeout) / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(cl); // detached: no closeSession
    sh.rec.lock().unwrap().owners[owner].alive_until = last + nanos(timeout);
    eprintln!(
        "[{:.1}s] abandoned session {name} (timeout {timeout:?})",
        sh.clock.secs()
    );
}

/// Status of member `i`: (its id, the leader it sees), if it answers.
async fn status_of(c: &Cluster, i: usize) -> Option<(u64, u64)> {
    if !c.members[i].is_running() {
        return None;
    }
    let ep = c.members[i].etcd_endpoint();
    let mut cl = tokio::time::timeout(Duration::from_secs(2), Client::connect([ep], None))
        .await
        .ok()?
        .ok()?;
    let s = tokio::time::timeout(Duration::from_secs(2), cl.status())
        .await
        .ok()?
        .ok()?;
    Some((s.header()?.member_id(), s.leader()))
}

/// Index of the leader every running member agrees on.
async fn leader_index(c: &Cluster, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = Vec::new();
        for i in 0..c.members.len() {
            if c.members[i].is_running() {
                seen.push((i, status_of(c, i).await));
            }
        }
        let leaders: BTreeSet<u64> = seen.iter().map(|(_, s)| s.map_or(0, |s| s.1)).collect();
        if leaders.len() == 1 && !leaders.contains(&0) {
            let l = *leaders.first().expect("one");
            if let Some((i, _)) = seen.iter().find(|(_, s)| s.is_some_and(|s| s.0 == l)) {
                return *i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {within:?}: {seen:x?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member `ep`'s history of every register: an etcd watch from revision 1
/// up to `target` (the last register change).
async fn applied_history(ep: &str, target: i64) -> Result<Vec<Vec<Applied>>, String> {
    let mut cl = etcd_connect(&[ep.to_string()]).await;
    let (_watcher, mut stream) = cl
        .watch(
            "/lin/r",
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let mut out = vec![Vec::new(); REGISTERS];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .map_err(|_| format!("watch on {ep}: revision {target} not reached"))?
            .map_err(|e| format!("watch on {ep}: {e}"))?
            .ok_or_else(|| format!("watch on {ep} ended"))?;
        if msg.compact_revision() > 0 || msg.canceled() {
            return Err(format!(
                "watch on {ep} canceled (compacted at {}): {}",
                msg.compact_revision(),
                msg.cancel_reason()
            ));
        }
        let mut done = false;
        for ev in msg.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(r) = (0..REGISTERS).find(|r| reg_key(*r) == key) else {
                continue;
            };
            out[r].push(Applied {
                revision: kv.mod_revision(),
                version: kv.version(),
                value: match ev.event_type() {
                    EventType::Put => Some(parse_value(kv.value())),
                    EventType::Delete => None,
                },
            });
            done |= kv.mod_revision() >= target;
        }
        if done {
            return Ok(out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_under_faults_both_protocols() {
    let seed = std::env::var("JANUS_LIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed {seed} (rerun with JANUS_LIN_SEED={seed})");
    let run_started = Instant::now();
    let mut c = Cluster::start(3);
    leader_index(&c, Duration::from_secs(30)).await;
    let eps = c.etcd_endpoints();
    let cs = c.zk_connect_string();

    // Registers and parents, created by ZooKeeper.
    let admin = zk_session(&cs, false).await;
    for p in ["/lin", "/lin-eph", "/lin-lock"] {
        match admin.create(p, b"", &persistent()).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("create {p}: {e}"),
        }
    }
    let mut initial = Vec::new();
    for r in 0..REGISTERS {
        let (stat, _) = admin
            .create(&reg_key(r), b"0", &persistent())
            .await
            .expect("create register");
        initial.push((0u64, stat.version as i64 + 1));
    }
    drop(admin);

    let sh = Arc::new(Shared {
        clock: Clock(Instant::now()),
        rec: Mutex::new(Recorded {
            initial,
            ..Recorded::default()
        }),
        stop: AtomicBool::new(false),
        stop_monitor: AtomicBool::new(false),
        seed,
    });
    let mon = tokio::spawn(monitor(eps.clone(), Arc::clone(&sh)));
    let mut etcd_tasks = Vec::new();
    for id in 1..=ETCD_CLIENTS {
        etcd_tasks.push(tokio::spawn(etcd_worker(id, eps.clone(), Arc::clone(&sh))));
    }
    let mut zk_tasks = Vec::new();
    for id in 1..=ZK_CLIENTS {
        zk_tasks.push(tokio::spawn(zk_worker(
            100 + id,
            cs.clone(),
            Arc::clone(&sh),
        )));
    }
    for id in 1..=LOCK_CONTENDERS {
        zk_tasks.push(tokio::spawn(lock_contender(
            id,
            cs.clone(),
            Arc::clone(&sh),
        )));
    }
    // An idle session: pings only.
    let idle = zk_session(&cs, false).await;
    let idle_owner = own_ephemeral(&idle, "/lin-eph/idle", sh.clock, &sh.rec, false).await;
    let mut abandon_tasks = vec![tokio::spawn(abandon_session(
        "abandoned1".into(),
        cs.clone(),
        Arc::clone(&sh),
    ))];

    // Faults.
    let fault = |sh: &Shared, what: String| {
        eprintln!("[{:.1}s] {what}", sh.clock.secs());
        sh.rec.lock().unwrap().faults.push(what);
    };
    let sleep = |s: f64| tokio::time::sleep(Duration::from_secs_f64(s));
    sleep(3.0).await;
    let l = leader_index(&c, Duration::from_secs(20)).await;
    c.kill(l);
    fault(&sh, format!("kill -9 leader {}", c.members[l].name));
    sleep(3.0).await;
    tokio::task::block_in_place(|| c.restart(l));
    eprintln!("[{:.1}s] restarted {}", sh.clock.secs(), c.members[l].name);

    let l = leader_index(&c, Duration::from_secs(20)).await;
    sleep(1.0).await;
    c.pause(l);
    fault(&sh, format!("SIGSTOP leader {}", c.members[l].name));
    sleep(3.0).await;
    c.resume(l);
    eprintln!("[{:.1}s] SIGCONT {}", sh.clock.secs(), c.members[l].name);

    abandon_tasks.push(tokio::spawn(abandon_session(
        "abandoned2".into(),
        cs.clone(),
        Arc::clone(&sh),
    )));
    sleep(2.0).await;
    let l = leader_index(&c, Duration::from_secs(20)).await;
    c.kill(l);
    fault(&sh, format!("kill -9 leader {}", c.members[l].name));
    sleep(2.5).await;
    tokio::task::block_in_place(|| c.restart(l));
    eprintln!("[{:.1}s] restarted {}", sh.clock.secs(), c.members[l].name);

    let l = leader_index(&c, Duration::from_secs(20)).await;
    sleep(1.0).await;
    let f = (l + 1) % c.members.len();
    c.pause(f);
    fault(&sh, format!("SIGSTOP follower {}", c.members[f].name));
    sleep(2.5).await;
    c.resume(f);
    eprintln!("[{:.1}s] SIGCONT {}", sh.clock.secs(), c.members[f].name);
    sleep(2.0).await;

    // Stop the workload.
    sh.stop.store(true, Ordering::Relaxed);
    eprintln!("[{:.1}s] stopping the workload", sh.clock.secs());
    for t in etcd_tasks {
        t.await.expect("etcd worker panicked");
    }
    let mut sessions = Vec::new();
    for t in zk_tasks {
        sessions.push(t.await.expect("ZooKeeper worker panicked"));
    }
    sessions.push((idle, idle_owner));
    for t in abandon_tasks {
        t.await.expect("abandon task panicked");
    }
    leader_index(&c, Duration::from_secs(30)).await;

    // Final reads through both protocols (etcd: linearizable; ZooKeeper: sync
    // + getData on every member), part of the checked history.
    let mut fin = etcd_connect(&eps).await;
    for r in 0..REGISTERS {
        let invoked = sh.clock.now();
        let resp = fin.get(reg_key(r), None).await.expect("final get");
        let kv = resp.kvs().first().expect("register exists");
        sh.push(RegOp {
            register: r,
            client: 900,
            proto: Proto::Etcd,
            input: RegisterInput::Read,
            output: Some(RegisterOutput::Read {
                value: Some(parse_value(kv.value())),
                version: Some(kv.version()),
            }),
            invoked,
            completed: Some(sh.clock.now()),
            revision: Some(kv.mod_revision()),
        });
    }
    for (i, m) in c.members.iter().enumerate() {
        let zc = zk_session(&m.zk.to_string(), false).await;
        for r in 0..REGISTERS {
            let key = reg_key(r);
            let invoked = sh.clock.now();
            zc.sync(&key).await.expect("final sync");
            let (data, stat) = zc.get_data(&key).await.expect("final getData");
            sh.push(RegOp {
                register: r,
                client: 910 + i as u64,
                proto: Proto::Zk,
                input: RegisterInput::Read,
                output: Some(RegisterOutput::Read {
                    value: Some(parse_value(&data)),
                    version: Some(stat.version as i64 + 1),
                }),
                invoked,
                completed: Some(sh.clock.now()),
                revision: Some(stat.mzxid),
            });
        }
    }

    // Abandoned sessions must expire: wait (bounded) until their ephemerals
    // are gone from an observation.
    let abandoned: Vec<(String, u64)> = sh
        .rec
        .lock()
        .unwrap()
        .owners
        .iter()
        .filter(|o| o.abandoned)
        .map(|o| (o.path.clone(), o.alive_until))
        .collect();
    let latest = abandoned.iter().map(|a| a.1).max().unwrap_or(0);
    let deadline = latest + nanos(Duration::from_secs(25));
    loop {
        let gone = {
            let r = sh.rec.lock().unwrap();
            abandoned.iter().all(|(p, _)| {
                r.observations
                    .last()
                    .is_some_and(|x| !x.present.contains(p))
            })
        };
        if gone || sh.clock.now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sh.stop_monitor.store(true, Ordering::Relaxed);
    mon.await.expect("monitor panicked");

    // Live sessions: still alive, their ephemeral still the one they created.
    for (cl, owner) in &sessions {
        let path = sh.rec.lock().unwrap().owners[*owner].path.clone();
        if sh.rec.lock().unwrap().owners[*owner].alive_until != 0 {
            continue; // expired during the run (already a problem)
        }
        let t = sh.clock.now();
        match tokio::time::timeout(OP_TIMEOUT, cl.check_stat(&path)).await {
            Ok(Ok(Some(stat))) if stat.ephemeral_owner == cl.session_id().0 => {
                sh.rec.lock().unwrap().owners[*owner].alive_until = t;
            }
            other => sh.problem(format!(
                "live session {:x}: its ephemeral {path} at the end: {other:?}",
                cl.session_id().0
            )),
        }
    }

    // Every member's applied history of the registers.
    let target = fin
        .get("/lin/r", Some(GetOptions::new().with_prefix()))
        .await
        .expect("final range")
        .kvs()
        .iter()
        .map(|kv| kv.mod_revision())
        .max()
        .expect("registers");
    for m in &c.members {
        match applied_history(&m.etcd_endpoint(), target).await {
            Ok(h) => sh.rec.lock().unwrap().applied.push((m.name.clone(), h)),
            Err(e) => sh.problem(format!("member {}: {e}", m.name)),
        }
    }
    drop(sessions);

    let rec = sh.rec.lock().unwrap().clone();
    let workload_ops = |p: Proto| {
        rec.ops
            .iter()
            .filter(|o| o.proto == p && o.completed.is_some() && o.client < 900)
            .count()
    };
    let checking = Instant::now();
    let verdict = check_run(&rec);
    eprintln!("checked in {:?}", checking.elapsed());
    match verdict {
        Ok(summary) => {
            eprintln!(
                "linearizable under {} faults ({}): {summary}",
                rec.faults.len(),
                rec.faults.join(", ")
            );
        }
        Err(errors) => {
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("linearizable-history-{seed}.txt"));
            let _ = std::fs::write(&path, rec.dump());
            panic!(
                "seed {seed}: {} problems (full history in {}):\n{}",
                errors.len(),
                path.display(),
                errors.join("\n")
            );
        }
    }
    assert_eq!(rec.faults.len(), 4, "every fault was injected");
    assert!(
        workload_ops(Proto::Etcd) >= 30 && workload_ops(Proto::Zk) >= 30,
        "too little work to mean anything: {} etcd, {} ZooKeeper operations completed",
        workload_ops(Proto::Etcd),
        workload_ops(Proto::Zk)
    );
    assert!(
        rec.holds.len() >= 4,
        "the lock changed hands only {} times",
        rec.holds.len()
    );

    // The checks can fail: the same path rejects this very history corrupted.
    let tried = assert_corruptions_rejected(&rec);
    eprintln!(
        "self-check: {tried} corrupted copies of this history rejected; total {:?}",
        run_started.elapsed()
    );
}
