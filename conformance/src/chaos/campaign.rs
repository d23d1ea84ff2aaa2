//! The `janus-chaos` campaign: a cluster of real janus processes, the mixed
//! workload of [`super::workload`], faults drawn from a seeded schedule
//! until both the operation and the fault targets are met, then every check
//! of [`super::check`] and a report.
//!
//! Faults (each shorter than the ZooKeeper session timeout, D9, so no
//! session may expire): kill -9 and restart at once on the same ports
//! (leader favoured), SIGSTOP/SIGCONT (leader favoured), and, when members
//! run in network namespaces: majority/minority partition, isolated leader,
//! bridge (two sides that only one member hears both of), one-way loss
//! (the leader's packets to the others dropped); and membership change
//! under load: a follower removed, its data dir wiped, added back as a
//! learner, caught up by snapshot and promoted; and clock jumps through
//! janus's test-only hook (`JANUS_TEST_CLOCK_JUMP_FILE`, see
//! [`crate::cluster::Member::jump_clocks`]): the leader's wall clock an hour
//! forward or back (leases and sessions run on monotonic time: no effect),
//! a follower's lease clock an hour forward (followers expire nothing: no
//! effect), the leader's lease clock [`LEADER_JUMP`] forward (the "leader
//! paused" case: a lease or session may end that much early, recorded so
//! the checks allow exactly that). After each fault is
//! healed, its recovery time is how long until every running member agrees
//! on a leader and a write through a fresh client is acknowledged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, MemberAddOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::check::check_run;
use super::netns::Net;
use super::record::{Proto, Recorded};
use super::workload::{agreed_leader, status_of, Workload, WorkloadConfig};
use crate::cluster::{Cluster, ClusterOptions};

/// How far a leader's lease clock jumps: well under what a kept-alive
/// lease or session has left (TTL 10 s, renewed every second or so).
pub const LEADER_JUMP: Duration = Duration::from_secs(2);

/// What a campaign runs.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    pub seed: u64,
    /// 3 or 5.
    pub members: usize,
    /// Stop injecting once this many register operations completed...
    pub min_ops: u64,
    /// ...and this many faults were injected.
    pub min_faults: usize,
    /// Hard limit on the fault phase.
    pub max_duration: Duration,
    /// Run members in network namespaces and add partition faults.
    pub netns: bool,
    /// The janus binary (default: the workspace's debug build).
    pub bin: Option<PathBuf>,
    pub workload: WorkloadConfig,
}

/// Kinds of fault, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    KillLeader,
    KillFollower,
    PauseLeader,
    PauseFollower,
    PartitionMajority,
    IsolateLeader,
    Bridge,
    OneWayLoss,
    WipeAndReadd,
    WallClockJump,
    LeaseClockJumpFollower,
    LeaseClockJumpLeader,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill -9 leader + restart",
            FaultKind::KillFollower => "kill -9 follower + restart",
            FaultKind::PauseLeader => "SIGSTOP/SIGCONT leader",
            FaultKind::PauseFollower => "SIGSTOP/SIGCONT follower",
            FaultKind::PartitionMajority => "partition majority/minority",
            FaultKind::IsolateLeader => "partition: isolated leader",
            FaultKind::Bridge => "partition: bridge",
            FaultKind::OneWayLoss => "one-way loss from the leader",
            FaultKind::WipeAndReadd => "remove, wipe, re-add as learner, promote",
            FaultKind::WallClockJump => "wall-clock jump +-1 h (leader)",
            FaultKind::LeaseClockJumpFollower => "lease-clock jump +1 h (follower)",
            FaultKind::LeaseClockJumpLeader => "lease-clock jump +2 s (leader)",
        }
    }
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub what: String,
    /// Seconds since the workload started.
    pub at: f64,
    /// From healing until a leader is agreed and a write is acknowledged.
    pub recovery: Option<Duration>,
}

/// The outcome of a campaign.
pub struct CampaignReport {
    pub seed: u64,
    pub members: usize,
    pub netns: Result<(), String>,
    pub elapsed: Duration,
    pub check_time: Duration,
    pub faults: Vec<FaultRecord>,
    pub rec: Recorded,
    /// `Ok(summary)` or every problem found.
    pub verdict: Result<String, Vec<String>>,
}

