//! Time as a member sees it: the real clocks in production, a virtual clock
//! advanced by hand in the deterministic simulation ([`crate::sim`]), so that
//! lease deadlines, request horizons, checkpoints and proposal timestamps
//! depend on simulated time only and a seed replays the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// `Instant::now()` and the system wall clock.
    #[default]
    Real,
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

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
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
            Clock::Virtual(v) => VIRTUAL_EPOCH_MS + v.elapsed_ms() as i64,
        }
    }
}
