//! The request checks etcd makes in its API layer (`v3rpc/key.go`) before a
//! request reaches raft: txn op counts, put/delete overlaps inside one txn,
//! and the request size limit. The key and ignore_value/ignore_lease rules
//! live in core (`janus_core::kv::check_put`/`check_key`) and are called from
//! here for etcd's error order.
//!
//! They are ported line by line, quirks included, because clients observe
//! which error wins when a request breaks several rules.

use std::collections::HashSet;

use prost::Message;

use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;
use janus_core::KvError;

/// etcd's `checkRangeRequest`.
pub fn range(r: &pb::RangeRequest) -> Result<(), ApiError> {
    Ok(janus_core::kv::check_key(&r.key)?)
}

/// etcd's `checkPutRequest` (the rule itself is core's).
pub fn put(r: &pb::PutRequest) -> Result<(), ApiError> {
    Ok(janus_core::kv::check_put_parts(
        &r.key,
        !r.value.is_empty(),
        r.lease,
        r.ignore_value,
        r.ignore_lease,
    )?)
}

/// etcd's `checkDeleteRequest`.
pub fn delete(r: &pb::DeleteRangeRequest) -> Result<(), ApiError> {
    Ok(janus_core::kv::check_key(&r.key)?)
}

/// etcd's `Txn` handler checks: `checkTxnRequest` then `checkIntervals` on
/// both branches.
pub fn txn(r: &pb::TxnRequest, max_txn_ops: usize) -> Result<(), ApiError> {
    check_txn(r, max_txn_ops as i64)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest`: the largest of the three lists counts against
/// the limit, and nested txns get what is left of it.
fn check_txn(r: &pb::TxnRequest, max_txn_ops: i64) -> Result<(), ApiError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(KvError::TooManyOps.into());
    }
    for c in &r.compare {
        janus_core::kv::check_key(&c.key)?;
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_op(op: &pb::RequestOp, max_txn_ops: i64) -> Result<(), ApiError> {
    use pb::request_op::Request as R;
    match &op.request {
        Some(R::RequestRange(r)) => range(r),
        Some(R::RequestPut(r)) => put(r),
        Some(R::RequestDeleteRange(r)) => delete(r),
        Some(R::RequestTxn(t)) => check_txn(t, max_txn_ops),
        None => Err(ApiError::KeyNotFound),
    }
}

/// A delete's key interval with etcd's `adt` "string affine" semantics: an
/// empty end is +infinity; a one-key delete is a point. Note that etcd builds
/// the interval from the raw `range_end`, so a from-key delete (`range_end
/// = [0]`) becomes the empty interval `[key, "\0")` and overlaps nothing;
/// that quirk is kept on purpose.
#[derive(Clone, Debug)]
enum Interval {
    Point(Vec<u8>),
    Range { begin: Vec<u8>, end: Vec<u8> },
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        match self {
            Interval::Point(p) => p.as_slice() == k,
            Interval::Range { begin, end } => {
                begin.as_slice() <= k && (end.is_empty() || k < end.as_slice())
            }
        }
    }
}