impl CampaignReport {
    pub fn ok(&self) -> bool {
        self.verdict.is_ok()
    }

    fn count_errors(&self, needle: &str) -> usize {
        match &self.verdict {
            Ok(_) => 0,
            Err(errs) => errs.iter().filter(|e| e.contains(needle)).count(),
        }
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let ops = |p: Proto| {
            self.rec
                .ops
                .iter()
                .filter(|o| o.proto == p && o.completed.is_some())
                .count()
        };
        let unknown = self
            .rec
            .ops
            .iter()
            .filter(|o| o.completed.is_none())
            .count();
        let _ = writeln!(s, "janus-chaos report");
        let _ = writeln!(
            s,
            "  seed {} (rerun with --seed {}), {} members, network namespaces: {}",
            self.seed,
            self.seed,
            self.members,
            match &self.netns {
                Ok(()) => "yes".to_string(),
                Err(why) => format!("no ({why})"),
            }
        );
        let _ = writeln!(
            s,
            "  run {:.1}s, checking {:.1}s",
            self.elapsed.as_secs_f64(),
            self.check_time.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  operations checked: {} etcd, {} ZooKeeper completed ({} with unknown outcome); {} ZooKeeper and {} etcd lock holds; {} etcd leases; {} ZooKeeper multis; {} watch-then-read rounds; {} watch events in {} watchers ({} resumptions)",
            ops(Proto::Etcd),
            ops(Proto::Zk),
            unknown,
            self.rec.holds.len(),
            self.rec.etcd_holds.len(),
            self.rec.leases.len(),
            self.rec.multis.len(),
            self.rec.watch_orders.len(),
            self.rec.watches.iter().map(|w| w.events.len()).sum::<usize>(),
            self.rec.watches.len(),
            self.rec.watches.iter().map(|w| w.resumes).sum::<usize>()
        );
        let _ = writeln!(s, "  faults injected: {}", self.faults.len());
        let mut by_kind: BTreeMap<FaultKind, Vec<Option<Duration>>> = BTreeMap::new();
        for f in &self.faults {
            by_kind.entry(f.kind).or_default().push(f.recovery);
        }
        for (kind, recs) in &by_kind {
            let mut ok: Vec<f64> = recs.iter().flatten().map(|d| d.as_secs_f64()).collect();
            ok.sort_by(|a, b| a.total_cmp(b));
            let failed = recs.len() - ok.len();
            let (lo, med, hi) = match ok.len() {
                0 => (f64::NAN, f64::NAN, f64::NAN),
                n => (ok[0], ok[n / 2], ok[n - 1]),
            };
            let _ = writeln!(
                s,
                "    {:<42} {:>3}  recovery min {lo:.2}s median {med:.2}s max {hi:.2}s{}",
                kind.name(),
                recs.len(),
                if failed > 0 {
                    format!(" ({failed} did not recover in time)")
                } else {
                    String::new()
                }
            );
        }
        let anomalies = match &self.verdict {
            Ok(_) => 0,
            Err(e) => e.len(),
        };
        let _ = writeln!(s, "  anomalies: {anomalies}");
        let _ = writeln!(
            s,
            "  lost acknowledged writes: {}",
            self.count_errors("acknowledged write lost")
        );
        let _ = writeln!(
            s,
            "  ZooKeeper lock holders at once: {}",
            if self.count_errors("two ZooKeeper lock holders") > 0 {
                "2 (mutual exclusion violated)"
            } else {
                "never more than 1"
            }
        );
        let _ = writeln!(
            s,
            "  etcd lock holders at once: {}",
            if self.count_errors("two etcd lock holders") > 0 {
                "2 (mutual exclusion violated)"
            } else {
                "never more than 1"
            }
        );
        let _ = writeln!(
            s,
            "  ephemerals gone before their session expired: {}",
            self.count_errors("while its session was alive")
        );
        let _ = writeln!(
            s,
            "  lease keys gone while their lease was alive: {}",
            self.count_errors("while its lease was alive")
        );
        let _ = writeln!(
            s,
            "  ZooKeeper multis not atomic: {}",
            self.count_errors("not atomic")
        );
        let _ = writeln!(
            s,
            "  ZooKeeper reads ahead of their watch event: {}",
            self.count_errors("before the watch event")
        );
        match &self.verdict {
            Ok(summary) => {
                let _ = writeln!(s, "  checks: all passed: {summary}");
            }
            Err(errs) => {
                let _ = writeln!(s, "  checks FAILED:");
                for e in errs.iter().take(50) {
                    let _ = writeln!(s, "    {e}");
                }
            }
        }
        s
    }
}

