//! Bytes a member's data directory really occupies on disk.
//!
//! etcd reports the bbolt file's size as `dbSize`. fjall's own figure
//! counts journal files by their length, and a fresh journal is
//! preallocated (tens of MB of holes for an empty store), so janus counts
//! the blocks the filesystem actually allocated to every file under the
//! data directory instead: what `du` reports, what a disk fills up with.
//! The write-ahead log's directory is left out: it is not the database
//! (etcd's `dbSize` leaves out its `wal/` too), and its segments are
//! preallocated with real blocks, so counting them would report tens of MB
//! for an empty store and let the quota trip on log space.
//! Walking the directory costs a few syscalls per file, and the quota check
//! asks before every write, so the figure is cached for [`MAX_AGE`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How stale a reported size may be.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// The cached on-disk size of one directory tree.
#[derive(Debug)]
pub struct DiskUsage {
    dir: PathBuf,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskUsage {
    pub fn new(dir: impl Into<PathBuf>) -> DiskUsage {
        DiskUsage {
            dir: dir.into(),
            last: Mutex::new(None),
        }
    }

    /// Allocated bytes under the directory, at most [`MAX_AGE`] old.
    pub fn bytes(&self) -> u64 {
        let now = Instant::now();
        if let Ok(last) = self.last.lock() {
            if let Some((at, n)) = *last {
                if now.duration_since(at) < MAX_AGE {
                    return n;
                }
            }
        }
        let n = store_bytes(&self.dir);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((now, n));
        }
        n
    }

    /// Forgets the cached figure (after a defragment, say).
    pub fn invalidate(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

/// Allocated bytes under a data directory, without its write-ahead log.
fn store_bytes(dir: &Path) -> u64 {
    let wal = dir.join(crate::raft_log::WAL_DIR);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path == wal {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += allocated_bytes(&path);
        } else if meta.is_file() {
            total += allocated(&meta);
        }
    }
    total
}

/// Sum of the allocated size of every file under `dir` (files that vanish
/// while walking, as fjall deletes old tables, count as 0).
pub fn allocated_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += allocated_bytes(&entry.path());
        } else if meta.is_file() {
            total += allocated(&meta);
        }
    }
    total
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // st_blocks is in 512-byte units whatever the filesystem's block size.
    meta.blocks().saturating_mul(512)
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_files_count_what_is_allocated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a");
        std::fs::create_dir(&sub).expect("mkdir");
        // 64 MiB of holes: what a preallocated journal looks like.
        let sparse = std::fs::File::create(sub.join("journal")).expect("create");
        sparse.set_len(64 << 20).expect("set_len");
        std::fs::write(dir.path().join("data"), vec![7u8; 100_000]).expect("write");
        let n = allocated_bytes(dir.path());
        assert!(n >= 100_000, "{n}");
        assert!(n < 1 << 20, "holes counted: {n}");
    }

    #[test]
    fn cached_for_a_short_while() {
        let dir = tempfile::tempdir().expect("tempdir");
        let du = DiskUsage::new(dir.path());
        let empty = du.bytes();
        std::fs::write(dir.path().join("f"), vec![1u8; 200_000]).expect("write");
        du.invalidate();
        assert!(du.bytes() >= empty + 200_000);
    }
}
