//! Fault scenarios on a deterministic, seeded in-process cluster
//! (`janus_core::sim`): real raft loops and fjall data dirs, simulated
//! network and clock. Each scenario runs for every seed of [`seeds`]; a
//! failure names its seed, and `JANUS_SIM_SEED=<seed> cargo test -p
//! janus-core --test sim` replays exactly that run.
//!
//! Invariants checked: at most one leader per term (every step); no
//! acknowledged write lost (every acked put is on every member, at the
//! revision it was acked with); members converge (same applied index,
//! revision and HashKV); a minority partition acknowledges nothing proposed
//! on it; and one seed gives one trace.

use std::collections::BTreeSet;

use janus_core::sim::{Outcome, Sim, SimOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `JANUS_SIM_SEED=<seed>` replays one seed; `JANUS_SIM_SEEDS=<n>` runs
/// seeds 1..=n (a longer soak); otherwise a fixed list that keeps this file
/// under a minute in debug builds.
fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("JANUS_SIM_SEED") {
        return vec![s.trim().parse().expect("JANUS_SIM_SEED must be a u64")];
    }
    if let Ok(n) = std::env::var("JANUS_SIM_SEEDS") {
        let n: u64 = n.trim().parse().expect("JANUS_SIM_SEEDS must be a u64");
        return (1..=n).collect();
    }
    vec![1, 2, 3, 4]
}

/// Names the seed of any panic in its scope, including ones raised inside
/// the members rather than by a [`check!`].
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "failing seed: {} (rerun with JANUS_SIM_SEED={})",
                self.0, self.0
            );
        }
    }
}

/// Data dirs on tmpfs when there is one: every raft Ready ends with an
/// fsync, which costs nothing there.
fn root() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("janus-sim").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

macro_rules! check {
    ($sim:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("{}\n{}", format!($($arg)+), $sim.context());
        }
    };
}

/// Client load: a put with a fresh key every `every` steps, on a member
/// drawn from `on` (running ones only). Returns the tickets.
struct Load {
    rng: StdRng,
    next: u64,
}

impl Load {
    fn new(seed: u64) -> Load {
        Load {
            rng: StdRng::seed_from_u64(seed ^ 0x6a61_6e75_735f_6c64),
            next: 0,
        }
    }

    fn run(&mut self, sim: &mut Sim, steps: u64, every: u64, on: &[u64]) -> Vec<u64> {
        let mut tickets = Vec::new();
        for i in 0..steps {
            if i % every == 0 {
                let live: Vec<u64> = on.iter().copied().filter(|m| sim.is_running(*m)).collect();
                if !live.is_empty() {
                    let m = live[self.rng.gen_range(0..live.len())];
                    self.next += 1;
                    let key = format!("/k/{:06}", self.next);
                    let value = format!("v{}@{}", self.next, sim.now());
                    tickets.push(sim.propose_put(m, key.as_bytes(), value.as_bytes()));
                }
            }
            sim.step();
        }
        tickets
    }
}

fn acked(sim: &Sim, tickets: &[u64]) -> usize {
    tickets
        .iter()
        .filter(|t| matches!(sim.ticket(**t).outcome, Outcome::Acked(_)))
        .count()
}

/// The end-of-scenario invariants over the members in `ids`.
fn check_final(sim: &mut Sim, ids: &[u64]) {
    let digest = sim.wait_converged(ids, 20_000);
    check!(sim, digest.is_ok(), "{}", digest.unwrap_err());
    let lost = sim.lost_writes(ids);
    check!(sim, lost.is_empty(), "acknowledged writes lost: {lost:#?}");
    let twice = sim.applied_twice(ids);
    check!(sim, twice.is_empty(), "commands applied twice: {twice:#?}");
    check!(
        sim,
        sim.violations().is_empty(),
        "safety violations: {:?}",
        sim.violations()
    );
    let any_acked = sim
        .tickets()
        .any(|(_, t)| matches!(t.outcome, Outcome::Acked(_)));
    check!(sim, any_acked, "no write was ever acknowledged");
}

