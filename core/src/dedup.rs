//! Exactly-once apply of proposals (D7, D10).
//!
//! raft-rs appends every `MsgPropose` it receives, so a forwarded proposal
//! that reaches the leader twice (a transport that retries a frame, a
//! duplicate in the simulation) is committed twice. Applying both copies
//! would run the command twice: a ZooKeeper sequential create would make a
//! second node, an etcd put would bump the revision again. The state machine
//! therefore remembers which proposals it applied and turns a second copy
//! into a no-op that only moves the applied index.
//!
//! A proposal is named by (proposer, epoch, request id): the epoch is chosen
//! at random each time a member starts, and request ids count up from 1
//! within one boot, so names never repeat across restarts even though the
//! counter does.
//!
//! What is remembered is bounded: per proposer, the windows of its last
//! [`EPOCHS`] epochs; each window is the highest request id applied and a
//! bitmap of the [`WINDOW`] ids below it. Forwarded proposals of one boot
//! arrive almost in order (one TCP stream per peer, reordered only across a
//! leader change), so an id that fell below the window is far older than
//! anything still in flight: it is treated as a duplicate (and logged) rather
//! than risk running it twice. Its proposer stopped waiting for it long ago
//! (request timeout).
//!
//! The windows are state-machine state: decided from applied entries only,
//! written into the same fjall batch as the command and the applied index
//! (so replay after a crash sees exactly the windows the first apply left),
//! and stored in the `Meta` keyspace, which snapshots carry, so a member that
//! installs a snapshot makes the same decisions as the others.
//!
//! A duplicate is not answered with the first result: the proposer's waiting
//! client was answered when the first copy applied (its pending entry is
//! removed then), so nobody waits for a second copy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Space};
use crate::CoreError;

/// How many request ids below the highest one each window remembers.
pub const WINDOW: u64 = 4096;
/// How many boots of one proposer are remembered.
pub const EPOCHS: usize = 2;

const KEY_PREFIX: &[u8] = b"dedup/";
const WORDS: usize = (WINDOW / 64) as usize;

/// Applied request ids of one boot of one proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Window {
    epoch: u64,
    /// Highest request id applied.
    top: u64,
    /// Bit `i` set: id `top - i` applied (bit 0 is `top` itself).
    bits: Vec<u64>,
}

impl Window {
    fn new(epoch: u64, id: u64) -> Window {
        let mut bits = vec![0; WORDS];
        bits[0] = 1;
        Window {
            epoch,
            top: id,
            bits,
        }
    }

    fn bit(&self, off: u64) -> bool {
        let (w, b) = ((off / 64) as usize, off % 64);
        self.bits.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    fn set(&mut self, off: u64) {
        let (w, b) = ((off / 64) as usize, off % 64);
        if let Some(x) = self.bits.get_mut(w) {
            *x |= 1 << b;
        }
    }

    /// Moves `top` up by `by`, sliding older ids towards (and out of) the
    /// end of the bitmap.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.bits.iter_mut().for_each(|x| *x = 0);
            return;
        }
        let (words, rest) = ((by / 64) as usize, by % 64);
        for i in (0..WORDS).rev() {
            let hi = i
                .checked_sub(words)
                .and_then(|j| self.bits.get(j))
                .copied()
                .unwrap_or(0);
            let lo = i
                .checked_sub(words + 1)
                .and_then(|j| self.bits.get(j))
                .copied()
                .unwrap_or(0);
            self.bits[i] = if rest == 0 {
                hi
            } else {
                (hi << rest) | (lo >> (64 - rest))
            };
        }
    }

    /// Records `id`; `false` if it was applied before (or is too old to
    /// tell).
    fn admit(&mut self, id: u64) -> bool {
        if id > self.top {
            self.shift(id - self.top);
            self.top = id;
            self.set(0);
            return true;
        }
        let off = self.top - id;
        if off >= WINDOW {
            tracing::warn!(
                id,
                top = self.top,
                "proposal far below its proposer's window: treated as a duplicate"
            );
            return false;
        }
        if self.bit(off) {
            return false;
        }
        self.set(off);
        true
    }
}

