//! State snapshots: a consistent export of a member's state machine (every
//! keyspace but the raft log and raft metadata) as a byte stream, and its
//! atomic installation on another member.
//!
//! Stream format: records `[space tag: u8, from 1][key len: u32 BE][key][value len:
//! u32 BE][value]`, cut into chunks of [`CHUNK`] bytes at record
//! boundaries. It serves raft snapshots to lagging members (etcd's
//! Maintenance.Snapshot sends etcd's file format instead, from
//! [`crate::backup`]).

use std::collections::HashSet;
use std::sync::Arc;

use crate::engine::{Engine, Space, View};
use crate::CoreError;

/// Target size of one chunk.
pub const CHUNK: usize = 64 * 1024;

/// One exported (keyspace, key, value).
pub type Record = (Space, Vec<u8>, Vec<u8>);
/// A lazily read keyspace.
type Records = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), CoreError>> + Send>;
/// (stream tag, keyspace, its records).
type Scan = (u8, Space, Records);

/// Meta keys that belong to the raft log of one member and are never
/// exported.
fn member_local(space: Space, key: &[u8]) -> bool {
    space == Space::Meta && key.starts_with(b"raft_")
}

/// A point-in-time export.
pub struct Export {
    view: View,
    /// Applied raft index the export reflects.
    pub applied_index: u64,
}

impl Export {
    /// Takes the export; the caller holds the state lock so that the
    /// applied index and the data agree.
    pub fn take(engine: &Arc<Engine>, applied_index: u64) -> Export {
        Export {
            view: engine.view(),
            applied_index,
        }
    }

    /// The stream, chunk by chunk (lazily read from the view).
    pub fn chunks(&self) -> impl Iterator<Item = Result<Vec<u8>, CoreError>> + Send + 'static {
        let scans: Vec<Scan> = Space::EXPORTED
            .iter()
            .enumerate()
            .map(|(tag, s)| {
                (
                    tag as u8 + 1,
                    *s,
                    Box::new(self.view.scan_all(*s)) as Records,
                )
            })
            .collect();
        let mut scans = scans.into_iter();
        let mut cur: Option<Scan> = scans.next();
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let mut chunk = Vec::with_capacity(CHUNK + 1024);
            while chunk.len() < CHUNK {
                let Some((tag, space, it)) = cur.as_mut() else {
                    break;
                };
                match it.next() {
                    None => cur = scans.next(),
                    Some(Err(e)) => {
                        done = true;
                        return Some(Err(e));
                    }
                    Some(Ok((k, v))) => {
                        if member_local(*space, &k) {
                            continue;
                        }
                        chunk.push(*tag);
                        chunk.extend_from_slice(&(k.len() as u32).to_be_bytes());
                        chunk.extend_from_slice(&k);
                        chunk.extend_from_slice(&(v.len() as u32).to_be_bytes());
                        chunk.extend_from_slice(&v);
                    }
                }
            }
            if chunk.is_empty() {
                done = true;
                None
            } else {
                Some(Ok(chunk))
            }
        })
    }
}

/// Parses a whole stream into (space, key, value) records; malformed input
/// is an error, never a panic.
pub fn parse(data: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, String> {
        if rest.len() < n {
            return Err("truncated snapshot".into());
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    let len = |rest: &mut &[u8]| -> Result<usize, String> {
        let b = take(rest, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    while !rest.is_empty() {
        let tag = take(&mut rest, 1)?[0] as usize;
        if tag == 0 {
            // Zero padding (etcdctl wants snapshot sizes in 512-byte blocks).
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            return Err("garbage after snapshot padding".into());
        }
        let tag = tag - 1;
        let space = *Space::EXPORTED
            .get(tag)
            .ok_or_else(|| format!("bad keyspace tag {tag}"))?;
        let kl = len(&mut rest)?;
        let k = take(&mut rest, kl)?;
        let vl = len(&mut rest)?;
        let v = take(&mut rest, vl)?;
        out.push((space, k, v));
    }
    Ok(out)
}

/// Replaces the state machine's keyspaces with a parsed stream, in `batch`
/// (the caller adds the raft metadata and commits it all atomically). A key
/// is written at most once in the batch: removed only if the stream lacks it.
pub fn install_into(
    engine: &Engine,
    batch: &mut crate::engine::Batch,
    records: Vec<Record>,
) -> Result<(), CoreError> {
    let incoming: HashSet<(Space, Vec<u8>)> =
        records.iter().map(|(s, k, _)| (*s, k.clone())).collect();
    for s in Space::EXPORTED {
        for item in engine.scan_all(s) {
            let (k, _) = item?;
            if !member_local(s, &k) && !incoming.contains(&(s, k.clone())) {
                batch.remove(s, k);
            }
        }
    }
    for (s, k, v) in records {
        if !member_local(s, &k) {
            batch.put(s, k, v);
        }
    }
    Ok(())
}