/// Steps until a leader other than `old` is known.
fn wait_new_leader(sim: &mut Sim, old: u64, max: u64) -> u64 {
    let mut found = None;
    for _ in 0..max {
        if let Some(l) = sim.leader() {
            if l != old {
                found = Some(l);
                break;
            }
        }
        sim.step();
    }
    check!(sim, found.is_some(), "no new leader after {old:x}");
    found.unwrap()
}

/// Random loss (10%), duplication and delays up to 30 ms (so messages
/// overtake each other) under load; then a clean network.
fn lossy(seed: u64, steps: u64) -> (Sim, tempfile::TempDir) {
    let dir = root();
    let mut sim = Sim::new(
        seed,
        dir.path(),
        SimOptions {
            members: 5,
            drop: 0.10,
            duplicate: 0.05,
            max_delay_ms: 30,
            ..Default::default()
        },
    );
    let mut load = Load::new(seed);
    sim.wait_leader(20_000);
    let all = sim.all();
    let t = load.run(&mut sim, steps, 10, &all);
    sim.set_drop(0.0);
    sim.set_duplicate(0.0);
    sim.set_max_delay(5);
    sim.run(300);
    check!(
        sim,
        acked(&sim, &t) > 0,
        "nothing acknowledged under 10% loss"
    );
    check_final(&mut sim, &all);
    (sim, dir)
}

#[test]
fn lossy_reordering_network_converges() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let (sim, _dir) = lossy(seed, 3000);
        let s = sim.stats();
        check!(
            sim,
            s.dropped > 0 && s.duplicated > 0,
            "faults were not injected: {s:?}"
        );
    }
}

/// Every forwarded proposal has a good chance of reaching the leader twice
/// (a transport that retries); each must still apply once.
#[test]
fn duplicated_forwarded_proposals_apply_once() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 3,
                duplicate: 0.3,
                max_delay_ms: 20,
                ..Default::default()
            },
        );
        let mut load = Load::new(seed);
        let leader = sim.wait_leader(20_000);
        let followers: Vec<u64> = sim.all().into_iter().filter(|m| *m != leader).collect();
        let t = load.run(&mut sim, 2000, 10, &followers);
        sim.set_duplicate(0.0);
        sim.run(300);
        let s = sim.stats();
        check!(
            sim,
            s.duplicated_proposals > 0,
            "no forwarded proposal was duplicated: {s:?}"
        );
        check!(sim, acked(&sim, &t) > 0, "nothing acknowledged");
        let all = sim.all();
        check_final(&mut sim, &all);
    }
}

#[test]
fn same_seed_same_trace() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let (a, _da) = lossy(seed, 1000);
        let (b, _db) = lossy(seed, 1000);
        check!(
            a,
            a.trace_hash() == b.trace_hash() && a.stats() == b.stats(),
            "seed {seed} replayed differently: {} {:?} vs {} {:?}",
            a.trace_hash(),
            a.stats(),
            b.trace_hash(),
            b.stats()
        );
        // Printed so that two processes (or machines) can be compared too.
        eprintln!("seed {seed}: trace {}", a.trace_hash());
        let (c, _dc) = lossy(seed + 1000, 1000);
        check!(
            a,
            a.trace_hash() != c.trace_hash(),
            "seeds {seed} and {} gave the same trace",
            seed + 1000
        );
    }
}

