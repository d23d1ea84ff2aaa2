//! Per-key revision history kept in memory.

use super::Rev;

/// The current (latest) state of a live key, so that counts, key-only reads,
/// compares and ZooKeeper stats need no disk access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub create_revision: i64,
    pub mod_rev: Rev,
    pub version: i64,
    pub lease: i64,
}

/// Every retained revision of one key, oldest first, with its tombstones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    /// (revision, is_tombstone), strictly increasing.
    pub revs: Vec<(Rev, bool)>,
    /// `Some` while the key exists at the current revision.
    pub live: Option<Live>,
}

impl KeyIndex {
    /// The newest revision `<= at` (main revision), if the key existed then:
    /// `None` if it had not been written yet or was deleted at that point.
    pub fn at(&self, at: i64) -> Option<Rev> {
        let idx = self.revs.partition_point(|(r, _)| r.main <= at);
        let (rev, tomb) = *self.revs.get(idx.checked_sub(1)?)?;
        (!tomb).then_some(rev)
    }

    /// The revision written just before `rev`, if it is a live value.
    pub fn before(&self, rev: Rev) -> Option<Rev> {
        let idx = self.revs.partition_point(|(r, _)| *r < rev);
        let (prev, tomb) = *self.revs.get(idx.checked_sub(1)?)?;
        (!tomb).then_some(prev)
    }

    /// Drops history below `at` (etcd's keyIndex.compact): keeps the newest
    /// revision `<= at` unless it is a tombstone, and everything after.
    /// Returns the dropped revisions.
    pub fn compact(&mut self, at: i64) -> Vec<Rev> {
        let idx = self.revs.partition_point(|(r, _)| r.main <= at);
        if idx == 0 {
            return Vec::new();
        }
        let keep_from = match self.revs.get(idx - 1) {
            Some((_, false)) => idx - 1,
            _ => idx,
        };
        self.revs.drain(..keep_from).map(|(r, _)| r).collect()
    }

    /// Nothing left to remember about this key.
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty() && self.live.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(revs: &[(i64, bool)]) -> KeyIndex {
        KeyIndex {
            revs: revs.iter().map(|&(m, t)| (Rev::new(m, 0), t)).collect(),
            live: None,
        }
    }

    #[test]
    fn at_respects_tombstones() {
        let k = idx(&[(2, false), (4, true), (6, false)]);
        assert_eq!(k.at(1), None);
        assert_eq!(k.at(3), Some(Rev::new(2, 0)));
        assert_eq!(k.at(5), None);
        assert_eq!(k.at(9), Some(Rev::new(6, 0)));
        assert_eq!(k.before(Rev::new(6, 0)), None);
        assert_eq!(k.before(Rev::new(4, 0)), Some(Rev::new(2, 0)));
    }

    #[test]
    fn compact_keeps_latest_live() {
        let mut k = idx(&[(2, false), (3, false), (4, true), (6, false)]);
        assert_eq!(k.compact(3), vec![Rev::new(2, 0)]);
        assert_eq!(k.at(3), Some(Rev::new(3, 0)));
        assert_eq!(k.compact(5), vec![Rev::new(3, 0), Rev::new(4, 0)]);
        assert_eq!(k.revs.len(), 1);
    }
}
