//! Fault-checked linearizability: a 3-member janus cluster on loopback,
//! concurrent etcd and ZooKeeper clients doing reads, writes and
//! compare-and-set on a few registers, ZooKeeper lock contenders, sessions
//! that keep or abandon an ephemeral, and etcd watchers, while members are
//! killed (-9) and restarted and stopped (SIGSTOP) and continued. The
//! workload and the checks live in `janus_conformance::chaos` (shared with
//! the `janus-chaos` campaign); this test runs four faults and also checks
//! that the checks reject corrupted copies of its own history.
//!
//! The seed (operation mix) is printed; rerun with `JANUS_LIN_SEED=<seed>`.
//! On failure the whole history is written next to the test binaries
//! (`CARGO_TARGET_TMPDIR`) and its path printed.

use std::time::{Duration, Instant};

use janus_conformance::chaos::check::check_run;
use janus_conformance::chaos::record::{Applied, EphObs, EphOwner, Hold, Proto, Recorded, RegOp};
use janus_conformance::chaos::workload::{leader_index, Workload, WorkloadConfig};
use janus_conformance::cluster::Cluster;
use janus_conformance::linearizability::{RegisterInput, RegisterOutput};

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

/// Two etcd lock holds made to overlap.
fn corrupt_overlap_etcd_holds(rec: &Recorded) -> Option<Recorded> {
    let a = rec.etcd_holds.iter().find(|h| h.end > h.start)?.clone();
    let j = rec
        .etcd_holds
        .iter()
        .position(|h| h.contender != a.contender)?;
    let mut c = rec.clone();
    c.etcd_holds[j].start = a.start;
    c.etcd_holds[j].end = a.end;
    Some(c)
}

/// A lease's key removed from an observation made while the lease was
/// certainly alive.
fn corrupt_lease_key(rec: &Recorded) -> Option<Recorded> {
    for l in &rec.leases {
        let Some(bound) = l.bound else { continue };
        let until = l.alive_until(0);
        if let Some(i) = rec
            .lease_observations
            .iter()
            .position(|x| x.invoked >= bound && x.completed <= until)
        {
            let mut c = rec.clone();
            c.lease_observations[i].present.remove(&l.key);
            return Some(c);
        }
    }
    None
}

/// One write of a committed multi removed from every member's history
/// (and its acknowledgement forgotten, so only atomicity can catch it).
fn corrupt_multi(rec: &Recorded) -> Option<Recorded> {
    let m = rec.multis.iter().find(|m| m.ok == Some(true))?.clone();
    let mut c = rec.clone();
    for (_, regs) in &mut c.applied {
        let events = &mut regs[m.b.0];
        let at = events.iter().position(|e| e.value == Some(m.b.1))?;
        events.remove(at);
        // Keep the versions consecutive after the removed one.
        for e in events.iter_mut().skip(at) {
            e.version -= 1;
        }
    }
    c.ops.retain(|o| o.written_value() != Some(m.b.1));
    Some(c)
}

/// A watch-then-read round made to show the read before the event.
fn corrupt_watch_order(rec: &Recorded) -> Option<Recorded> {
    let i = rec
        .watch_orders
        .iter()
        .position(|w| w.read_version.is_some() || w.read_after_event.is_some())?;
    let mut c = rec.clone();
    let w = &mut c.watch_orders[i];
    w.read_version = Some(w.version + 1);
    w.read_after_event = None;
    w.event_before_read = false;
    Some(c)
}

