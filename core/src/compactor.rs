//! Automatic compaction of the MVCC history (D13), with etcd 3.4's
//! `--auto-compaction-mode` / `--auto-compaction-retention` meaning
//! (etcd's `etcdserver/api/v3compactor`).
//!
//! ZooKeeper clients never compact, so without this a ZooKeeper-only
//! workload grows the store until the backend quota refuses every write.
//! Every member runs the schedule on its own revisions (as every etcd
//! member runs its compactor), but only the current leader proposes: a
//! `Command::Compact` goes through the log like any write, so every member
//! compacts at the same revision. A member that is not the leader keeps
//! recording revisions (etcd's paused compactor does too), so a new leader
//! can compact right away with its own window.
//!
//! - `periodic` keeps at least `retention` of history: revisions are
//!   sampled every `retention / 10` (every 6 minutes above one hour); once
//!   per `retention` (once per hour above one hour) the compactor compacts
//!   to the revision sampled `retention` ago, so between one and two
//!   retentions of history exist. A failed compaction is retried one
//!   sample interval later.
//! - `revision` keeps the last `retention` revisions: every 5 minutes
//!   (janus lets `--auto-compaction-interval` shorten this) it compacts to
//!   `current - retention`.
//!
//! janus default: periodic, 5 minutes. A ZooKeeper client that reconnects
//! within its session timeout (at most 20 ticks = 40 s by default) replays
//! `setWatches` from its last zxid, and an etcd watcher resumes from its
//! last revision after a short disconnect; both need the history since
//! then. Five minutes covers both with a wide margin, is what Kubernetes
//! uses for its own compaction loop, and bounds the history to five
//! minutes of writes whatever the write rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::command::{Command, CommandResult};
use crate::{KvError, Node};

/// How much history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep at least this much time of history (`periodic`).
    Periodic(Duration),
    /// Keep this many revisions (`revision`).
    Revision(i64),
}

/// etcd's `revInterval`: how often the revision compactor looks.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// janus's default retention (see the module docs).
pub const DEFAULT_RETENTION: Retention = Retention::Periodic(Duration::from_secs(5 * 60));

impl Retention {
    /// Parses the two flags as etcd 3.4's `parseCompactionRetention`: a bare
    /// integer is hours in `periodic` mode and revisions in `revision`
    /// mode; `periodic` also takes a duration (`5m`, `30s`, `1h30m`).
    /// Retention 0 disables auto-compaction (`None`).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Retention>, String> {
        let retention = retention.trim();
        let int = retention.parse::<i64>().ok().filter(|n| *n >= 0);
        let r = match (mode, int) {
            ("periodic", Some(h)) => {
                Retention::Periodic(Duration::from_secs((h as u64).saturating_mul(3600)))
            }
            ("periodic", None) => Retention::Periodic(parse_go_duration(retention).ok_or_else(
                || format!("error parsing --auto-compaction-retention {retention:?}"),
            )?),
            ("revision", Some(n)) => Retention::Revision(n),
            ("revision", None) => {
                return Err(format!(
                    "--auto-compaction-retention {retention:?} must be a number of revisions in revision mode"
                ))
            }
            _ => {
                return Err(format!(
                    "unsupported --auto-compaction-mode {mode:?} (periodic or revision)"
                ))
            }
        };
        Ok(match r {
            Retention::Periodic(d) if d.is_zero() => None,
            Retention::Revision(0) => None,
            r => Some(r),
        })
    }
}

/// Go's `time.ParseDuration` for the units a retention uses (`h`, `m`,
/// `s`, `ms`), in any combination (`1h30m`, `90s`, `1.5h`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * secs;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// etcd's periodic compactor as a pure state machine (no clock, no node),
/// so its schedule is tested exactly.
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    /// Sampling / retry interval: period (capped at 1 h) / 10.
    retry: Duration,
    /// How many samples cover one period.
    retentions: usize,
    /// Sampled revisions; the front is the one `period` ago.
    revs: VecDeque<i64>,
    last_success: Instant,
    /// `period` until the first compaction, then the compaction interval.
    base_interval: Duration,
}

impl Periodic {
    pub fn new(period: Duration, now: Instant) -> Periodic {
        let capped = period.min(Duration::from_secs(3600));
        let retry = (capped / 10).max(Duration::from_millis(1));
        Periodic {
            period,
            retry,
            retentions: (period.as_nanos() / retry.as_nanos()) as usize + 1,
            revs: VecDeque::new(),
            last_success: now,
            base_interval: period,
        }
    }

    /// How long to wait between samples.
    pub fn interval(&self) -> Duration {
        self.retry
    }

    /// Records the current revision (start of each loop turn).
    pub fn sample(&mut self, rev: i64) {
        self.revs.push_back(rev);
        if self.revs.len() > self.retentions {
            self.revs.pop_front();
        }
    }

    /// After one interval: the revision to compact to, if it is time.
    pub fn due(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.last_success) < self.base_interval {
            return None;
        }
        if self.base_interval == self.period {
            self.base_interval = self.period.min(Duration::from_secs(3600));
        }
        self.revs.front().copied()
    }

    /// The compaction went through (or was already done).
    pub fn succeeded(&mut self, now: Instant) {
        self.last_success = now;
    }
}