async fn connect(eps: &[String]) -> Option<Client> {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(3), Client::connect(eps, Some(opts)))
        .await
        .ok()?
        .ok()
}

fn running_eps(c: &Cluster) -> Vec<String> {
    c.members
        .iter()
        .filter(|m| m.is_running())
        .map(|m| m.etcd_endpoint())
        .collect()
}

/// Time from now until every running member agrees on a leader and a put
/// through a fresh client is acknowledged (`None` past `within`).
async fn recovery(c: &Cluster, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + within;
    agreed_leader(c, within).await.ok()?;
    while Instant::now() < deadline {
        if let Some(mut cl) = connect(&running_eps(c)).await {
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(2), cl.put("/chaos/probe", "x", None))
                    .await
            {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The member id of member `i`.
async fn member_id(c: &Cluster, i: usize) -> Option<u64> {
    status_of(c, i).await.map(|s| s.0)
}

/// Runs one campaign.
pub async fn run(cfg: &CampaignConfig) -> CampaignReport {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let netns = if cfg.netns {
        match Net::available() {
            None => Net::create(cfg.members).map(Some),
            Some(why) => Err(why),
        }
    } else {
        Err("not asked for (--no-netns)".into())
    };
    let (net, netns_status) = match netns {
        Ok(n) => (n, Ok(())),
        Err(why) => {
            eprintln!("network partitions skipped: {why}");
            (None, Err(why))
        }
    };
    let partitions = net.is_some();
    let mut c = tokio::task::block_in_place(|| {
        Cluster::start_with(
            cfg.members,
            ClusterOptions {
                bin: cfg.bin.clone(),
                net,
                // The checks read every member's whole history of the
                // registers (a watch from revision 1) and watchers resume
                // from where they stopped; the default retention (D13, five
                // minutes) would compact both away in a long run.
                extra: vec!["--auto-compaction-retention".into(), "0".into()],
                clock_hook: true,
                ..ClusterOptions::default()
            },
        )
    });
    if let Err(e) = agreed_leader(&c, Duration::from_secs(30)).await {
        panic!("the new cluster elected no leader: {e}");
    }
    let mut w = Workload::start(&c, &cfg.workload).await;
    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut last_progress = Instant::now();
    let mut kinds = vec![
        (FaultKind::KillLeader, 4),
        (FaultKind::KillFollower, 2),
        (FaultKind::PauseLeader, 3),
        (FaultKind::PauseFollower, 2),
        (FaultKind::WipeAndReadd, 1),
        (FaultKind::WallClockJump, 1),
        (FaultKind::LeaseClockJumpFollower, 1),
        (FaultKind::LeaseClockJumpLeader, 2),
    ];
    if partitions {
        kinds.extend([
            (FaultKind::PartitionMajority, 3),
            (FaultKind::IsolateLeader, 3),
            (FaultKind::Bridge, 2),
            (FaultKind::OneWayLoss, 2),
        ]);
    }
    let total_weight: u32 = kinds.iter().map(|k| k.1).sum();
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        let done = w.sh.done.load(Ordering::Relaxed);
        if (done >= cfg.min_ops && faults.len() >= cfg.min_faults)
            || started.elapsed() > cfg.max_duration
        {
            break;
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[{:.0}s] progress: {done} operations completed, {} faults",
                w.sh.clock.secs(),
                faults.len()
            );
            last_progress = Instant::now();
        }
        // Once enough faults are in, keep the workload running calmly.
        if faults.len() >= cfg.min_faults {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut pick = rng.gen_range(0..total_weight);
        let kind = kinds
            .iter()
            .find(|(_, wt)| {
                if pick < *wt {
                    true
                } else {
                    pick -= wt;
                    false
                }
            })
            .map_or(FaultKind::KillLeader, |k| k.0);
        let Ok(leader) = agreed_leader(&c, Duration::from_secs(20)).await else {
            w.sh.problem(format!(
                "no agreed leader before fault {} ({:?})",
                faults.len() + 1,
                kind
            ));
            break;
        };
        let n = c.members.len();
        let follower = (leader + rng.gen_range(1..n)) % n;
        let hold = Duration::from_millis(rng.gen_range(1000..3500));
        let at = w.sh.clock.secs();
        let what = inject(&mut c, &mut w, kind, leader, follower, hold, &mut rng).await;
        w.fault(what.clone());
        let rec_time = recovery(&c, Duration::from_secs(30)).await;
        match rec_time {
            Some(d) => eprintln!(
                "[{:.1}s]   recovered in {:.2}s",
                w.sh.clock.secs(),
                d.as_secs_f64()
            ),
            None => {
                w.sh.problem(format!("no recovery within 30 s after: {what}"))
            }
        }
        faults.push(FaultRecord {
            kind,
            what,
            at,
            recovery: rec_time,
        });
        // A new abandoned session every ten faults.
        if faults.len() / 10 > (faults.len() - 1) / 10 {
            w.abandon_one(&c);
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2000))).await;
    }
    let rec = w.finish(&c).await;
    let elapsed = started.elapsed();
    let checking = Instant::now();
    let verdict = tokio::task::block_in_place(|| check_run(&rec));
    let check_time = checking.elapsed();
    CampaignReport {
        seed: cfg.seed,
        members: cfg.members,
        netns: netns_status,
        elapsed,
        check_time,
        faults,
        rec,
        verdict,
    }
}

