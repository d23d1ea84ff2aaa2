//! A small file beside the database that records the highest applied index
//! known to be durable, so that a database that comes back *behind* it —
//! an emptied, deleted or truncated journal, missing table files — is
//! refused with an error naming the data dir, never served as if nothing
//! had been lost.
//!
//! The file is rewritten (temp file, fsync, rename) at most every
//! [`INTERVAL`] by the raft loop and on clean stop, each time right after
//! an explicit sync of the store (which the write path no longer syncs: a
//! store that comes back behind its last *synced* point has lost data,
//! while one behind its unsynced writes is replayed from the WAL). The WAL
//! is truncated only below the index recorded here. Losses younger than
//! that window that leave a consistent database are not detected. Format:
//! `janus-checkpoint v1 <applied> <crc32 of the line before>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::CoreError;

pub const FILE: &str = "janus.checkpoint";
/// How often the raft loop refreshes the file.
pub const INTERVAL: Duration = Duration::from_millis(500);

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The recorded durable applied index (`None`: no file, a fresh data dir).
pub fn read(dir: &Path) -> Result<Option<u64>, CoreError> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CoreError::storage(&p, e)),
    };
    let corrupt = |what: &str| CoreError::Corrupt {
        path: p.clone(),
        what: what.to_string(),
    };
    let mut parts = text.trim_end().rsplitn(2, ' ');
    let crc: u32 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| corrupt("no checksum"))?;
    let body = parts.next().ok_or_else(|| corrupt("truncated"))?;
    if crc32fast::hash(body.as_bytes()) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let applied = body
        .strip_prefix("janus-checkpoint v1 ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| corrupt("unknown format"))?;
    Ok(Some(applied))
}

/// Records `applied` durably (write to a temp file, fsync, rename).
pub fn write(dir: &Path, applied: u64) -> Result<(), CoreError> {
    let p = path(dir);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let body = format!("janus-checkpoint v1 {applied}");
    let line = format!("{body} {}\n", crc32fast::hash(body.as_bytes()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, &p)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    res.map_err(|e| CoreError::storage(&p, e))
}

/// Refuses a database whose applied index is behind the checkpoint.
pub fn verify(dir: &Path, store_applied: u64) -> Result<(), CoreError> {
    match read(dir)? {
        Some(recorded) if store_applied < recorded => Err(CoreError::Corrupt {
            path: dir.to_path_buf(),
            what: format!(
                "the database holds applied index {store_applied} but {FILE} records {recorded}: \
                 journal or table files are missing, truncated or corrupt; acknowledged writes \
                 would be lost, refusing to start"
            ),
        }),
        _ => Ok(()),
    }
}
