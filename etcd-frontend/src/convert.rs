//! One-to-one conversions between etcd's prost types and janus-core's.
//!
//! Requests go wire → core, responses core → wire. Nothing here decides a KV
//! rule; the only judgement is how to read proto3's loose encodings the way
//! etcd's Go code does (an unknown enum number behaves like the zero value,
//! a `Compare` whose `target_union` does not match `target` compares against
//! the zero value, as Go's generated getters return it).

use janus_core::kv as core;
use janus_core::watch::{Event, EventKind};

use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;
use crate::status::ApiError;

pub fn kv_to_pb(kv: core::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn range_req(r: &pb::RangeRequest) -> core::RangeRequest {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    core::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        sort_order: match O::try_from(r.sort_order) {
            Ok(O::Ascend) => core::SortOrder::Ascend,
            Ok(O::Descend) => core::SortOrder::Descend,
            _ => core::SortOrder::None,
        },
        sort_target: match T::try_from(r.sort_target) {
            Ok(T::Version) => core::SortTarget::Version,
            Ok(T::Create) => core::SortTarget::Create,
            Ok(T::Mod) => core::SortTarget::Mod,
            Ok(T::Value) => core::SortTarget::Value,
            _ => core::SortTarget::Key,
        },
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn put_req(r: &pb::PutRequest) -> core::PutRequest {
    core::PutRequest {
        key: r.key.clone(),
        value: r.value.clone(),
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_req(r: &pb::DeleteRangeRequest) -> core::DeleteRangeRequest {
    core::DeleteRangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        prev_kv: r.prev_kv,
    }
}

pub fn compare(c: &pb::Compare) -> core::Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result) {
        Ok(R::Greater) => core::CompareResult::Greater,
        Ok(R::Less) => core::CompareResult::Less,
        Ok(R::NotEqual) => core::CompareResult::NotEqual,
        _ => core::CompareResult::Equal,
    };
    let int = |want: fn(&U) -> Option<i64>| c.target_union.as_ref().and_then(want).unwrap_or(0);
    let target = match T::try_from(c.target) {
        Ok(T::Create) => core::CompareTarget::Create(int(|u| match u {
            U::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(T::Mod) => core::CompareTarget::Mod(int(|u| match u {
            U::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(T::Value) => core::CompareTarget::Value(match &c.target_union {
            Some(U::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
        Ok(T::Lease) => core::CompareTarget::Lease(int(|u| match u {
            U::Lease(v) => Some(*v),
            _ => None,
        })),
        _ => core::CompareTarget::Version(int(|u| match u {
            U::Version(v) => Some(*v),
            _ => None,
        })),
    };
    core::Compare {
        result,
        target,
        key: c.key.clone(),
        range_end: c.range_end.clone(),
    }
}

/// A txn request; an op with no request set is etcd's `key not found`
/// (normally caught earlier by [`crate::validate`]).
pub fn txn_req(r: &pb::TxnRequest) -> Result<core::TxnRequest, ApiError> {
    let ops = |ops: &[pb::RequestOp]| ops.iter().map(request_op).collect::<Result<Vec<_>, _>>();
    Ok(core::TxnRequest {
        compare: r.compare.iter().map(compare).collect(),
        success: ops(&r.success)?,
        failure: ops(&r.failure)?,
    })
}

fn request_op(op: &pb::RequestOp) -> Result<core::RequestOp, ApiError> {
    use pb::request_op::Request as R;
    Ok(match &op.request {
        Some(R::RequestRange(r)) => core::RequestOp::Range(range_req(r)),
        Some(R::RequestPut(r)) => core::RequestOp::Put(put_req(r)),
        Some(R::RequestDeleteRange(r)) => core::RequestOp::DeleteRange(delete_req(r)),
        Some(R::RequestTxn(r)) => core::RequestOp::Txn(txn_req(r)?),
        None => return Err(ApiError::KeyNotFound),
    })
}

/// A response header carrying only a revision, as etcd puts inside txns.
fn rev_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..Default::default()
    })
}

pub fn range_resp(r: core::RangeResponse, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_resp(r: core::PutResponse, header: Option<pb::ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: r.prev_kv.map(kv_to_pb),
    }
}

pub fn delete_resp(
    r: core::DeleteRangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// A txn response. `revision` is the store revision after the txn; etcd
/// gives every nested response a header holding only the revision it saw
/// inside the txn: `begin` (the revision before the txn) for reads and
/// no-op deletes until the txn has changed something, `begin + 1` after
/// (mvcc's `storeTxnWrite.Range/Put/DeleteRange`).
pub fn txn_resp(
    r: core::TxnResponse,
    revision: i64,
    header: Option<pb::ResponseHeader>,
) -> pb::TxnResponse {
    let changed_any = txn_changes(&r);
    let begin = if changed_any { revision - 1 } else { revision };
    let mut changed = false;
    let mut resp = nested_txn_resp(r, begin, &mut changed);
    resp.header = header;
    resp
}

fn nested_txn_resp(r: core::TxnResponse, begin: i64, changed: &mut bool) -> pb::TxnResponse {
    use pb::response_op::Response as R;
    let mut responses = Vec::with_capacity(r.responses.len());
    for op in r.responses {
        let rev_now = |changed: bool| if changed { begin + 1 } else { begin };
        let response = match op {
            core::ResponseOp::Range(x) => {
                R::ResponseRange(range_resp(x, rev_header(rev_now(*changed))))
            }
            core::ResponseOp::Put(x) => {
                *changed = true;
                R::ResponsePut(put_resp(x, rev_header(begin + 1)))
            }
            core::ResponseOp::DeleteRange(x) => {
                if x.deleted > 0 {
                    *changed = true;
                }
                R::ResponseDeleteRange(delete_resp(x, rev_header(rev_now(*changed))))
            }
            core::ResponseOp::Txn(x) => {
                let mut t = nested_txn_resp(x, begin, changed);
                // etcd leaves nested txn headers empty (newTxnResp allocates
                // one; only the outermost one is filled).
                t.header = Some(pb::ResponseHeader::default());
                R::ResponseTxn(t)
            }
        };
        responses.push(pb::ResponseOp {
            response: Some(response),
        });
    }
    pb::TxnResponse {
        header: None,
        succeeded: r.succeeded,
        responses,
    }
}

/// Whether the executed branch of a txn wrote anything.
pub fn txn_changes(r: &core::TxnResponse) -> bool {
    r.responses.iter().any(|op| match op {
        core::ResponseOp::Put(_) => true,
        core::ResponseOp::DeleteRange(d) => d.deleted > 0,
        core::ResponseOp::Txn(t) => txn_changes(t),
        core::ResponseOp::Range(_) => false,
    })
}

/// A watch event; `prev_kv` only when the watcher asked for it.
pub fn event_to_pb(e: Event, with_prev: bool) -> Option<mvccpb::Event> {
    let kind = match e.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
        EventKind::ChildrenChanged | EventKind::ImplicitCreated | EventKind::ImplicitDeleted => {
            return None
        }
    };
    Some(mvccpb::Event {
        r#type: kind as i32,
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: if with_prev {
            e.prev_kv.map(kv_to_pb)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reads_the_union_like_go_getters() {
        let c = pb::Compare {
            result: pb::compare::CompareResult::Greater as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            // Wrong union variant: Go's GetModRevision() returns 0.
            target_union: Some(pb::compare::TargetUnion::Version(7)),
            range_end: vec![],
        };
        let got = compare(&c);
        assert_eq!(got.result, core::CompareResult::Greater);
        assert_eq!(got.target, core::CompareTarget::Mod(0));
        let c = pb::Compare {
            target: pb::compare::CompareTarget::Value as i32,
            target_union: Some(pb::compare::TargetUnion::Value(b"v".to_vec())),
            ..c
        };
        assert_eq!(
            compare(&c).target,
            core::CompareTarget::Value(b"v".to_vec())
        );
    }

    #[test]
    fn unknown_enum_numbers_read_as_zero_values() {
        let r = pb::RangeRequest {
            key: b"a".to_vec(),
            sort_order: 9,
            sort_target: 42,
            ..Default::default()
        };
        let c = range_req(&r);
        assert_eq!(c.sort_order, core::SortOrder::None);
        assert_eq!(c.sort_target, core::SortTarget::Key);
    }

    #[test]
    fn empty_request_op_is_key_not_found() {
        let t = pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(txn_req(&t).err(), Some(ApiError::KeyNotFound));
    }

    #[test]
    fn nested_txn_headers_follow_mvcc_revisions() {
        // Branch: range, delete(0), put, range, delete(1) → begin=10, after=11.
        let r = core::TxnResponse {
            succeeded: true,
            responses: vec![
                core::ResponseOp::Range(Default::default()),
                core::ResponseOp::DeleteRange(Default::default()),
                core::ResponseOp::Put(Default::default()),
                core::ResponseOp::Range(Default::default()),
                core::ResponseOp::DeleteRange(core::DeleteRangeResponse {
                    deleted: 1,
                    prev_kvs: vec![],
                }),
            ],
        };
        let t = txn_resp(r, 11, None);
        let revs: Vec<i64> = t
            .responses
            .iter()
            .map(|op| match op.response.as_ref().unwrap() {
                pb::response_op::Response::ResponseRange(x) => x.header.unwrap().revision,
                pb::response_op::Response::ResponsePut(x) => x.header.unwrap().revision,
                pb::response_op::Response::ResponseDeleteRange(x) => x.header.unwrap().revision,
                pb::response_op::Response::ResponseTxn(_) => -1,
            })
            .collect();
        assert_eq!(revs, vec![10, 10, 11, 11, 11]);
        // Read-only txn: everything at the current revision.
        let r = core::TxnResponse {
            succeeded: false,
            responses: vec![core::ResponseOp::Range(Default::default())],
        };
        let t = txn_resp(r, 5, None);
        match t.responses[0].response.as_ref().unwrap() {
            pb::response_op::Response::ResponseRange(x) => {
                assert_eq!(x.header.unwrap().revision, 5)
            }
            _ => panic!(),
        }
    }
}
