//! etcd's snapshot file: a bbolt database in etcd 3.4's layout (what
//! `etcdctl snapshot save` writes and `snapshot status` / `snapshot
//! restore` read), written from and read into core's
//! [`janus_core::backup`] values.
//!
//! Buckets, as etcd's `mvcc/kvstore.go`, `lease/lessor.go`,
//! `etcdserver/api/membership` and `auth/store.go` lay them out:
//! - `key`: one entry per MVCC record, keyed by the 17-byte revision
//!   (`main` 8 bytes BE, `_`, `sub` 8 bytes BE), a tombstone with a
//!   trailing `t`; the value is an `mvccpb.KeyValue` (a tombstone's holds
//!   only the key).
//! - `meta`: `consistent_index` (8 bytes BE) and, once compacted,
//!   `finishedCompactRev` / `scheduledCompactRev` (revision keys).
//! - `lease`: `leasepb.Lease` by 8-byte BE id.
//! - `members` (id in hex → member JSON), `members_removed`, `cluster`
//!   (`clusterVersion`), `alarm`, `auth`, `authUsers`, `authRoles`.
//! - `janus`: a bucket etcd ignores, holding every record of janus's own
//!   state (keyspace tag byte + key → value): znode metadata (ACLs, node
//!   kinds, ctime/mtime, null data, the tree's counters), session FIFO
//!   state, alarms and the auth store, which etcd's buckets cannot carry.
//!   A janus restore prefers it; an etcd file has none and restores from
//!   `key`, `lease` and `meta`.
//!
//! The auth store goes to `auth`, `authUsers` and `authRoles` in etcd's
//! encoding ((`snapshot_auth.rs`)), so etcd restores it; a janus
//! restore reads it from the `janus` bucket, or from those buckets in an
//! etcd file.
//!
//! The file is written with the `bbolt-rs` crate (a Rust port of bbolt
//! that writes Go bolt's format). etcd appends the file's sha256 when it
//! streams a snapshot; [`split_checksum`] checks and removes it.

use std::path::Path;

use bbolt_rs::{BucketRwApi, DbRwAPI, TxRwRefApi};
use janus_core::backup::{Backup, PortableAuth, PortableKv, PortableLease};
use janus_core::Member;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::pb::mvccpb;
use crate::snapshot_auth::{self, AUTH, AUTH_ROLES, AUTH_USERS};

/// Bucket names.
const KEY: &[u8] = b"key";
const META: &[u8] = b"meta";
const LEASE: &[u8] = b"lease";
const MEMBERS: &[u8] = b"members";
const MEMBERS_REMOVED: &[u8] = b"members_removed";
const CLUSTER: &[u8] = b"cluster";
const ALARM: &[u8] = b"alarm";
const JANUS: &[u8] = b"janus";

const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";

/// The cluster version etcd's `cluster` bucket records.
const CLUSTER_VERSION: &[u8] = b"3.4.0";

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// etcd's 17-byte revision key (`revToBytes`), `t` appended for a
/// tombstone.
fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&(main as u64).to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&(sub as u64).to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// (main, sub, tombstone) of a revision key.
fn parse_rev_key(k: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        _ => return None,
    };
    if k[8] != b'_' {
        return None;
    }
    let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(k[9..17].try_into().ok()?) as i64;
    Some((main, sub, tombstone))
}