/// Injects one fault, holds it for `hold`, heals it; returns what it was.
async fn inject(
    c: &mut Cluster,
    w: &mut Workload,
    kind: FaultKind,
    leader: usize,
    follower: usize,
    hold: Duration,
    rng: &mut StdRng,
) -> String {
    let name = |c: &Cluster, i: usize| c.members[i].name.clone();
    let n = c.members.len();
    match kind {
        FaultKind::KillLeader | FaultKind::KillFollower => {
            let v = if kind == FaultKind::KillLeader {
                leader
            } else {
                follower
            };
            c.kill(v);
            tokio::time::sleep(hold).await;
            tokio::task::block_in_place(|| c.restart(v));
            format!(
                "kill -9 {} for {:.1}s, restarted on its ports",
                name(c, v),
                hold.as_secs_f64()
            )
        }
        FaultKind::PauseLeader | FaultKind::PauseFollower => {
            let v = if kind == FaultKind::PauseLeader {
                leader
            } else {
                follower
            };
            c.pause(v);
            tokio::time::sleep(hold).await;
            c.resume(v);
            format!("SIGSTOP {} for {:.1}s", name(c, v), hold.as_secs_f64())
        }
        FaultKind::PartitionMajority
        | FaultKind::IsolateLeader
        | FaultKind::Bridge
        | FaultKind::OneWayLoss => {
            let Some(net) = c.net.as_ref() else {
                return "partition skipped (no namespaces)".into();
            };
            let mut order: Vec<usize> = (0..n).collect();
            // Seeded shuffle.
            for i in (1..n).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            let what = match kind {
                FaultKind::PartitionMajority => {
                    let (minority, majority) = order.split_at(n / 2);
                    let _ = net.partition(minority, majority);
                    format!("partition {minority:?} | {majority:?}")
                }
                FaultKind::IsolateLeader => {
                    let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                    let _ = net.partition(&[leader], &others);
                    format!("isolate leader {}", name(c, leader))
                }
                FaultKind::Bridge => {
                    // The bridge member hears both sides; the sides do not
                    // hear each other.
                    let bridge = order[0];
                    let rest = &order[1..];
                    let (a, b) = rest.split_at(rest.len() / 2);
                    let _ = net.partition(a, b);
                    format!("bridge via m{bridge}: {a:?} | {b:?}")
                }
                _ => {
                    for i in (0..n).filter(|&i| i != leader) {
                        let _ = net.cut(leader, i);
                    }
                    format!(
                        "one-way loss: packets from leader {} dropped",
                        name(c, leader)
                    )
                }
            };
            tokio::time::sleep(hold).await;
            let _ = net.heal();
            format!("{what} for {:.1}s", hold.as_secs_f64())
        }
        FaultKind::WallClockJump
        | FaultKind::LeaseClockJumpFollower
        | FaultKind::LeaseClockJumpLeader => {
            let (v, mono, wall_ms) = match kind {
                FaultKind::WallClockJump => {
                    let sign = if rng.gen_bool(0.5) { 1 } else { -1 };
                    (leader, Duration::ZERO, sign * 3_600_000)
                }
                FaultKind::LeaseClockJumpFollower => (follower, Duration::from_secs(3600), 0),
                _ => (leader, LEADER_JUMP, 0),
            };
            if kind == FaultKind::LeaseClockJumpLeader {
                // Recorded before the member can see it (it polls every
                // 100 ms): the checks allow leases and sessions alive now to
                // end this much early.
                let at = w.sh.clock.now();
                w.sh.rec.lock().unwrap().leader_clock_jumps.push((at, mono));
            }
            let what = match c.members[v].jump_clocks(mono, wall_ms) {
                Ok(()) => format!(
                    "{}: clocks of {} jump (lease clock +{}s, wall clock {:+}s)",
                    kind.name(),
                    name(c, v),
                    mono.as_secs(),
                    wall_ms / 1000
                ),
                Err(e) => {
                    w.sh.problem(format!("clock jump of {}: {e}", name(c, v)));
                    format!("clock jump of {} failed: {e}", name(c, v))
                }
            };
            tokio::time::sleep(hold).await;
            what
        }
        FaultKind::WipeAndReadd => {
            let v = follower;
            match wipe_and_readd(c, v).await {
                Ok(t) => format!(
                    "{} removed, wiped, re-added as learner and promoted in {:.1}s",
                    name(c, v),
                    t.as_secs_f64()
                ),
                Err(e) => {
                    w.sh.problem(format!("membership change of {}: {e}", name(c, v)));
                    format!("{} membership change failed: {e}", name(c, v))
                }
            }
        }
    }
}