/// Partitions `minority` from the rest for `steps` under load on both
/// sides: nothing proposed on the minority is acknowledged, the majority
/// elects a leader (if it lost its own) and keeps acknowledging; after
/// healing everything converges.
fn partition_scenario(sim: &mut Sim, minority: &[u64], steps: u64) {
    let seed = sim.seed();
    let mut load = Load::new(seed);
    let all = sim.all();
    let majority: Vec<u64> = all
        .iter()
        .copied()
        .filter(|m| !minority.contains(m))
        .collect();
    load.run(sim, 300, 10, &all);
    let old = sim.wait_leader(20_000);
    sim.partition(&[minority, &majority]);
    let mut minority_tickets = Vec::new();
    let mut majority_tickets = Vec::new();
    for _ in 0..steps / 50 {
        minority_tickets.extend(load.run(sim, 25, 5, minority));
        majority_tickets.extend(load.run(sim, 25, 5, &majority));
        let acked_minority: Vec<u64> = minority_tickets
            .iter()
            .copied()
            .filter(|t| matches!(sim.ticket(*t).outcome, Outcome::Acked(_)))
            .collect();
        check!(
            sim,
            acked_minority.is_empty(),
            "the minority {minority:x?} acknowledged writes {acked_minority:?}"
        );
    }
    // The majority has a leader of its own and made progress.
    let leader = sim.leader();
    check!(
        sim,
        leader.is_some_and(|l| majority.contains(&l)),
        "majority {majority:x?} has no leader (leader {leader:x?}, old {old:x})"
    );
    check!(
        sim,
        acked(sim, &majority_tickets) > 0,
        "majority {majority:x?} acknowledged nothing while partitioned"
    );
    // No minority member still acts as leader: check-quorum made a deposed
    // leader step down (it refuses writes instead of hanging them).
    for m in minority {
        let role = sim.role(*m);
        check!(
            sim,
            !matches!(role, Some((raft::StateRole::Leader, _))),
            "minority member {m:x} still leads after {steps} ms without a quorum: {role:?}"
        );
    }
    sim.heal();
    load.run(sim, 500, 10, &all);
    check_final(sim, &all);
    let late: Vec<u64> = minority_tickets
        .iter()
        .copied()
        .filter(|t| matches!(sim.ticket(*t).outcome, Outcome::Acked(_)))
        .collect();
    check!(
        sim,
        late.is_empty(),
        "writes proposed on the minority were acknowledged after healing: {late:?}"
    );
}

#[test]
fn isolated_leader_stops_acknowledging_and_majority_continues() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 5,
                drop: 0.02,
                max_delay_ms: 10,
                ..Default::default()
            },
        );
        let leader = sim.wait_leader(20_000);
        partition_scenario(&mut sim, &[leader], 2000);
    }
}

#[test]
fn split_two_three_minority_with_leader() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 5,
                drop: 0.02,
                max_delay_ms: 10,
                ..Default::default()
            },
        );
        let leader = sim.wait_leader(20_000);
        let other = sim.all().into_iter().find(|m| *m != leader).unwrap();
        partition_scenario(&mut sim, &[leader, other], 2000);
    }
}

#[test]
fn crash_and_restart_from_own_data_dir() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 3,
                drop: 0.05,
                max_delay_ms: 10,
                ..Default::default()
            },
        );
        let mut load = Load::new(seed);
        let all = sim.all();
        let leader = sim.wait_leader(20_000);
        load.run(&mut sim, 500, 5, &all);
        // A follower goes down and comes back behind.
        let follower = all.iter().copied().find(|m| *m != leader).unwrap();
        sim.crash(follower);
        load.run(&mut sim, 800, 5, &all);
        sim.restart(follower);
        load.run(&mut sim, 300, 5, &all);
        // The leader goes down: the others elect a new one and continue.
        let leader = sim.wait_leader(20_000);
        sim.crash(leader);
        let new = wait_new_leader(&mut sim, leader, 20_000);
        check!(sim, new != leader, "crashed leader still leads");
        let t = load.run(&mut sim, 800, 5, &all);
        check!(
            sim,
            acked(&sim, &t) > 0,
            "no write acknowledged after the leader crashed"
        );
        sim.restart(leader);
        // Everyone down at once, then back (a full-cluster restart).
        load.run(&mut sim, 300, 5, &all);
        for m in &all {
            sim.crash(*m);
        }
        for m in &all {
            sim.restart(*m);
        }
        sim.wait_leader(20_000);
        load.run(&mut sim, 300, 5, &all);
        check_final(&mut sim, &all);
    }
}