/// etcd's member JSON (`membership.Member`).
fn member_json(m: &Member) -> Vec<u8> {
    let mut v = serde_json::json!({
        "id": m.id,
        "peerURLs": m.peer_urls,
        "name": m.name,
        "clientURLs": m.client_urls,
    });
    if m.is_learner {
        v["isLearner"] = serde_json::Value::Bool(true);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn bolt_err(e: impl std::fmt::Display) -> String {
    format!("snapshot file: {e}")
}

/// Writes the bolt file of `backup` (without the trailing checksum) and
/// returns its bytes. `tmp_dir` holds the file while it is built.
pub fn write(backup: &Backup, members: &[Member], tmp_dir: &Path) -> Result<Vec<u8>, String> {
    let kvs = backup.kvs().map_err(|e| e.to_string())?;
    let leases = backup.leases().map_err(|e| e.to_string())?;
    let auth = backup.auth().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir_in(tmp_dir).map_err(bolt_err)?;
    let path = dir.path().join("snapshot.db");
    {
        let mut db = bbolt_rs::Bolt::open(&path).map_err(bolt_err)?;
        db.update(|mut tx| {
            for name in [MEMBERS_REMOVED, CLUSTER, ALARM] {
                tx.create_bucket_if_not_exists(name)?;
            }
            for (name, entries) in snapshot_auth::entries(&auth) {
                let mut b = tx.create_bucket_if_not_exists(name)?;
                for (k, v) in entries {
                    b.put(k, v)?;
                }
            }
            {
                let mut b = tx.create_bucket_if_not_exists(KEY)?;
                for kv in &kvs {
                    let pb = if kv.tombstone {
                        mvccpb::KeyValue {
                            key: kv.key.clone(),
                            ..Default::default()
                        }
                    } else {
                        mvccpb::KeyValue {
                            key: kv.key.clone(),
                            create_revision: kv.create_revision,
                            mod_revision: kv.main,
                            version: kv.version,
                            value: kv.value.clone(),
                            lease: kv.lease,
                        }
                    };
                    b.put(rev_key(kv.main, kv.sub, kv.tombstone), pb.encode_to_vec())?;
                }
            }
            {
                let mut b = tx.create_bucket_if_not_exists(META)?;
                b.put(CONSISTENT_INDEX, backup.applied_index.to_be_bytes())?;
                if backup.compact_revision > 0 {
                    let r = rev_key(backup.compact_revision, 0, false);
                    b.put(FINISHED_COMPACT, &r)?;
                    b.put(SCHEDULED_COMPACT, &r)?;
                }
            }
            {
                let mut b = tx.create_bucket_if_not_exists(LEASE)?;
                for l in &leases {
                    let pb = LeasePb {
                        id: l.id,
                        ttl: l.ttl_secs,
                        remaining_ttl: 0,
                    };
                    b.put(l.id.to_be_bytes(), pb.encode_to_vec())?;
                }
            }
            {
                let mut b = tx.create_bucket_if_not_exists(MEMBERS)?;
                for m in members {
                    b.put(format!("{:x}", m.id), member_json(m))?;
                }
            }
            {
                let mut b = tx.create_bucket_if_not_exists(CLUSTER)?;
                b.put(b"clusterVersion", CLUSTER_VERSION)?;
            }
            {
                let mut b = tx.create_bucket_if_not_exists(JANUS)?;
                // Header: applied index, revision, compact revision.
                b.put([0u8], janus_header(backup))?;
                for (tag, k, v) in &backup.raw {
                    let mut key = Vec::with_capacity(k.len() + 1);
                    key.push(tag + 1);
                    key.extend_from_slice(k);
                    b.put(key, v)?;
                }
            }
            Ok(())
        })
        .map_err(bolt_err)?;
    }
    std::fs::read(&path).map_err(bolt_err)
}

fn janus_header(b: &Backup) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&b.applied_index.to_be_bytes());
    h.extend_from_slice(&(b.revision as u64).to_be_bytes());
    h.extend_from_slice(&(b.compact_revision as u64).to_be_bytes());
    h
}

/// A file's bytes without the sha256 etcd appends to a streamed snapshot,
/// after checking it. A bolt file's size is a multiple of its page size,
/// so a size of 512·n + 32 means a checksum is there (etcd's own test);
/// a file without one is returned whole (`false`).
pub fn split_checksum(file: &[u8]) -> Result<(&[u8], bool), String> {
    if file.len() % 512 != 32 {
        return Ok((file, false));
    }
    let (db, sha) = file.split_at(file.len() - 32);
    if Sha256::digest(db).as_slice() != sha {
        return Err("snapshot file: sha256 mismatch (the file is corrupt or truncated)".into());
    }
    Ok((db, true))
}