/// Asserts that the first `cases` corruptions (of 8: the last four need
/// etcd lock holds, leases, multis and watch-order rounds, which only a
/// live run records) are rejected, each for the expected reason. Returns
/// how many were tried.
fn assert_corruptions_rejected(rec: &Recorded, cases: usize) -> usize {
    let take = cases;
    type Corrupt = fn(&Recorded) -> Option<Recorded>;
    let cases: [(&str, Corrupt, &str); 8] = [
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
        (
            "overlapping etcd lock holds",
            corrupt_overlap_etcd_holds,
            "two etcd lock holders",
        ),
        (
            "vanished lease key",
            corrupt_lease_key,
            "while its lease was alive",
        ),
        ("half-applied multi", corrupt_multi, "not atomic"),
        (
            "read ahead of its watch event",
            corrupt_watch_order,
            "before the watch event",
        ),
    ];
    let mut tried = 0;
    for (name, corrupt, expect) in cases.into_iter().take(take) {
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
        watches: vec![],
        ..Recorded::default()
    }
}

#[test]
fn checking_path_accepts_a_good_recording_and_rejects_corrupted_ones() {
    let rec = synthetic();
    if let Err(e) = check_run(&rec) {
        panic!("the synthetic recording is valid: {e:#?}");
    }
    assert_eq!(assert_corruptions_rejected(&rec, 4), 4);

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
    let cfg = WorkloadConfig {
        seed,
        registers: 5,
        etcd_clients: 3,
        zk_clients: 3,
        lock_contenders: 3,
        watchers: 2,
        lease_clients: 2,
        etcd_lock_contenders: 2,
        watch_order_clients: 1,
    };
    let mut w = Workload::start(&c, &cfg).await;

    let sleep = |s: f64| tokio::time::sleep(Duration::from_secs_f64(s));
    sleep(3.0).await;
    let l = leader_index(&c, Duration::from_secs(20)).await;
    c.kill(l);
    w.fault(format!("kill -9 leader {}", c.members[l].name));
    sleep(3.0).await;
    tokio::task::block_in_place(|| c.restart(l));

    let l = leader_index(&c, Duration::from_secs(20)).await;
    sleep(1.0).await;
    c.pause(l);
    w.fault(format!("SIGSTOP leader {}", c.members[l].name));
    sleep(3.0).await;
    c.resume(l);

    w.abandon_one(&c);
    sleep(2.0).await;
    let l = leader_index(&c, Duration::from_secs(20)).await;
    c.kill(l);
    w.fault(format!("kill -9 leader {}", c.members[l].name));
    sleep(2.5).await;
    tokio::task::block_in_place(|| c.restart(l));

    let l = leader_index(&c, Duration::from_secs(20)).await;
    sleep(1.0).await;
    let f = (l + 1) % c.members.len();
    c.pause(f);
    w.fault(format!("SIGSTOP follower {}", c.members[f].name));
    sleep(2.5).await;
    c.resume(f);
    sleep(2.0).await;

    let rec = w.finish(&c).await;
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
    assert!(
        rec.watches.iter().all(|w| w.events.len() > 30),
        "a watcher saw too little: {:?}",
        rec.watches
            .iter()
            .map(|w| w.events.len())
            .collect::<Vec<_>>()
    );

    // The checks can fail: the same path rejects this very history corrupted.
    let mut tried = assert_corruptions_rejected(&rec, 8);
    // A watcher that missed one event (a gap, or a resumption that skipped
    // one), and one that got an event twice.
    let longest = (0..rec.watches.len())
        .max_by_key(|&i| rec.watches[i].events.len())
        .expect("watchers");
    let mut bad = rec.clone();
    bad.watches[longest].events.remove(10);
    let errs = check_run(&bad).expect_err("a watch gap must be rejected");
    assert!(errs.iter().any(|e| e.contains("gap")), "{errs:#?}");
    let mut bad = rec.clone();
    let dup = bad.watches[longest].events[10];
    bad.watches[longest].events.insert(10, dup);
    let errs = check_run(&bad).expect_err("a duplicate watch event must be rejected");
    assert!(errs.iter().any(|e| e.contains("duplicate")), "{errs:#?}");
    tried += 2;
    eprintln!(
        "self-check: {tried} corrupted copies of this history rejected; total {:?}",
        run_started.elapsed()
    );
}
