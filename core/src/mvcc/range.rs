//! Reads: etcd Range at any retained revision.
//!
//! Contract (etcd's mvcc.ReadView.Range and apply.go Range):
//! - `revision <= 0` reads the current revision; a revision above it is
//!   [`KvError::FutureRevision`], one below the compaction point
//!   [`KvError::Compacted`] (the compaction revision itself is readable).
//! - `count` is the number of keys in the range at that revision, before
//!   the min/max revision filters and the limit.
//! - Without a sort order, keys come in ascending byte order; a sort target
//!   other than KEY with sort order NONE sorts ascending (etcd's rule).
//! - `more` is set when the limit cut the (filtered) result short.

use std::ops::Bound;

use crate::kv::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::mvcc::Rev;
use crate::state::{Fail, State, Wtx};
use crate::KvError;

/// A key as it was at the read revision.
struct Found<'a> {
    key: &'a [u8],
    rev: Rev,
    create_revision: i64,
    version: i64,
    lease: i64,
    value: Option<Vec<u8>>,
}

/// The BTreeMap bounds of an etcd (key, range_end) pair.
pub fn bounds<'a>(key: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if end.is_empty() {
        (Bound::Included(key), Bound::Included(key))
    } else if end == [0] {
        (Bound::Included(key), Bound::Unbounded)
    } else {
        (Bound::Included(key), Bound::Excluded(end))
    }
}

/// Whether (key, end) is an empty interval (end <= key).
pub fn is_empty_range(key: &[u8], end: &[u8]) -> bool {
    !end.is_empty() && end != [0] && end <= key
}

impl State {
    /// Checks a read revision against the store; returns the revision to read.
    pub fn read_revision(&self, requested: i64) -> Result<i64, KvError> {
        if requested <= 0 {
            return Ok(self.revision);
        }
        if requested > self.revision {
            return Err(KvError::FutureRevision);
        }
        if requested < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        Ok(requested)
    }

    /// etcd Range (see the module docs). `w` makes the writes of the
    /// command being applied visible (ranges inside a txn).
    pub fn range(&self, w: Option<&Wtx>, req: &RangeRequest) -> Result<RangeResponse, Fail> {
        let rev = self.read_revision(req.revision)?;
        // Inside a txn that already wrote, the live index holds the txn's
        // writes (revision `w.main`): only a read at revision 0 sees them; an
        // explicit revision reads history.
        let current = rev == self.revision && (req.revision <= 0 || !w.is_some_and(|w| w.wrote()));
        let mut found: Vec<Found<'_>> = Vec::new();
        let mut count = 0i64;
        if !is_empty_range(&req.key, &req.range_end) {
            for (k, ki) in self.keys.range::<[u8], _>(bounds(&req.key, &req.range_end)) {
                let f = if current {
                    match ki.live {
                        Some(l) => Found {
                            key: k,
                            rev: l.mod_rev,
                            create_revision: l.create_revision,
                            version: l.version,
                            lease: l.lease,
                            value: None,
                        },
                        None => continue,
                    }
                } else {
                    let Some(r) = ki.at(rev) else { continue };
                    let rec = self.record(w, r)?;
                    Found {
                        key: k,
                        rev: r,
                        create_revision: rec.create_revision,
                        version: rec.version,
                        lease: rec.lease,
                        value: Some(rec.value),
                    }
                };
                count += 1;
                if req.count_only {
                    continue;
                }
                let keep = (req.max_mod_revision == 0 || f.rev.main <= req.max_mod_revision)
                    && (req.min_mod_revision == 0 || f.rev.main >= req.min_mod_revision)
                    && (req.max_create_revision == 0
                        || f.create_revision <= req.max_create_revision)
                    && (req.min_create_revision == 0
                        || f.create_revision >= req.min_create_revision);
                if keep {
                    found.push(f);
                }
            }
        }
        let mut order = req.sort_order;
        if req.sort_target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        if order != SortOrder::None && req.sort_target == SortTarget::Value {
            for f in found.iter_mut().filter(|f| f.value.is_none()) {
                f.value = Some(self.record(w, f.rev)?.value);
            }
        }
        match (order, req.sort_target) {
            (SortOrder::None, _) | (SortOrder::Ascend, SortTarget::Key) => {}
            (_, target) => {
                found.sort_by(|a, b| match target {
                    SortTarget::Key => a.key.cmp(b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.rev.main.cmp(&b.rev.main),
                    SortTarget::Value => a.value.cmp(&b.value),
                });
                if order == SortOrder::Descend {
                    found.reverse();
                }
            }
        }
        let mut more = false;
        if req.limit > 0 && found.len() > req.limit as usize {
            found.truncate(req.limit as usize);
            more = true;
        }
        let mut kvs = Vec::with_capacity(found.len());
        for f in found {
            let value = if req.keys_only {
                Vec::new()
            } else {
                match f.value {
                    Some(v) => v,
                    None => self.record(w, f.rev)?.value,
                }
            };
            kvs.push(KeyValue {
                key: f.key.to_vec(),
                create_revision: f.create_revision,
                mod_revision: f.rev.main,
                version: f.version,
                value,
                lease: f.lease,
            });
        }
        Ok(RangeResponse { kvs, more, count })
    }
}
