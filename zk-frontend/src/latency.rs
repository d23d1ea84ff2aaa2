//! Request latency as ZooKeeper's `ServerStats` keeps it: from the moment
//! a request is read to the moment its reply is queued, min / avg / max
//! over every request since start, in milliseconds (`srvr`, `mntr`,
//! `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Lock-free running min / total / max / count (microseconds).
#[derive(Debug)]
pub struct Latency {
    count: AtomicU64,
    total_us: AtomicU64,
    min_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            count: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
        }
    }
}

/// A reading: (min ms, avg ms, max ms, requests); all 0 before the first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub min_ms: u64,
    pub avg_ms: f64,
    pub max_ms: u64,
    pub count: u64,
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.min_us.fetch_min(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn read(&self) -> Reading {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return Reading {
                min_ms: 0,
                avg_ms: 0.0,
                max_ms: 0,
                count: 0,
            };
        }
        let total = self.total_us.load(Ordering::Relaxed) as f64;
        Reading {
            min_ms: self.min_us.load(Ordering::Relaxed) / 1000,
            avg_ms: total / count as f64 / 1000.0,
            max_ms: self.max_us.load(Ordering::Relaxed) / 1000,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_avg_max_in_milliseconds() {
        let l = Latency::default();
        assert_eq!(l.read().count, 0);
        assert_eq!(l.read().min_ms, 0);
        for ms in [2, 4, 12] {
            l.record(Duration::from_millis(ms));
        }
        let r = l.read();
        assert_eq!((r.min_ms, r.max_ms, r.count), (2, 12, 3));
        assert!((r.avg_ms - 6.0).abs() < 1e-9);
    }
}
