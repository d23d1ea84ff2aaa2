//! A linearizability checker for histories of register operations.
//!
//! The search is Wing & Gong's, with Lowe's memoization, as porcupine does
//! it: the history becomes a doubly linked list of call and return events
//! ordered by time; a depth-first search repeatedly picks a call whose
//! operation the model accepts in the current state, "lifts" it (removes its
//! call and return from the list) and continues; reaching a return event
//! whose call has not been linearized means the current choices are wrong,
//! so it backtracks. A cache of (set of linearized operations, model state)
//! pairs already explored keeps the search from repeating itself. Histories
//! are partitioned per register first (linearizability is local, Herlihy &
//! Wing), so each search only sees the operations on one key.
//!
//! Edge cases, as the contract:
//! - An operation with `completed == None` never returned (the client
//!   crashed or timed out). It may have taken effect at any point after its
//!   invocation, or not at all: its return is placed after every other event,
//!   so the search may linearize it anywhere after its call, including after
//!   everything else (which is indistinguishable from never happening). Its
//!   output is unknown, so the model accepts any result for it.
//! - Operations that failed in a way that proves they did not take effect
//!   (e.g. a ZooKeeper `BadVersion`, an etcd txn whose compare failed) are
//!   *completed* operations with a negative result: a failed compare-and-set
//!   is an observation that the version differed at its linearization point.
//!   Operations that failed in a way that leaves the outcome unknown
//!   (timeouts, connection loss) must be recorded with `completed == None`.
//! - Events at equal times: a call sorts before a return at the same
//!   instant, i.e. the two operations count as concurrent (the permissive
//!   choice; the recorder's clock cannot order them).
//! - Unknown reads (never completed) constrain nothing and are dropped.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification: a deterministic state machine.
pub trait Model {
    type State: Clone + Eq + Hash + std::fmt::Debug;
    type Input: Clone + std::fmt::Debug;
    type Output: Clone + std::fmt::Debug;

    fn init(&self) -> Self::State;