/// etcd's revision compactor decision: compact to `current - retention`
/// unless that is not positive or was the last one done.
pub fn revision_target(current: i64, retention: i64, prev: i64) -> Option<i64> {
    let rev = current - retention;
    (rev > 0 && rev != prev).then_some(rev)
}

/// Proposes `Compact { revision }` if this member leads; `Ok(true)` when
/// history below `revision` is gone (now or already), `Ok(false)` when not
/// the leader.
async fn compact(node: &Node, revision: i64) -> Result<bool, String> {
    if !node.is_leader() {
        return Ok(false);
    }
    if revision <= node.status().compact_revision {
        return Ok(true);
    }
    match node.propose(Command::Compact { revision }).await {
        Ok(applied) => match applied.result {
            CommandResult::Compact(Ok(()))
            | CommandResult::Compact(Err(KvError::Compacted { .. })) => Ok(true),
            other => Err(format!("{other:?}")),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the schedule until the future is dropped. `revision_interval` is
/// how often `revision` mode looks ([`REVISION_CHECK_INTERVAL`] in etcd).
pub async fn run(node: Node, retention: Retention, revision_interval: Duration) {
    match retention {
        Retention::Periodic(period) => {
            let mut p = Periodic::new(period, Instant::now());
            loop {
                p.sample(node.revision());
                tokio::time::sleep(p.interval()).await;
                let Some(rev) = p.due(Instant::now()) else {
                    continue;
                };
                match compact(&node, rev).await {
                    Ok(true) => {
                        tracing::debug!(revision = rev, ?period, "auto periodic compaction done");
                        p.succeeded(Instant::now());
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        revision = rev,
                        error = %e,
                        retry = ?p.interval(),
                        "auto periodic compaction failed"
                    ),
                }
            }
        }
        Retention::Revision(keep) => {
            let mut prev = 0;
            loop {
                tokio::time::sleep(revision_interval).await;
                let Some(rev) = revision_target(node.revision(), keep, prev) else {
                    continue;
                };
                match compact(&node, rev).await {
                    Ok(true) => {
                        tracing::debug!(revision = rev, keep, "auto revision compaction done");
                        prev = rev;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        revision = rev,
                        error = %e,
                        "auto revision compaction failed"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_flags_mean_what_etcd_means() {
        let h = Duration::from_secs(3600);
        assert_eq!(
            Retention::parse("periodic", "1"),
            Ok(Some(Retention::Periodic(h)))
        );
        assert_eq!(
            Retention::parse("periodic", "5m"),
            Ok(Some(Retention::Periodic(Duration::from_secs(300))))
        );
        assert_eq!(
            Retention::parse("periodic", "1h30m"),
            Ok(Some(Retention::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            Retention::parse("periodic", "1.5h"),
            Ok(Some(Retention::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            Retention::parse("revision", "1000"),
            Ok(Some(Retention::Revision(1000)))
        );
        assert_eq!(Retention::parse("periodic", "0"), Ok(None));
        assert_eq!(Retention::parse("revision", "0"), Ok(None));
        assert!(Retention::parse("revision", "5m").is_err());
        assert!(Retention::parse("periodic", "5x").is_err());
        assert!(Retention::parse("periodic", "-1").is_err());
        assert!(Retention::parse("hourly", "1").is_err());
    }

    /// etcd's periodic_test: retention 10 s samples every 1 s and compacts
    /// every 10 s to the revision sampled 10 s before.
    #[test]
    fn periodic_waits_one_period_then_follows_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = Periodic::new(10 * s, t0);
        assert_eq!(p.interval(), s);
        let mut rev = 1;
        let mut compacted = Vec::new();
        for i in 1..=24u32 {
            p.sample(rev);
            rev += 100;
            let now = t0 + s * i;
            if let Some(r) = p.due(now) {
                compacted.push((i, r));
                p.succeeded(now);
            }
        }
        // Sample k (1-based) holds rev 1 + 100(k-1); the window holds 11.
        assert_eq!(compacted, vec![(10, 1), (20, 901)]);
    }

    #[test]
    fn periodic_above_an_hour_compacts_hourly_and_samples_every_six_minutes() {
        let t0 = Instant::now();
        let p = Periodic::new(Duration::from_secs(24 * 3600), t0);
        assert_eq!(p.interval(), Duration::from_secs(360));
        assert_eq!(p.retentions, 241);
    }

    #[test]
    fn periodic_failure_retries_next_interval_with_the_window_moved() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = Periodic::new(10 * s, t0);
        for i in 1..=10u32 {
            p.sample(i as i64);
            if i < 10 {
                assert_eq!(p.due(t0 + s * i), None);
            }
        }
        assert_eq!(p.due(t0 + 10 * s), Some(1));
        // Not acknowledged: the next turn tries again with the next sample.
        p.sample(11);
        assert_eq!(p.due(t0 + 11 * s), Some(1));
        p.sample(12);
        assert_eq!(p.due(t0 + 12 * s), Some(2));
    }

    #[test]
    fn revision_mode_keeps_the_last_n() {
        assert_eq!(revision_target(5, 10, 0), None);
        assert_eq!(revision_target(10, 10, 0), None);
        assert_eq!(revision_target(25, 10, 0), Some(15));
        assert_eq!(revision_target(25, 10, 15), None);
        assert_eq!(revision_target(26, 10, 15), Some(16));
    }
}