/// A `Meta` record to write: (key, value).
pub type Record = (Vec<u8>, Vec<u8>);

/// What every member remembers of the proposals it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Per proposer, its windows, oldest boot first.
    by_proposer: BTreeMap<u64, Vec<Window>>,
}

fn key(proposer: u64) -> Vec<u8> {
    let mut k = KEY_PREFIX.to_vec();
    k.extend_from_slice(&proposer.to_be_bytes());
    k
}

impl Applied {
    /// Reads the windows from the store.
    pub fn load(engine: &Engine) -> Result<Applied, CoreError> {
        let mut by_proposer = BTreeMap::new();
        let mut end = KEY_PREFIX.to_vec();
        end.push(0xff);
        for item in engine.scan(Space::Meta, KEY_PREFIX.to_vec()..end, false) {
            let (k, v) = item?;
            let corrupt = |what: String| CoreError::Corrupt {
                path: engine.dir().to_path_buf(),
                what: format!("meta {}: {what}", String::from_utf8_lossy(&k)),
            };
            let id = k
                .get(KEY_PREFIX.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("bad proposer key".into()))?;
            let windows: Vec<Window> =
                postcard::from_bytes(&v).map_err(|e| corrupt(e.to_string()))?;
            if windows.iter().any(|w| w.bits.len() != WORDS) {
                return Err(corrupt("window of the wrong size".into()));
            }
            by_proposer.insert(id, windows);
        }
        Ok(Applied { by_proposer })
    }

    /// Records proposal (`proposer`, `epoch`, `id`) as applied; `false`: it
    /// was applied before, and must not run again. The caller writes
    /// [`Applied::record`] of the proposer in the batch that applies it.
    pub fn admit(&mut self, proposer: u64, epoch: u64, id: u64) -> bool {
        let windows = self.by_proposer.entry(proposer).or_default();
        let fresh = match windows.iter_mut().find(|w| w.epoch == epoch) {
            Some(w) => w.admit(id),
            None => {
                windows.push(Window::new(epoch, id));
                if windows.len() > EPOCHS {
                    windows.remove(0);
                }
                true
            }
        };
        fresh
    }

    /// The `Meta` record (key, value) of `proposer`'s windows.
    pub fn record(&self, proposer: u64) -> Result<Record, CoreError> {
        let windows = self
            .by_proposer
            .get(&proposer)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let v = postcard::to_stdvec(windows).map_err(|e| CoreError::Encoding(e.to_string()))?;
        Ok((key(proposer), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_each_id_once_in_any_order() {
        let mut w = Window::new(7, 5);
        assert!(!w.admit(5));
        assert!(w.admit(3));
        assert!(!w.admit(3));
        assert!(w.admit(200));
        assert!(w.admit(4));
        assert!(!w.admit(4));
        assert!(!w.admit(5));
        assert!(!w.admit(200));
        assert!(w.admit(199));
        assert!(w.admit(200 + 64 * 3 + 5));
        assert!(!w.admit(200));
        assert!(!w.admit(199));
        assert!(w.admit(198));
        // Beyond the window: refused.
        assert!(w.admit(10_000));
        assert!(!w.admit(10_000 - WINDOW));
        assert!(w.admit(10_000 - WINDOW + 1));
        assert!(!w.admit(10_000 - WINDOW + 1));
    }

    #[test]
    fn window_matches_a_set_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut w = Window::new(1, 1);
        let mut seen = std::collections::BTreeSet::from([1u64]);
        let mut top = 1u64;
        for _ in 0..20_000 {
            let id = if rng.gen_bool(0.3) {
                top + rng.gen_range(1..300)
            } else {
                top.saturating_sub(rng.gen_range(0..WINDOW)).max(1)
            };
            let expect = seen.insert(id);
            top = top.max(id);
            assert_eq!(w.admit(id), expect, "id {id} top {top}");
        }
    }
}
