//! Time as a member sees it: the real clocks in production, a virtual clock
//! advanced by hand in the deterministic simulation ([`crate::sim`]), so that
//! lease deadlines, request horizons, checkpoints and proposal timestamps
//! depend on simulated time only and a seed replays the same run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Names the test-only clock-jump file (see [`ClockJumps`]).
pub(crate) const CLOCK_JUMP_ENV: &str = "JANUS_TEST_CLOCK_JUMP_FILE";

#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// `Instant::now()` and the system wall clock.
    #[default]
    Real,
    /// The real clocks plus offsets that a fault test makes jump.
    Jumped(Arc<ClockJumps>),
    /// Only the simulation builds one.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    Virtual(Arc<VirtualTime>),
}

/// Simulated time: a fixed origin plus a number of milliseconds that only
/// the simulation advances.
#[derive(Debug)]
pub(crate) struct VirtualTime {
    origin: Instant,
    elapsed_ms: AtomicU64,
}

/// Wall-clock milliseconds at virtual time 0 (2023-11-14), a fixed value so
/// that timestamps carried in proposals are the same in every run.
const VIRTUAL_EPOCH_MS: i64 = 1_700_000_000_000;

impl VirtualTime {
    #[cfg(feature = "sim")]
    pub(crate) fn new() -> Arc<VirtualTime> {
        Arc::new(VirtualTime {
            origin: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
        })
    }

    #[cfg(feature = "sim")]
    pub(crate) fn advance(&self, ms: u64) {
        self.elapsed_ms.fetch_add(ms, Ordering::AcqRel);
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms.load(Ordering::Acquire)
    }
}

/// TEST ONLY: clock jumps injected by a fault campaign. When the member
/// starts with `JANUS_TEST_CLOCK_JUMP_FILE=<path>` in its environment, a
/// thread reads that file every 100 ms; it holds two integers, the offset in
/// milliseconds added to the member's monotonic clock and the offset (may be
/// negative) added to its wall clock. A missing file means no offset.
///
/// What the two clocks drive, and so what a jump may change:
/// - The monotonic clock ([`Clock::now`]) measures every lease and
///   ZooKeeper session deadline (D9), read retries, proposal horizons and
///   checkpoint intervals, as etcd's lessor measures TTLs with monotonic
///   time. The real monotonic clock never jumps; a forward jump of N
///   seconds is what the member would see after a pause of N seconds in
///   which it did nothing. On a follower it changes nothing a client can
///   see: followers expire nothing, and a follower that becomes leader
///   restarts every deadline from its own now. On the leader it is the
///   "leader paused" case: a lease with less than N seconds left when the
///   clock jumps may be revoked early, one with more left is not. janus
///   promises no more than that, as etcd does not (a jump on the leader
///   cannot be told apart from real elapsed time). The offset only grows:
///   a smaller value than the last one is ignored.
/// - The wall clock ([`Clock::now_ms`]) only stamps proposals (znode
///   ctime/mtime) and ages TTL nodes, as in ZooKeeper. A wall-clock jump,
///   either way, on any member, must not expire any lease or session.
#[derive(Debug)]
pub(crate) struct ClockJumps {
    monotonic_ms: AtomicU64,
    wall_ms: AtomicI64,
}

impl ClockJumps {
    /// The jumpable clock if the environment asks for one, with its polling
    /// thread (which ends when the clock is dropped).
    pub(crate) fn from_env() -> Clock {
        let Some(path) = std::env::var_os(CLOCK_JUMP_ENV).map(PathBuf::from) else {
            return Clock::Real;
        };
        tracing::warn!(
            file = %path.display(),
            "test-only clock-jump hook enabled ({CLOCK_JUMP_ENV})"
        );
        let jumps = Arc::new(ClockJumps {
            monotonic_ms: AtomicU64::new(0),
            wall_ms: AtomicI64::new(0),
        });
        jumps.read(&path);
        let weak: Weak<ClockJumps> = Arc::downgrade(&jumps);
        let spawned = std::thread::Builder::new()
            .name("clock-jumps".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                match weak.upgrade() {
                    Some(j) => j.read(&path),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("clock-jump hook: cannot start its thread: {e}");
        }
        Clock::Jumped(jumps)
    }

    fn read(&self, path: &std::path::Path) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let mut nums = text.split_whitespace().map(str::parse::<i64>);
        let (Some(Ok(mono)), Some(Ok(wall))) = (nums.next(), nums.next()) else {
            tracing::warn!(file = %path.display(), "clock-jump hook: expected two integers");
            return;
        };
        let mono = mono.max(0) as u64;
        let before = self.monotonic_ms.fetch_max(mono, Ordering::AcqRel);
        let wall_before = self.wall_ms.swap(wall, Ordering::AcqRel);
        if mono > before || wall != wall_before {
            tracing::warn!(
                monotonic_ms = mono.max(before),
                wall_ms = wall,
                "clock-jump hook: clocks jumped"
            );
        }
    }
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Jumped(j) => {
                Instant::now() + Duration::from_millis(j.monotonic_ms.load(Ordering::Acquire))
            }
            Clock::Virtual(v) => v.origin + Duration::from_millis(v.elapsed_ms()),
        }
    }

    pub(crate) fn elapsed(&self, since: Instant) -> Duration {
        self.now().saturating_duration_since(since)
    }

    /// Wall-clock milliseconds since the Unix epoch (what proposals carry).
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Clock::Real => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            Clock::Jumped(j) => Clock::Real.now_ms() + j.wall_ms.load(Ordering::Acquire),
            Clock::Virtual(v) => VIRTUAL_EPOCH_MS + v.elapsed_ms() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jumps() -> ClockJumps {
        ClockJumps {
            monotonic_ms: AtomicU64::new(0),
            wall_ms: AtomicI64::new(0),
        }
    }

    #[test]
    fn the_hook_file_moves_both_clocks_and_the_monotonic_one_only_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clock");
        let j = Arc::new(jumps());
        let clock = Clock::Jumped(Arc::clone(&j));
        j.read(&path); // missing file: no offset
        let before = Instant::now();
        assert!(clock.now() < before + Duration::from_secs(1));

        std::fs::write(&path, "3600000 -7200000\n").expect("write");
        j.read(&path);
        assert!(clock.now() >= before + Duration::from_secs(3600));
        let wall = Clock::Real.now_ms();
        let jumped = clock.now_ms();
        assert!((wall - 7_200_000 - jumped).abs() < 1000, "{wall} {jumped}");

        // A smaller monotonic offset is ignored; the wall offset follows.
        std::fs::write(&path, "1000 0").expect("write");
        j.read(&path);
        assert!(clock.now() >= before + Duration::from_secs(3600));
        assert!((Clock::Real.now_ms() - clock.now_ms()).abs() < 1000);

        // Garbage changes nothing.
        std::fs::write(&path, "soon").expect("write");
        j.read(&path);
        assert!(clock.now() >= before + Duration::from_secs(3600));
    }
}
