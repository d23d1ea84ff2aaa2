//! What etcd's lock and election services share: the server side of the
//! Go `clientv3/concurrency` package (`key.go`, `session.go`), which etcd
//! 3.4 runs in-process against its own KV API.
//!
//! Every step goes through [`KvService`] (and the watch hub with the same
//! read-permission check a watch gets), so each read and write is checked
//! against the caller's credentials exactly as etcd's in-process client
//! forwards them. Nothing here is a KV rule of its own: ownership is "the
//! key under `name/` with the smallest create revision", as in etcd.

use janus_core::auth::Access;
use janus_core::watch::{EventKind, WatchRequest};
use janus_core::KvError;

use crate::caller::Credentials;
use crate::context::Shared;
use crate::kv_service::KvService;
use crate::lease_service::LeaseService;
use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;

/// An error as etcd's lock and election services answer it: they call
/// the KV API through an in-process client, whose errors come back as
/// plain Go errors, so gRPC sends every one with code Unknown and its
/// text unchanged (`etcdserver: requested lease not found`, ...).
pub fn go_error(e: ApiError) -> ApiError {
    match e {
        ApiError::Concurrency(_) => e,
        other => ApiError::Concurrency(other.code_and_message().1),
    }
}

/// `concurrency.defaultSessionTTL`: the lease a lock or campaign without
/// one gets (etcd grants it and never keeps it alive: `s.Orphan()`).
const SESSION_TTL: i64 = 60;

/// The lease a request's session uses: `0` (no lease) grants a fresh one
/// of [`SESSION_TTL`] seconds, as `concurrency.NewSession` does; any other
/// id is used as given (an unknown one fails at the put).
pub async fn session_lease(s: &Shared, lease: i64) -> Result<i64, ApiError> {
    if lease != 0 {
        return Ok(lease);
    }
    let g = LeaseService(s.clone())
        .grant(pb::LeaseGrantRequest {
            ttl: SESSION_TTL,
            id: 0,
        })
        .await?;
    Ok(g.id)
}

/// `fmt.Sprintf("%s/%x", name, lease)`: the waiter's own key. Go prints a
/// negative id as `-` and the magnitude's hex digits.
pub fn own_key(name: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut k = name.to_vec();
    k.push(b'/');
    k.extend_from_slice(hex.as_bytes());
    k
}

/// `name + "/"`: the prefix every waiter's key lives under.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// `clientv3.GetPrefixRangeEnd`.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// `Get(pfx, WithFirstCreate()...)` / `WithLastCreate()`: the key under
/// `pfx` with the smallest (largest) create revision, optionally only
/// among keys created at or before `max_create_revision`.
pub fn by_create(pfx: &[u8], first: bool, max_create_revision: i64) -> pb::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    pb::RangeRequest {
        key: pfx.to_vec(),
        range_end: prefix_end(pfx),
        limit: 1,
        sort_order: if first {
            SortOrder::Ascend
        } else {
            SortOrder::Descend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// `Compare(CreateRevision(key), "=", rev)`.
pub fn created_at(key: &[u8], rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(rev)),
    }
}

pub fn op_put(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub fn op_get(r: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(r)),
    }
}

pub fn op_get_key(key: &[u8]) -> pb::RequestOp {
    op_get(pb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })
}

pub fn op_delete(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The kvs of the range response at `index` of a txn's responses.
pub fn range_kvs(
    resp: &pb::TxnResponse,
    index: usize,
) -> Result<&[crate::pb::mvccpb::KeyValue], ApiError> {
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(pb::response_op::Response::ResponseRange(r)) => Ok(&r.kvs),
        _ => Err(ApiError::Kv(KvError::Internal(
            "janus: txn response is missing its range".into(),
        ))),
    }
}

/// The revision of a response header (etcd always sets one).
pub fn header_revision(h: &Option<pb::ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// `waitDeletes`: waits until no key under `pfx` was created at or before
/// `max_create_revision`, each round watching the deletion of the newest
/// such key (the immediate predecessor), and answers the header of the
/// read that found none.
pub async fn wait_deletes(
    s: &Shared,
    pfx: &[u8],
    max_create_revision: i64,
) -> Result<Option<pb::ResponseHeader>, ApiError> {
    let kv = KvService(s.clone());
    loop {
        let resp = kv.range(by_create(pfx, false, max_create_revision)).await?;
        let Some(last) = resp.kvs.first() else {
            return Ok(resp.header);
        };
        wait_delete(s, &last.key, header_revision(&resp.header)).await?;
    }
}

/// `waitDelete`: watches `key` from `rev` until a delete event.
async fn wait_delete(s: &Shared, key: &[u8], rev: i64) -> Result<(), ApiError> {
    let mut w = watch(s, key, Vec::new(), rev).await?;
    let stopped = s.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return Err(janus_core::CoreError::Stopped.into()),
            batch = w.next() => {
                if batch?.iter().any(|e| e.kind == EventKind::Delete) {
                    return Ok(());
                }
            }
        }
    }
}

/// A watch on `key..range_end` from `rev`, refused without read
/// permission on that range (etcd's `isWatchPermitted`).
pub async fn watch(
    s: &Shared,
    key: &[u8],
    range_end: Vec<u8>,
    rev: i64,
) -> Result<janus_core::watch::Watcher, ApiError> {
    let caller = crate::caller::current(s).await?;
    s.node.auth_check(&caller, key, &range_end, Access::Read)?;
    Ok(s.node.watch(WatchRequest {
        key: key.to_vec(),
        range_end,
        start_revision: rev,
        tree_events: false,
    })?)
}

/// Undoes a half-finished lock or campaign when its request goes away
/// (the client cancelled or disconnected: tonic drops the handler, where
/// etcd's Go code sees its context cancelled and deletes its key). Runs
/// `txn` with the request's credentials in a task of its own, unless
/// [`Cleanup::disarm`] was called.
pub struct Cleanup {
    s: Shared,
    creds: Credentials,
    txn: Option<pb::TxnRequest>,
}

impl Cleanup {
    pub fn new(s: &Shared, txn: pb::TxnRequest) -> Cleanup {
        Cleanup {
            s: s.clone(),
            creds: crate::caller::captured(),
            txn: Some(txn),
        }
    }

    /// Runs the cleanup now (a failed wait), answering its error if any.
    pub async fn run(mut self) -> Result<(), ApiError> {
        match self.txn.take() {
            Some(t) => KvService(self.s.clone()).txn(t).await.map(|_| ()),
            None => Ok(()),
        }
    }

    pub fn disarm(mut self) {
        self.txn = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(txn) = self.txn.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let kv = KvService(self.s.clone());
        let creds = self.creds.clone();
        rt.spawn(crate::caller::within(creds, async move {
            if let Err(e) = kv.txn(txn).await {
                tracing::warn!(?e, "lock/election cleanup after a cancelled request failed");
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_keys_print_the_lease_in_go_hex() {
        assert_eq!(own_key(b"l", 0x694d_8a1b_2c3d), b"l/694d8a1b2c3d".to_vec());
        assert_eq!(own_key(b"l", -26), b"l/-1a".to_vec());
    }

    #[test]
    fn prefix_ends_follow_clientv3() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