/// What a snapshot file holds, read back.
#[derive(Debug, Default)]
pub struct Contents {
    /// The `janus` bucket, when janus wrote the file and nothing changed
    /// it since (see [`Contents::stale_janus`]).
    pub janus: Option<Backup>,
    /// The file has a `janus` bucket that no longer describes it: etcd
    /// restored a janus snapshot (its restore keeps unknown buckets), ran,
    /// and wrote this file. etcd's restore sets the consistent index to the
    /// member count and every later apply moves it, so a `consistent_index`
    /// other than the janus header's applied index, or a revision in `key`
    /// past the header's, means etcd changed the data: the file is read as
    /// an etcd file.
    pub stale_janus: bool,
    /// From `key`, `lease` and `meta`.
    pub kvs: Vec<PortableKv>,
    pub leases: Vec<PortableLease>,
    /// From `auth`, `authUsers` and `authRoles` (`None`: all empty).
    pub auth: Option<PortableAuth>,
    pub compact_revision: i64,
    pub consistent_index: u64,
    /// `etcdctl snapshot status`: the CRC-32C over every bucket name, key
    /// and value, the last revision of `key`, the number of entries, the
    /// file's size.
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// Reads a bolt file (checksum already removed) with [`crate::bolt_read`].
pub fn read(db_bytes: &[u8]) -> Result<Contents, String> {
    let (buckets, total_size) = crate::bolt_read::buckets(db_bytes).map_err(bolt_err)?;
    let mut out = Contents {
        total_size,
        ..Default::default()
    };
    let mut hash = Crc32c::default();
    let mut problem: Option<String> = None;
    let mut janus: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let (mut auth, mut users, mut roles) = (Vec::new(), Vec::new(), Vec::new());
    {
        for (name, entries) in &buckets {
            let name = name.as_slice();
            hash.update(name);
            for (k, v) in entries {
                let (k, v) = (k.as_slice(), v.as_slice());
                hash.update(k);
                hash.update(v);
                out.total_keys += 1;
                match name {
                    KEY => match parse_rev_key(k) {
                        Some((main, sub, tombstone)) => {
                            out.revision = main;
                            match mvccpb::KeyValue::decode(v) {
                                Ok(kv) => out.kvs.push(PortableKv {
                                    main,
                                    sub,
                                    tombstone,
                                    key: kv.key,
                                    value: kv.value,
                                    create_revision: kv.create_revision,
                                    version: kv.version,
                                    lease: kv.lease,
                                }),
                                Err(e) => problem = Some(format!("key {k:?}: {e}")),
                            }
                        }
                        None => problem = Some(format!("bad revision key {k:?}")),
                    },
                    LEASE => match LeasePb::decode(v) {
                        Ok(l) => out.leases.push(PortableLease {
                            id: l.id,
                            ttl_secs: l.ttl,
                        }),
                        Err(e) => problem = Some(format!("lease {k:?}: {e}")),
                    },
                    META if k == FINISHED_COMPACT => {
                        if let Some((main, _, _)) = parse_rev_key(v) {
                            out.compact_revision = main;
                        }
                    }
                    META if k == CONSISTENT_INDEX => {
                        if let Ok(b) = <[u8; 8]>::try_from(v) {
                            out.consistent_index = u64::from_be_bytes(b);
                        }
                    }
                    JANUS => janus.push((k.to_vec(), v.to_vec())),
                    AUTH => auth.push((k.to_vec(), v.to_vec())),
                    AUTH_USERS => users.push((k.to_vec(), v.to_vec())),
                    AUTH_ROLES => roles.push((k.to_vec(), v.to_vec())),
                    _ => {}
                }
            }
        }
    }
    if let Some(p) = problem {
        return Err(format!("snapshot file: {p}"));
    }
    out.hash = hash.finish();
    out.auth = snapshot_auth::read(&auth, &users, &roles).map_err(bolt_err)?;
    if !janus.is_empty() {
        let b = janus_backup(janus)?;
        if b.applied_index == out.consistent_index && out.revision <= b.revision {
            out.janus = Some(b);
        } else {
            out.stale_janus = true;
        }
    }
    Ok(out)
}

fn janus_backup(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Backup, String> {
    let mut b = Backup::default();
    for (k, v) in entries {
        match k.split_first() {
            Some((0, [])) => {
                let n = |i: usize| -> Result<u64, String> {
                    v.get(i * 8..i * 8 + 8)
                        .and_then(|s| <[u8; 8]>::try_from(s).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| "snapshot file: bad janus header".to_string())
                };
                b.applied_index = n(0)?;
                b.revision = n(1)? as i64;
                b.compact_revision = n(2)? as i64;
            }
            Some((tag, key)) if *tag > 0 => b.raw.push((tag - 1, key.to_vec(), v)),
            _ => return Err("snapshot file: bad janus record".into()),
        }
    }
    Ok(b)
}

/// CRC-32C (Castagnoli), as Go's `crc32.MakeTable(crc32.Castagnoli)`,
/// which `etcdctl snapshot status` reports.
struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *t = c;
        }
        Crc32c {
            table,
            crc: 0xffff_ffff,
        }
    }
}

