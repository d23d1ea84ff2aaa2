//! The short `janus-chaos` campaign: a 3-member cluster of real janus
//! processes, the mixed workload of both protocols and a handful of seeded
//! faults (partitions too when this runs as root with `ip netns`; otherwise
//! the reason is printed and the other faults run), then every check. The
//! full campaign is the `janus-chaos` command (RELIABILITY.md).

use std::time::Duration;

use janus_conformance::chaos::campaign::{self, CampaignConfig};
use janus_conformance::chaos::workload::WorkloadConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_chaos_campaign_passes_every_check() {
    // A fixed schedule by default, so the suite is a regression gate and
    // not a lottery: one failure seen in the short runs is still open
    // (RELIABILITY.md), and new schedules are what `janus-chaos` (a fresh
    // seed per run) and `JANUS_CHAOS_SEED=random` explore.
    let seed = match std::env::var("JANUS_CHAOS_SEED").ok().as_deref() {
        Some("random") => rand::random::<u64>(),
        Some(s) => s.parse().expect("JANUS_CHAOS_SEED: a number or `random`"),
        None => 14_831_204_149_639_698_945,
    };
    eprintln!("seed {seed} (rerun with JANUS_CHAOS_SEED={seed})");
    let cfg = CampaignConfig {
        seed,
        members: 3,
        min_ops: 3000,
        min_faults: 6,
        max_duration: Duration::from_secs(120),
        netns: true,
        bin: None,
        workload: WorkloadConfig {
            seed,
            registers: 8,
            etcd_clients: 3,
            zk_clients: 3,
            lock_contenders: 2,
            watchers: 2,
            lease_clients: 2,
            etcd_lock_contenders: 2,
            watch_order_clients: 2,
        },
    };
    let report = campaign::run(&cfg).await;
    let text = report.render();
    eprintln!("{text}");
    if let Err(why) = &report.netns {
        eprintln!("partition faults skipped: {why}");
    }
    assert!(
        report.ok(),
        "seed {seed}: the campaign found problems:\n{text}"
    );
    assert!(
        report.faults.len() >= 6,
        "only {} faults injected",
        report.faults.len()
    );
    let completed = report
        .rec
        .ops
        .iter()
        .filter(|o| o.completed.is_some())
        .count();
    assert!(completed >= 3000, "only {completed} operations completed");
    assert!(
        report.faults.iter().all(|f| f.recovery.is_some()),
        "a fault did not recover"
    );
}