    /// If `input` applied in `state` may produce `output` (`None`: the output
    /// was never observed), the state after it; otherwise `None`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    /// Which client issued it (for reports only).
    pub client: u64,
    pub input: I,
    /// The observed result; `None` when the operation never completed.
    pub output: Option<O>,
    /// Invocation time (any monotonic unit, e.g. nanoseconds since start).
    pub invoked: u64,
    /// Completion time; `None` when the operation never completed.
    pub completed: Option<u64>,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists. `stuck_at` lists the operations (indexes into
    /// the checked slice) that are not in the longest linearizable prefix the
    /// search found, earliest return first; the first is the one no order
    /// could place.
    NotLinearizable {
        longest_prefix: usize,
        stuck_at: Vec<usize>,
    },
    /// The search gave up (time budget exhausted) without a verdict.
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    is_call: bool,
    op: usize,
    /// For a call, the index of its return event.
    matching: usize,
}

/// Checks one partition (all operations on one object) against `model`.
/// `budget` bounds the search time.
pub fn check_operations<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    budget: Duration,
) -> Verdict {
    // Drop unknown reads is the model's business (any output accepted); here
    // we only build events.
    let n = ops.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // (time, kind order, op): calls (0) before returns (1) at equal time.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.invoked, 0, i));
        order.push((op.completed.unwrap_or(u64::MAX), 1, i));
    }
    order.sort();
    // Node 0 is the head sentinel; event k is node k + 1.
    let len = order.len() + 1;
    let mut events = vec![
        Event {
            is_call: false,
            op: usize::MAX,
            matching: 0,
        };
        len
    ];
    let mut ret_node = vec![0usize; n];
    for (k, &(_, kind, op)) in order.iter().enumerate() {
        events[k + 1] = Event {
            is_call: kind == 0,
            op,
            matching: 0,
        };
        if kind == 1 {
            ret_node[op] = k + 1;
        }
    }
    for ev in events.iter_mut().skip(1) {
        if ev.is_call {
            ev.matching = ret_node[ev.op];
        }
    }
    const NIL: usize = usize::MAX;
    let mut next: Vec<usize> = (0..len)
        .map(|i| if i + 1 < len { i + 1 } else { NIL })
        .collect();
    let mut prev: Vec<usize> = (0..len).map(|i| if i == 0 { NIL } else { i - 1 }).collect();

    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize, matching: usize| {
        // Remove the call node.
        let (p, nx) = (prev[node], next[node]);
        next[p] = nx;
        if nx != NIL {
            prev[nx] = p;
        }
        // Remove its return node.
        let (p, nx) = (prev[matching], next[matching]);
        next[p] = nx;
        if nx != NIL {
            prev[nx] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize, matching: usize| {
        // Reinsert the return first, then the call (reverse of lift).
        let (p, nx) = (prev[matching], next[matching]);
        next[p] = matching;
        if nx != NIL {
            prev[nx] = matching;
        }
        let (p, nx) = (prev[node], next[node]);
        next[p] = node;
        if nx != NIL {
            prev[nx] = node;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut best: Vec<u64> = linearized.clone();
    let mut best_len = 0usize;
    let deadline = Instant::now() + budget;
    let mut steps: u64 = 0;
    let mut entry = next[0];

    while next[0] != NIL {
        steps += 1;
        if steps & 4095 == 0 && Instant::now() > deadline {
            return Verdict::Unknown;
        }
        if entry == NIL {
            // Cannot happen: the list always ends with a return event.
            break;
        }
        let ev = events[entry];
        if ev.is_call {
            let op = &ops[ev.op];
            if let Some(new_state) = model.step(&state, &op.input, op.output.as_ref()) {
                let mut lin = linearized.clone();
                lin[ev.op / 64] |= 1 << (ev.op % 64);
                if cache.insert((lin, new_state.clone())) {
                    stack.push((entry, state));
                    state = new_state;
                    linearized[ev.op / 64] |= 1 << (ev.op % 64);
                    lift(&mut next, &mut prev, entry, ev.matching);
                    if stack.len() > best_len {
                        best_len = stack.len();
                        best.clone_from(&linearized);
                    }
                    entry = next[0];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return whose call is not linearized: backtrack.
            let Some((node, old_state)) = stack.pop() else {
                let mut stuck: Vec<usize> = (0..n)
                    .filter(|&i| best[i / 64] & (1 << (i % 64)) == 0)
                    .collect();
                stuck.sort_by_key(|&i| (ops[i].completed.unwrap_or(u64::MAX), ops[i].invoked));
                return Verdict::NotLinearizable {
                    longest_prefix: best_len,
                    stuck_at: stuck,
                };
            };
            let op = events[node].op;
            state = old_state;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut next, &mut prev, node, events[node].matching);
            entry = next[node];
        }
    }
    Verdict::Linearizable
}

/// The value of a register: `None` when the key does not exist.
pub type Value = Option<u64>;

/// What a client asked of a register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    /// Unconditional write; the version goes up by one.
    Write(u64),
    /// Write iff the current version equals `expected_version` (etcd txn
    /// compare on version, ZooKeeper setData with version; normalize the
    /// ZooKeeper version to etcd's by adding one or keep one convention for
    /// the whole register).
    CompareAndSet {
        expected_version: i64,
        value: u64,
    },
}

/// What a client observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// A read: the value and, when the protocol reports it, the version.
    Read { value: Value, version: Option<i64> },
    /// A write completed; the new version when the protocol reports it.
    Written { version: Option<i64> },
    /// A compare-and-set completed: whether it applied, and the new version
    /// when it applied and the protocol reports it.
    Cas { ok: bool, version: Option<i64> },
}

/// State of one register: value and version (number of writes so far, or
/// whatever the protocol's version counter started at).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterState {
    pub value: Value,
    pub version: i64,
}

/// The register model, with its initial state.
#[derive(Clone, Copy, Debug)]
pub struct Register {
    pub init: RegisterState,
}

impl Default for Register {
    /// An absent key at version 0, as etcd reports a key that was never
    /// written.
    fn default() -> Self {
        Register {
            init: RegisterState {
                value: None,
                version: 0,
            },
        }
    }
}

impl Model for Register {
    type State = RegisterState;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> RegisterState {
        self.init
    }

    fn step(
        &self,
        s: &RegisterState,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<RegisterState> {
        let written = |value: u64| RegisterState {
            value: Some(value),
            version: s.version + 1,
        };
        let version_ok = |v: &Option<i64>, want: i64| !matches!(v, Some(v) if *v != want);
        match (input, output) {
            (RegisterInput::Read, None) => Some(*s),
            (RegisterInput::Read, Some(RegisterOutput::Read { value, version })) => {
                (*value == s.value && version_ok(version, s.version)).then_some(*s)
            }
            (RegisterInput::Write(v), None) => Some(written(*v)),
            (RegisterInput::Write(v), Some(RegisterOutput::Written { version })) => {
                let n = written(*v);
                version_ok(version, n.version).then_some(n)
            }
            (
                RegisterInput::CompareAndSet {
                    expected_version,
                    value,
                },
                None,
            ) => {
                if s.version == *expected_version {
                    Some(written(*value))
                } else {
                    Some(*s)
                }
            }
            (
                RegisterInput::CompareAndSet {
                    expected_version,
                    value,
                },
                Some(RegisterOutput::Cas { ok, version }),
            ) => {
                let applies = s.version == *expected_version;
                if *ok != applies {
                    return None;
                }
                if applies {
                    let n = written(*value);
                    version_ok(version, n.version).then_some(n)
                } else {
                    Some(*s)
                }
            }
            _ => None, // output of the wrong kind for the input
        }
    }
}

/// A recorded history of operations on many registers.
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<(String, Operation<RegisterInput, RegisterOutput>)>,
    init: BTreeMap<String, RegisterState>,
}

/// The verdict for a whole history.
#[derive(Clone, Debug)]
pub struct Report {
    /// Operations checked (unknown reads excluded).
    pub operations: usize,
    /// Registers (partitions) checked.
    pub registers: usize,
    /// Registers with no linearization, with the checker's details and the
    /// operations involved.
    pub violations: Vec<Violation>,
    /// Registers the search gave up on.
    pub undecided: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub register: String,
    pub longest_prefix: usize,
    /// The operations that could not be placed, earliest return first.
    pub stuck: Vec<Operation<RegisterInput, RegisterOutput>>,
}

impl Report {
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty() && self.undecided.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operations on {} registers: {} violations, {} undecided",
            self.operations,
            self.registers,
            self.violations.len(),
            self.undecided.len()
        )?;
        for v in &self.violations {
            write!(
                f,
                "\n  register {:?}: longest linearizable prefix {} ops; cannot place:",
                v.register, v.longest_prefix
            )?;
            for op in v.stuck.iter().take(5) {
                write!(
                    f,
                    "\n    client {} {:?} -> {:?} [{}, {}]",
                    op.client,
                    op.input,
                    op.output,
                    op.invoked,
                    op.completed.map_or("never".to_string(), |c| c.to_string())
                )?;
            }
        }
        for u in &self.undecided {
            write!(f, "\n  register {u:?}: search budget exhausted")?;
        }
        Ok(())
    }
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Sets a register's state before the history starts (default: absent,
    /// version 0).
    pub fn initial(&mut self, register: &str, value: Value, version: i64) {
        self.init
            .insert(register.to_string(), RegisterState { value, version });
    }

    /// Records a completed operation.
    pub fn complete(
        &mut self,
        register: &str,
        client: u64,
        input: RegisterInput,
        output: RegisterOutput,
        invoked: u64,
        completed: u64,
    ) {
        self.push(
            register,
            Operation {
                client,
                input,
                output: Some(output),
                invoked,
                completed: Some(completed),
            },
        );
    }

    /// Records an operation whose outcome is unknown (it may or may not have
    /// taken effect).
    pub fn unknown(&mut self, register: &str, client: u64, input: RegisterInput, invoked: u64) {
        self.push(
            register,
            Operation {
                client,
                input,
                output: None,
                invoked,
                completed: None,
            },
        );
    }

    pub fn push(&mut self, register: &str, op: Operation<RegisterInput, RegisterOutput>) {
        self.ops.push((register.to_string(), op));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every register's sub-history; `budget` bounds each register's
    /// search.
    pub fn check(&self, budget: Duration) -> Report {
        let mut parts: BTreeMap<&str, Vec<Operation<RegisterInput, RegisterOutput>>> =
            BTreeMap::new();
        for (reg, op) in &self.ops {
            if op.output.is_none() && op.input == RegisterInput::Read {
                continue;
            }
            parts.entry(reg.as_str()).or_default().push(op.clone());
        }
        let mut report = Report {
            operations: parts.values().map(Vec::len).sum(),
            registers: parts.len(),
            violations: Vec::new(),
            undecided: Vec::new(),
        };
        for (reg, ops) in parts {
            let model = Register {
                init: self
                    .init
                    .get(reg)
                    .copied()
                    .unwrap_or(Register::default().init),
            };
            match check_operations(&model, &ops, budget) {
                Verdict::Linearizable => {}
                Verdict::Unknown => report.undecided.push(reg.to_string()),
                Verdict::NotLinearizable {
                    longest_prefix,
                    stuck_at,
                } => report.violations.push(Violation {
                    register: reg.to_string(),
                    longest_prefix,
                    stuck: stuck_at.into_iter().map(|i| ops[i].clone()).collect(),
                }),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterInput::*;

    const BUDGET: Duration = Duration::from_secs(10);

    fn read(v: Value) -> RegisterOutput {
        RegisterOutput::Read {
            value: v,
            version: None,
        }
    }
    fn readv(v: Value, ver: i64) -> RegisterOutput {
        RegisterOutput::Read {
            value: v,
            version: Some(ver),
        }
    }
    fn written() -> RegisterOutput {
        RegisterOutput::Written { version: None }
    }
    fn cas(ok: bool) -> RegisterOutput {
        RegisterOutput::Cas { ok, version: None }
    }

    fn check(h: &History) -> Report {
        h.check(BUDGET)
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert!(check(&History::new()).is_linearizable());
    }

    #[test]
    fn sequential_write_then_read() {
        let mut h = History::new();
        h.complete("x", 1, Write(1), written(), 0, 10);
        h.complete("x", 1, Read, readv(Some(1), 1), 20, 30);
        assert!(check(&h).is_linearizable());
    }

    #[test]
    fn stale_read_after_completed_write_is_not_linearizable() {
        let mut h = History::new();
        h.complete("x", 1, Write(1), written(), 0, 10);
        h.complete("x", 2, Read, read(None), 20, 30);
        let r = check(&h);
        assert!(!r.is_linearizable(), "{r}");
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].register, "x");
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        for seen in [None, Some(1)] {
            let mut h = History::new();
            h.complete("x", 1, Write(1), written(), 0, 100);
            h.complete("x", 2, Read, read(seen), 10, 20);
            assert!(check(&h).is_linearizable(), "read {seen:?}");
        }
    }

    #[test]
    fn read_of_a_value_never_written_is_not_linearizable() {
        let mut h = History::new();
        h.complete("x", 1, Write(1), written(), 0, 100);
        h.complete("x", 2, Read, read(Some(7)), 10, 20);
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn new_old_inversion_is_not_linearizable() {
        // Classic: write(1) overlaps two sequential reads; the first sees the
        // new value, the later one the old value.
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        h.complete("x", 1, Write(1), written(), 0, 100);
        h.complete("x", 2, Read, read(Some(1)), 10, 20);
        h.complete("x", 3, Read, read(Some(0)), 30, 40);
        let r = check(&h);
        assert!(!r.is_linearizable(), "{r}");
        // Same reads the other way round are fine.
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        h.complete("x", 1, Write(1), written(), 0, 100);
        h.complete("x", 2, Read, read(Some(0)), 10, 20);
        h.complete("x", 3, Read, read(Some(1)), 30, 40);
        assert!(check(&h).is_linearizable());
    }

    #[test]
    fn two_successful_cas_on_the_same_version_is_not_linearizable() {
        // Two clients both "win" a compare-and-set from version 1: a lost
        // update, the bug a lock service must never have.
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        h.complete(
            "x",
            1,
            CompareAndSet {
                expected_version: 1,
                value: 10,
            },
            cas(true),
            0,
            50,
        );
        h.complete(
            "x",
            2,
            CompareAndSet {
                expected_version: 1,
                value: 20,
            },
            cas(true),
            5,
            55,
        );
        let r = check(&h);
        assert!(!r.is_linearizable(), "{r}");
    }

    #[test]
    fn cas_winner_and_loser_are_linearizable() {
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        h.complete(
            "x",
            1,
            CompareAndSet {
                expected_version: 1,
                value: 10,
            },
            cas(true),
            0,
            50,
        );
        h.complete(
            "x",
            2,
            CompareAndSet {
                expected_version: 1,
                value: 20,
            },
            cas(false),
            5,
            55,
        );
        h.complete("x", 3, Read, readv(Some(10), 2), 60, 70);
        assert!(check(&h).is_linearizable());
    }

    #[test]
    fn failed_cas_must_have_a_reason() {
        // A CAS that failed although nothing else could have changed the
        // version is a violation.
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        h.complete(
            "x",
            1,
            CompareAndSet {
                expected_version: 1,
                value: 10,
            },
            cas(false),
            0,
            50,
        );
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn versions_are_checked_when_reported() {
        let mut h = History::new();
        h.complete(
            "x",
            1,
            Write(5),
            RegisterOutput::Written { version: Some(1) },
            0,
            10,
        );
        h.complete(
            "x",
            1,
            Write(5),
            RegisterOutput::Written { version: Some(2) },
            20,
            30,
        );
        // Same value, but the version shows a write was lost.
        h.complete("x", 2, Read, readv(Some(5), 1), 40, 50);
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn unknown_write_may_take_effect_or_not() {
        for seen in [None, Some(1)] {
            let mut h = History::new();
            h.unknown("x", 1, Write(1), 0);
            h.complete("x", 2, Read, read(seen), 10, 20);
            h.complete("x", 2, Read, read(seen), 30, 40);
            assert!(check(&h).is_linearizable(), "{seen:?}");
        }
    }

    #[test]
    fn unknown_write_takes_effect_once_and_then_stays() {
        // Seen, then unseen again: an unknown write cannot be undone.
        let mut h = History::new();
        h.unknown("x", 1, Write(1), 0);
        h.complete("x", 2, Read, read(Some(1)), 10, 20);
        h.complete("x", 2, Read, read(None), 30, 40);
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn unknown_write_cannot_take_effect_before_its_invocation() {
        let mut h = History::new();
        h.complete("x", 2, Read, read(Some(1)), 0, 10);
        h.unknown("x", 1, Write(1), 20);
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn unknown_cas_applies_only_if_version_matches() {
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        h.unknown(
            "x",
            1,
            CompareAndSet {
                expected_version: 5,
                value: 9,
            },
            0,
        );
        h.complete("x", 2, Read, read(Some(9)), 10, 20);
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn registers_are_checked_independently() {
        let mut h = History::new();
        h.complete("a", 1, Write(1), written(), 0, 10);
        h.complete("b", 1, Write(2), written(), 0, 10);
        h.complete("a", 2, Read, read(Some(1)), 20, 30);
        h.complete("b", 2, Read, read(Some(1)), 20, 30); // b never held 1
        let r = check(&h);
        assert_eq!(r.registers, 2);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].register, "b");
    }

    #[test]
    fn many_concurrent_clients_linearizable_history_is_found() {
        // 8 clients, each writing its own value while all overlap, then reads
        // that all agree on the last one: the search must find the order with
        // the agreed value last, among 8! orders.
        let mut h = History::new();
        for c in 0..8u64 {
            h.complete("x", c, Write(c), written(), c, 1000 + c);
        }
        for c in 0..8u64 {
            h.complete("x", c, Read, read(Some(3)), 2000 + c * 10, 2005 + c * 10);
        }
        assert!(check(&h).is_linearizable());
        // And if two later sequential reads disagree, it is not.
        h.complete("x", 1, Read, read(Some(4)), 3000, 3010);
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn long_sequential_counter_history_is_fast() {
        // A few thousand CAS increments by 4 clients with overlapping
        // intervals: checking must stay fast thanks to the cache.
        let mut h = History::new();
        h.initial("x", Some(0), 1);
        let mut t = 0;
        for (version, i) in (1..).zip(0..2000u64) {
            let client = i % 4;
            // Winner.
            h.complete(
                "x",
                client,
                CompareAndSet {
                    expected_version: version,
                    value: i,
                },
                cas(true),
                t,
                t + 15,
            );
            // A concurrent loser that expected the same version.
            h.complete(
                "x",
                client + 4,
                CompareAndSet {
                    expected_version: version,
                    value: 99_999,
                },
                cas(false),
                t + 1,
                t + 20,
            );
            t += 10;
        }
        let started = Instant::now();
        let r = check(&h);
        assert!(r.is_linearizable(), "{r}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn budget_exhaustion_is_reported_as_undecided_not_as_ok() {
        // Many concurrent unknown writes of distinct values and a read that
        // sees a value never written: the search must try many orders.
        let mut h = History::new();
        for c in 0..20u64 {
            h.unknown("x", c, Write(c), 0);
        }
        h.complete("x", 99, Read, read(Some(1000)), 1, 2);
        let r = h.check(Duration::from_millis(0));
        assert!(!r.is_linearizable());
    }
}