impl Crc32c {
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.crc = self.table[((self.crc ^ u32::from(*b)) & 0xff) as usize] ^ (self.crc >> 8);
        }
    }
    fn finish(&self) -> u32 {
        !self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        let mut c = Crc32c::default();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xe306_9283);
    }

    #[test]
    fn revision_keys_roundtrip() {
        assert_eq!(parse_rev_key(&rev_key(5, 2, false)), Some((5, 2, false)));
        assert_eq!(parse_rev_key(&rev_key(7, 0, true)), Some((7, 0, true)));
        assert_eq!(parse_rev_key(b"short"), None);
    }

    #[test]
    fn checksum_is_checked() {
        let mut file = vec![7u8; 4096];
        file.extend_from_slice(&Sha256::digest(&file));
        assert_eq!(
            split_checksum(&file).map(|(d, h)| (d.len(), h)),
            Ok((4096, true))
        );
        let n = file.len();
        file[n - 1] ^= 1;
        assert!(split_checksum(&file).is_err());
        assert_eq!(split_checksum(&[0u8; 4096]).map(|(_, h)| h), Ok(false));
    }

    #[test]
    fn written_file_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backup = Backup {
            applied_index: 9,
            revision: 4,
            compact_revision: 0,
            raw: vec![(0, b"x".to_vec(), b"y".to_vec())],
        };
        // The history round trip (`key`, `lease`) is checked against
        // etcdctl by the integration tests.
        let bytes = write(&backup, &[], dir.path()).expect("write");
        assert_eq!(bytes.len() % 4096, 0);
        let c = read(&bytes).expect("read");
        assert_eq!(c.consistent_index, 9);
        assert!(!c.stale_janus);
        let j = c.janus.expect("janus bucket");
        assert_eq!((j.applied_index, j.revision), (9, 4));
        assert_eq!(j.raw, backup.raw);
    }

    #[test]
    fn a_janus_bucket_etcd_has_moved_past_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backup = Backup {
            applied_index: 9,
            revision: 4,
            ..Default::default()
        };
        let path = dir.path().join("f.db");
        std::fs::write(&path, write(&backup, &[], dir.path()).expect("write")).expect("save");
        // What etcd does after restoring the file: its own consistent index.
        {
            let mut db = bbolt_rs::Bolt::open(&path).expect("open");
            db.update(|mut tx| {
                let mut b = tx.create_bucket_if_not_exists(META)?;
                b.put(CONSISTENT_INDEX, 3u64.to_be_bytes())?;
                Ok(())
            })
            .expect("update");
        }
        let c = read(&std::fs::read(&path).expect("read")).expect("contents");
        assert!(c.stale_janus);
        assert!(c.janus.is_none());
        assert_eq!(c.consistent_index, 3);
    }
}
