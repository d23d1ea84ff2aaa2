//! etcd's HashKV (`mvcc.HashByRev`): a CRC-32 over every retained MVCC
//! record up to a revision, in revision order, with the compact revision
//! it was taken under. Members with the same history have the same hash,
//! which the corruption check compares ([`crate::corrupt_check`]).
//!
//! The hash reads a point-in-time view of the store ([`crate::engine::View`],
//! a fjall snapshot) taken under the state lock together with the
//! revisions, and scans it after the lock is released: the scan of a big
//! store takes seconds, and holding the state lock for it would stall the
//! apply path (which takes the lock for writing) and, behind a waiting
//! writer, every other reader. The view is the store exactly as the lock
//! saw it (the apply path commits under the write lock), so later writes
//! and compactions do not change the number: it is the one a scan under
//! the lock would give.

use crate::engine::Space;
use crate::mvcc::Rev;
use crate::{KvError, Node};

/// A member's HashKV ([`Node::hash_kv_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The revision hashed.
    pub revision: i64,
    /// The member's revision when it hashed.
    pub current_revision: i64,
    pub compact_revision: i64,
}

impl Node {
    /// etcd HashKV at `revision` (0 = current): (hash, compact_revision,
    /// revision hashed). A revision below the compaction point is
    /// [`KvError::Compacted`], one above the current revision
    /// [`KvError::FutureRevision`].
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), KvError> {
        let h = self.hash_kv_at(revision)?;
        Ok((h.hash, h.compact_revision, h.revision))
    }

    /// [`Node::hash_kv`] with the member's current revision read under the
    /// same lock (what etcd's `HashByRev` returns and its HashKV header
    /// carries, which the corruption check compares). Blocking: the scan
    /// runs on the caller's thread, without the state lock.
    pub fn hash_kv_at(&self, revision: i64) -> Result<HashKv, KvError> {
        let (view, mut out) = {
            let st = self.state();
            let rev = st.read_revision(revision)?;
            let out = HashKv {
                hash: 0,
                revision: rev,
                current_revision: st.revision,
                compact_revision: st.compact_revision,
            };
            (st.engine.view(), out)
        };
        let mut h = crc32fast::Hasher::new();
        let end = Rev::new(out.revision + 1, 0).to_bytes();
        for item in view.scan(Space::Revs, ..end) {
            let (k, v) = item?;
            h.update(&k);
            h.update(&v);
        }
        out.hash = h.finalize();
        Ok(out)
    }
}