/// etcd's `checkIntervals`: no key may be put twice, nor put and deleted,
/// in what one txn can execute (then/else branches of a nested txn exclude
/// each other). Returns this level's puts and deletes for the caller.
fn check_intervals(reqs: &[pb::RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>), ApiError> {
    use pb::request_op::Request as R;
    let dup = || ApiError::from(KvError::DuplicateKey);
    let mut dels: Vec<Interval> = Vec::new();
    for req in reqs {
        if let Some(R::RequestDeleteRange(d)) = &req.request {
            dels.push(if d.range_end.is_empty() {
                Interval::Point(d.key.clone())
            } else {
                Interval::Range {
                    begin: d.key.clone(),
                    end: d.range_end.clone(),
                }
            });
        }
    }
    let intersects = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.contains(k));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for req in reqs {
        let Some(R::RequestTxn(t)) = &req.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || intersects(&dels, k) {
                return Err(dup());
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(dup());
            }
            if intersects(&dels, k) {
                return Err(dup());
            }
            puts.insert(k.clone());
        }
        // etcd: dels.Union(delsThen, ["\x00", +inf)) — every nested delete
        // interval that intersects [\0, +inf) joins this level's set.
        dels.extend(dels_then.into_iter().filter(intersects_all));
        dels.extend(dels_else.into_iter().filter(intersects_all));
    }
    for req in reqs {
        let Some(R::RequestPut(p)) = &req.request else {
            continue;
        };
        if puts.contains(&p.key) || intersects(&dels, &p.key) {
            return Err(dup());
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Whether an interval overlaps `["\0", +inf)`, i.e. is non-empty there.
fn intersects_all(iv: &Interval) -> bool {
    match iv {
        Interval::Point(p) => !p.is_empty(),
        // Interval overlap in adt: begin < other.end && other.begin < end.
        Interval::Range { begin: _, end } => end.is_empty() || [0u8].as_slice() < end.as_slice(),
    }
}

/// etcd refuses a proposal whose encoded request exceeds
/// `--max-request-bytes` with `request is too large`. etcd measures the
/// wrapping raft request (a few bytes of header more); the message itself
/// is what is measured here.
pub fn size(req: &impl Message, max_request_bytes: usize) -> Result<(), ApiError> {
    if req.encoded_len() > max_request_bytes {
        return Err(ApiError::RequestTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request as R;

    fn put_op(k: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(R::RequestPut(pb::PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(R::RequestDeleteRange(pb::DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn_op(success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(R::RequestTxn(pb::TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }
    fn txn_of(success: Vec<pb::RequestOp>) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        }
    }
    const DUP: ApiError = ApiError::Kv(KvError::DuplicateKey);

    #[test]
    fn duplicate_puts_and_put_delete_overlaps() {
        assert_eq!(txn(&txn_of(vec![put_op("a"), put_op("a")]), 128), Err(DUP));
        assert_eq!(
            txn(&txn_of(vec![put_op("b"), del_op("a", "c")]), 128),
            Err(DUP)
        );
        assert_eq!(
            txn(&txn_of(vec![put_op("c"), del_op("a", "c")]), 128),
            Ok(())
        );
        assert_eq!(
            txn(&txn_of(vec![put_op("a"), del_op("a", "")]), 128),
            Err(DUP)
        );
        // Two deletes of the same key are fine.
        assert_eq!(
            txn(&txn_of(vec![del_op("a", ""), del_op("a", "")]), 128),
            Ok(())
        );
        // etcd quirk: a from-key delete (range_end "\0") overlaps nothing.
        assert_eq!(
            txn(&txn_of(vec![put_op("b"), del_op("a", "\0")]), 128),
            Ok(())
        );
    }

    #[test]
    fn nested_branches_exclude_each_other() {
        // Same key in then and else of one nested txn: allowed.
        assert_eq!(
            txn(
                &txn_of(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]),
                128
            ),
            Ok(())
        );
        // Outer put and nested put of the same key: duplicate.
        assert_eq!(
            txn(
                &txn_of(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]),
                128
            ),
            Err(DUP)
        );
        // Nested delete against an outer put: duplicate.
        assert_eq!(
            txn(
                &txn_of(vec![put_op("a"), txn_op(vec![del_op("a", "")], vec![])]),
                128
            ),
            Err(DUP)
        );
        // Outer delete against a nested put.
        assert_eq!(
            txn(
                &txn_of(vec![del_op("a", "b"), txn_op(vec![], vec![put_op("a")])]),
                128
            ),
            Err(DUP)
        );
    }

    #[test]
    fn op_limits_follow_check_txn_request() {
        let ops: Vec<_> = (0..3).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(txn(&txn_of(ops.clone()), 3), Ok(()));
        assert_eq!(
            txn(&txn_of(ops.clone()), 2),
            Err(ApiError::Kv(KvError::TooManyOps))
        );
        // A nested txn gets max - outer count.
        let nested = txn_op(vec![put_op("x"), put_op("y")], vec![]);
        assert_eq!(txn(&txn_of(vec![nested.clone(), put_op("z")]), 4), Ok(()));
        assert_eq!(
            txn(&txn_of(vec![nested, put_op("z")]), 3),
            Err(ApiError::Kv(KvError::TooManyOps))
        );
    }

    #[test]
    fn empty_keys_and_empty_ops() {
        let t = pb::TxnRequest {
            compare: vec![pb::Compare::default()],
            success: vec![],
            failure: vec![],
        };
        assert_eq!(txn(&t, 128), Err(ApiError::Kv(KvError::EmptyKey)));
        assert_eq!(
            txn(&txn_of(vec![put_op("")]), 128),
            Err(ApiError::Kv(KvError::EmptyKey))
        );
        assert_eq!(
            txn(&txn_of(vec![pb::RequestOp { request: None }]), 128),
            Err(ApiError::KeyNotFound)
        );
        let p = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(put(&p), Err(ApiError::Kv(KvError::ValueProvided)));
        let p = pb::PutRequest {
            key: b"k".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(put(&p), Err(ApiError::Kv(KvError::LeaseProvided)));
    }

    #[test]
    fn size_limit() {
        let p = pb::PutRequest {
            key: b"k".to_vec(),
            value: vec![0; 100],
            ..Default::default()
        };
        assert_eq!(size(&p, 1000), Ok(()));
        assert_eq!(size(&p, 50), Err(ApiError::RequestTooLarge));
    }
}