#[test]
fn wiped_member_removed_and_added_back_catches_up_by_snapshot() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 3,
                drop: 0.02,
                max_delay_ms: 10,
                log_keep: 20,
                ..Default::default()
            },
        );
        let mut load = Load::new(seed);
        let all = sim.all();
        let leader = sim.wait_leader(20_000);
        load.run(&mut sim, 1000, 5, &all);
        let victim = all.iter().copied().find(|m| *m != leader).unwrap();
        // The member's disk is lost: it is removed, wiped, and a fresh
        // member with an empty data dir is added in its place (etcd's
        // procedure: a new member id).
        sim.crash(victim);
        sim.wipe(victim);
        let leader = sim.wait_leader(20_000);
        let r = sim.remove_member(leader, victim, 20_000);
        check!(sim, r.is_ok(), "remove {victim:x}: {r:?}");
        let rest: Vec<u64> = all.iter().copied().filter(|m| *m != victim).collect();
        load.run(&mut sim, 300, 5, &rest);
        let before = sim.stats().snapshots_delivered;
        let leader = sim.wait_leader(20_000);
        let added = sim.add_member(leader, "m3b", 20_000);
        check!(sim, added.is_ok(), "add back: {added:?}");
        let added = added.unwrap();
        let mut now: Vec<u64> = rest.clone();
        now.push(added);
        load.run(&mut sim, 1500, 5, &now);
        check!(
            sim,
            sim.stats().snapshots_delivered > before,
            "the new member was not caught up by a snapshot"
        );
        check_final(&mut sim, &now);
        let mut want: Vec<u64> = now.clone();
        want.sort_unstable();
        for m in &now {
            let ids = sim.member_ids(*m);
            check!(
                sim,
                ids == want,
                "member {m:x} has member table {ids:x?}, want {want:x?}"
            );
        }
        // A crash of the new member right after catching up loses nothing.
        sim.crash(added);
        sim.restart(added);
        load.run(&mut sim, 300, 5, &now);
        check_final(&mut sim, &now);
        let gone: BTreeSet<u64> = [victim].into();
        check!(
            sim,
            !sim.member_ids(added).iter().any(|m| gone.contains(m)),
            "removed member still listed"
        );
    }
}

#[test]
fn leader_transfer_under_load() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 3,
                drop: 0.02,
                max_delay_ms: 10,
                ..Default::default()
            },
        );
        let mut load = Load::new(seed);
        let all = sim.all();
        let leader = sim.wait_leader(20_000);
        load.run(&mut sim, 500, 5, &all);
        let target = all.iter().copied().rev().find(|m| *m != leader).unwrap();
        let mut moved = false;
        for _attempt in 0..5 {
            sim.transfer_leader(target);
            for _ in 0..40 {
                load.run(&mut sim, 25, 5, &all);
                if sim.leader() == Some(target) {
                    moved = true;
                    break;
                }
            }
            if moved {
                break;
            }
        }
        check!(sim, moved, "leadership did not move to {target:x}");
        let t = load.run(&mut sim, 500, 5, &all);
        check!(
            sim,
            acked(&sim, &t) > 0,
            "no write acknowledged after the transfer"
        );
        check_final(&mut sim, &all);
    }
}

/// The leader's own log write is much slower than its followers' (a slow
/// disk under the leader): it replicates before its sync, followers'
/// acknowledgements commit entries, the leader applies them once its own
/// sync lands. Then the slow leader crashes with appends unsynced (they are
/// lost with it), the others continue, and it comes back and catches up.
/// Every acknowledged write survives and the members converge.
#[test]
fn leader_log_write_slower_than_followers() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let dir = root();
        let mut sim = Sim::new(
            seed,
            dir.path(),
            SimOptions {
                members: 3,
                max_delay_ms: 3,
                ..Default::default()
            },
        );
        let mut load = Load::new(seed);
        let all = sim.all();
        let leader = sim.wait_leader(20_000);
        sim.set_log_write_ms(leader, 40);
        for m in all.iter().filter(|m| **m != leader) {
            sim.set_log_write_ms(*m, 2);
        }
        let t = load.run(&mut sim, 1500, 3, &all);
        check!(
            sim,
            acked(&sim, &t) > 0,
            "nothing acknowledged with a slow leader disk"
        );
        check!(
            sim,
            sim.leader() == Some(leader),
            "a slow disk alone cost the leadership"
        );
        sim.crash(leader);
        let new = wait_new_leader(&mut sim, leader, 20_000);
        let t = load.run(&mut sim, 800, 3, &all);
        check!(
            sim,
            acked(&sim, &t) > 0,
            "nothing acknowledged after the slow leader crashed ({new:x} leads)"
        );
        sim.restart(leader);
        load.run(&mut sim, 800, 3, &all);
        check_final(&mut sim, &all);
    }
}
