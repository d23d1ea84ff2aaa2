//! The checks of a recorded run (see [`check_run`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use super::record::{fmt_op, nanos, reg_key, Applied, EphObs, LeaseEnd, Proto, Recorded, RegOp};
use crate::linearizability::{RegisterInput, RegisterOutput};

/// Search budget per register.
pub const CHECK_BUDGET: Duration = Duration::from_secs(30);

/// Runs every check on a recording. `Ok` carries a one-line summary.
///
/// 1. The register history is linearizable (Wing-Gong search per register).
/// 2. Applied writes: nothing acknowledged lost, nothing else applied, every
///    member's history the same.
/// 3. No two ZooKeeper lock holders at once.
/// 4. Ephemerals vanish only after their session may have expired.
/// 5. Session order: no client sees a register at an older revision (zxid)
///    after a newer one, across reconnects to other members.
/// 6. etcd watches: every watcher got the applied history in revision order,
///    with no gap and no duplicate, resumptions included.
/// 7. etcd leases: a key bound to a lease never vanishes while the lease
///    cannot have expired, is gone after a revoke, and expires once its
///    keepalives stop.
/// 8. ZooKeeper multi: both of its writes applied at one revision, or
///    neither.
/// 9. ZooKeeper watch order: a client never reads a change it set a watch
///    for before it gets the event.
pub fn check_run(rec: &Recorded) -> Result<String, Vec<String>> {
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

    // 3. Mutual exclusion, of each lock.
    for (holds, lock) in [(&rec.holds, "ZooKeeper"), (&rec.etcd_holds, "etcd")] {
        for (i, a) in holds.iter().enumerate() {
            for b in &holds[i + 1..] {
                if a.contender != b.contender && a.start < b.end && b.start < a.end {
                    errors.push(format!("two {lock} lock holders at once: {a:?} and {b:?}"));
                }
            }
        }
    }

    // 4. Ephemerals vanish only after session expiry.
    for o in &rec.owners {
        // A leader's lease-clock jump may bring an abandoned session's
        // expiry forward by as much (live sessions ping far more often).
        let alive_until = if o.abandoned {
            o.alive_until
                .saturating_sub(rec.jump_allowance(o.created, o.alive_until))
        } else {
            o.alive_until
        };
        let mut gone_at: Option<&EphObs> = None;
        let mut obs: Vec<&EphObs> = rec.observations.iter().collect();
        obs.sort_by_key(|x| x.invoked);
        for x in obs {
            let present = x.present.contains(&o.path);
            if x.invoked >= o.created && x.completed <= alive_until && !present {
                errors.push(format!(
                    "ephemeral {} missing at {:.3}s..{:.3}s while its session was alive (until {:.3}s)",
                    o.path,
                    x.invoked as f64 / 1e9,
                    x.completed as f64 / 1e9,
                    alive_until as f64 / 1e9
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

    // 5. Session order: per client and register, the revisions it saw
    //    (reads' mod revisions, acknowledged writes' revisions) never go
    //    back, in completion order (a ZooKeeper client never sees an older
    //    zxid after a newer one, D3, D8).
    let mut by_client: BTreeMap<(u64, usize), Vec<&RegOp>> = BTreeMap::new();
    for op in rec
        .ops
        .iter()
        .filter(|o| o.completed.is_some() && o.client < 900)
    {
        if op.revision.is_some() && (op.acked().is_some() || op.input == RegisterInput::Read) {
            by_client
                .entry((op.client, op.register))
                .or_default()
                .push(op);
        }
    }
    let mut session_checked = 0usize;
    for ops in by_client.values_mut() {
        ops.sort_by_key(|o| o.completed);
        for w in ops.windows(2) {
            session_checked += 1;
            if w[1].revision < w[0].revision && w[1].invoked >= w[0].completed.unwrap_or(0) {
                errors.push(format!(
                    "client went back in time: {} after {}",
                    fmt_op(w[1]),
                    fmt_op(w[0])
                ));
            }
        }
    }

    // 6. etcd watches against the first member's applied history.
    let mut watch_events = 0usize;
    if let Some((member, regs)) = rec.applied.first() {
        let mut expected: Vec<(i64, usize, i64, Option<u64>)> = regs
            .iter()
            .enumerate()
            .flat_map(|(r, evs)| evs.iter().map(move |e| (e.revision, r, e.version, e.value)))
            .collect();
        expected.sort();
        for w in &rec.watches {
            watch_events += w.events.len();
            // One revision may change two registers (a ZooKeeper multi):
            // revisions never go back, no (revision, register) comes twice,
            // and within a revision the order of keys is the transaction's.
            for pair in w.events.windows(2) {
                let back = pair[1].0 < pair[0].0;
                let twice = pair[1].0 == pair[0].0 && pair[1].1 == pair[0].1;
                if back || twice {
                    errors.push(format!(
                        "watcher {}: revision {} after {} (out of order or duplicate)",
                        w.client, pair[1].0, pair[0].0
                    ));
                }
            }
            let mut got = w.events.clone();
            got.sort_by_key(|e| (e.0, e.1));
            let n = got.len().min(expected.len());
            if w.events.len() > expected.len() {
                errors.push(format!(
                    "watcher {}: {} events, member {member} applied only {}",
                    w.client,
                    w.events.len(),
                    expected.len()
                ));
            }
            if let Some(i) = (0..n).find(|&i| got[i] != expected[i]) {
                errors.push(format!(
                    "watcher {}: event {i} is {:?}, member {member} applied {:?} (gap, or a resumed watch that did not get exactly the missed events)",
                    w.client, got[i], expected[i]
                ));
            }
        }
    }

    // 7. etcd leases: a key bound to a lease is present while the lease
    //    cannot have expired, gone once a revoke completed, never back once
    //    gone, and gone in the end if its keepalives stopped.
    let (leases_checked, lease_errors) = check_leases(rec);
    errors.extend(lease_errors);

    // 8. ZooKeeper multi: both writes applied at one revision, or neither.
    errors.extend(check_multis(rec));

    // 9. ZooKeeper watch order: no read shows a change before the watch
    //    event for it, and a read after the event shows the change.
    for w in &rec.watch_orders {
        if let Some(v) = w.read_version {
            if !w.event_before_read {
                errors.push(format!(
                    "ZooKeeper client {} read {} at version {v} before the watch event it set at version {} (at {:.3}s)",
                    w.client,
                    reg_key(w.register),
                    w.version,
                    w.at as f64 / 1e9
                ));
            }
        }
        if let Some(v) = w.read_after_event {
            if v <= w.version {
                errors.push(format!(
                    "ZooKeeper client {} got the watch event on {} (set at version {}) but then read version {v} (at {:.3}s)",
                    w.client,
                    reg_key(w.register),
                    w.version,
                    w.at as f64 / 1e9
                ));
            }
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
                let jumps = rec.jump_allowance(o.created, o.alive_until);
                Some(format!(
                    "{} gone {:+.2}s after its expiry was allowed{}",
                    o.path,
                    (gone as f64 - o.alive_until as f64) / 1e9,
                    if jumps > 0 {
                        format!(
                            " (leader lease-clock jumps allowed {:.0}s earlier)",
                            jumps as f64 / 1e9
                        )
                    } else {
                        String::new()
                    }
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
             ({} ended by a lost connection), {} ephemerals over {} observations ({}); \
             {session_checked} session-order pairs; {} watchers, {watch_events} watch events, {} resumptions; \
             {leases_checked}; {} etcd lock holds; {} ZooKeeper multis ({} committed, {} failed their check); \
             {} ZooKeeper watch-then-read rounds ({} ended by the event, {} by a read that found the event delivered)",
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
            expiries.join(", "),
            rec.watches.len(),
            rec.watches.iter().map(|w| w.resumes).sum::<usize>(),
            rec.etcd_holds.len(),
            rec.multis.len(),
            rec.multis.iter().filter(|m| m.ok == Some(true)).count(),
            rec.multis.iter().filter(|m| m.ok == Some(false)).count(),
            rec.watch_orders.len(),
            rec.watch_orders
                .iter()
                .filter(|w| w.read_after_event.is_some())
                .count(),
            rec.watch_orders
                .iter()
                .filter(|w| w.read_version.is_some())
                .count(),
        ))
    } else {
        Err(errors)
    }
}

/// Check 7 (leases); returns a summary and the problems.
fn check_leases(rec: &Recorded) -> (String, Vec<String>) {
    let mut errors = Vec::new();
    let mut obs: Vec<&EphObs> = rec.lease_observations.iter().collect();
    obs.sort_by_key(|x| x.invoked);
    let mut checked_present = 0usize;
    let mut expired = 0usize;
    let mut revoked = 0usize;
    for l in &rec.leases {
        let alive_until = l.alive_until(rec.jump_allowance(l.renewed, l.renewed + nanos(l.ttl)));
        let what = format!("key {} of lease {:x} (client {})", l.key, l.lease, l.client);
        if let Some(gone) = l.reported_gone {
            if gone < alive_until {
                errors.push(format!(
                    "{what}: a keepalive at {:.3}s said the lease is gone, but it was renewed at {:.3}s (alive until {:.3}s)",
                    gone as f64 / 1e9,
                    l.renewed as f64 / 1e9,
                    alive_until as f64 / 1e9
                ));
            }
        }
        let mut gone_at: Option<&EphObs> = None;
        for x in &obs {
            let present = x.present.contains(&l.key);
            if let Some(bound) = l.bound {
                if x.invoked >= bound && x.completed <= alive_until {
                    checked_present += 1;
                    if !present {
                        errors.push(format!(
                            "{what}: missing at {:.3}s..{:.3}s while its lease was alive (until {:.3}s)",
                            x.invoked as f64 / 1e9,
                            x.completed as f64 / 1e9,
                            alive_until as f64 / 1e9
                        ));
                    }
                }
            }
            if let LeaseEnd::Revoked { completed, .. } = l.end {
                if x.invoked > completed && present {
                    errors.push(format!(
                        "{what}: present at {:.3}s after its lease was revoked at {:.3}s",
                        x.invoked as f64 / 1e9,
                        completed as f64 / 1e9
                    ));
                }
            }
            let after_bind = l.bound.is_some_and(|b| x.invoked >= b);
            if after_bind && !present && gone_at.is_none() {
                gone_at = Some(x);
            }
            if let Some(g) = gone_at {
                if present && x.invoked > g.completed {
                    errors.push(format!(
                        "{what}: came back at {:.3}s after it was gone at {:.3}s",
                        x.invoked as f64 / 1e9,
                        g.completed as f64 / 1e9
                    ));
                }
            }
        }
        match l.end {
            LeaseEnd::Abandoned => {
                expired += 1;
                let last = obs.last();
                if last.is_some_and(|x| x.present.contains(&l.key)) {
                    errors.push(format!(
                        "{what}: its keepalives stopped (last renewal {:.3}s) but it never expired",
                        l.renewed as f64 / 1e9
                    ));
                }
            }
            LeaseEnd::Revoked { .. } => revoked += 1,
            LeaseEnd::Kept => {}
        }
    }
    let summary = format!(
        "{} etcd leases ({revoked} revoked, {expired} left to expire) over {} observations ({checked_present} presence checks)",
        rec.leases.len(),
        rec.lease_observations.len()
    );
    (summary, errors)
}

/// Check 8 (ZooKeeper multi atomicity), on every member's history.
fn check_multis(rec: &Recorded) -> Vec<String> {
    let mut errors = Vec::new();
    for (member, regs) in &rec.applied {
        let at: HashMap<(usize, u64), i64> = regs
            .iter()
            .enumerate()
            .flat_map(|(r, evs)| {
                evs.iter()
                    .filter_map(move |e| e.value.map(|v| ((r, v), e.revision)))
            })
            .collect();
        for m in &rec.multis {
            let (a, b) = (at.get(&m.a), at.get(&m.b));
            let fine = match (a, b) {
                (Some(x), Some(y)) => x == y && m.ok != Some(false),
                (None, None) => m.ok != Some(true),
                _ => false,
            };
            if !fine {
                errors.push(format!(
                    "member {member}: ZooKeeper multi of client {} (outcome {:?}) not atomic: {} = {} applied at {a:?}, {} = {} applied at {b:?}",
                    m.client,
                    m.ok,
                    reg_key(m.a.0),
                    m.a.1,
                    reg_key(m.b.0),
                    m.b.1
                ));
            }
        }
    }
    errors
}
