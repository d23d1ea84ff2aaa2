//! Verification: one digest per side over every entry's path, data, ACL
//! and version (the fields a client acts on), plus an entry-by-entry
//! comparison of everything else each side reports (stats, revisions) to
//! name what differs.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

/// Count, bytes and checksum of one side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    pub entries: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries, {} bytes, sha256 {}",
            self.entries, self.bytes, self.sha256
        )
    }
}

/// One entry as read from one side: the checksummed part and the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub data: Vec<u8>,
    /// ACL rendered `perms:scheme:id` in the source's order; empty for etcd.
    pub acl: Vec<String>,
    pub version: i64,
    /// Every other field, named, for the comparison.
    pub other: Vec<(&'static str, i64)>,
}

pub type Side = BTreeMap<String, Entry>;

pub fn digest(side: &Side) -> Digest {
    let mut h = Sha256::new();
    let mut bytes = 0u64;
    for (path, e) in side {
        for part in [path.as_bytes(), &e.data] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update((e.acl.len() as u64).to_be_bytes());
        for a in &e.acl {
            h.update((a.len() as u64).to_be_bytes());
            h.update(a.as_bytes());
        }
        h.update(e.version.to_be_bytes());
        bytes += e.data.len() as u64;
    }
    let sum = h.finalize();
    Digest {
        entries: side.len() as u64,
        bytes,
        sha256: sum.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Entries that differ (missing on one side, or any field unequal), with
/// the first few described.
pub fn compare(source: &Side, target: &Side) -> (u64, Vec<String>) {
    let mut n = 0u64;
    let mut first = Vec::new();
    let mut note = |s: String| {
        n += 1;
        if first.len() < 20 {
            first.push(s);
        }
    };
    for (path, s) in source {
        match target.get(path) {
            None => note(format!("{path}: missing on janus")),
            Some(t) if t != s => {
                let mut what = Vec::new();
                if t.data != s.data {
                    what.push(format!("data ({} vs {} bytes)", s.data.len(), t.data.len()));
                }
                if t.acl != s.acl {
                    what.push(format!("acl {:?} vs {:?}", s.acl, t.acl));
                }
                if t.version != s.version {
                    what.push(format!("version {} vs {}", s.version, t.version));
                }
                for ((name, a), (_, b)) in s.other.iter().zip(&t.other) {
                    if a != b {
                        what.push(format!("{name} {a} vs {b}"));
                    }
                }
                note(format!("{path}: {} (source vs janus)", what.join(", ")));
            }
            Some(_) => {}
        }
    }
    for path in target.keys().filter(|p| !source.contains_key(*p)) {
        note(format!("{path}: only on janus"));
    }
    (n, first)
}