/// Removes member `v`, kills it, wipes its data dir, adds it back as a
/// learner, starts it empty (caught up by snapshot) and promotes it.
async fn wipe_and_readd(c: &mut Cluster, v: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let vid = member_id(c, v).await.ok_or("member does not answer")?;
    let others: Vec<String> = (0..c.members.len())
        .filter(|&i| i != v && c.members[i].is_running())
        .map(|i| c.members[i].etcd_endpoint())
        .collect();
    let mut admin = connect(&others).await.ok_or("no admin connection")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match admin.member_remove(vid).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => return Err(format!("member remove: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    c.kill(v);
    let peer = c.members[v].peer_url();
    // raft drops a conf change proposed while the previous one is not yet
    // applied on the leader: retry until the member list shows it.
    let new_id = loop {
        let added = admin
            .member_add(
                [peer.clone()],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await;
        if let Ok(a) = &added {
            if let Some(m) = a.member() {
                break m.id();
            }
        }
        if let Ok(list) = admin.member_list().await {
            if let Some(m) = list
                .members()
                .iter()
                .find(|m| m.peer_urls().contains(&peer))
            {
                break m.id();
            }
        }
        if Instant::now() > deadline {
            return Err(format!("member add: {added:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::task::block_in_place(|| c.wipe_and_rejoin(v));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.member_promote(new_id).await {
            Ok(_) => return Ok(started.elapsed()),
            Err(e) if Instant::now() > deadline => return Err(format!("promote: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
