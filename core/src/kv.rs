//! etcd-shaped request and response types of the KV, as plain Rust values.
//!
//! Field meanings follow etcd's `rpc.proto`/`kv.proto` exactly; the etcd
//! frontend converts between these and the prost types one to one. Conventions
//! shared by every range (`key`, `range_end`):
//! - `range_end` empty: the single key `key`.
//! - `range_end == [0]`: every key `>= key` (and `key == [0]` too: all keys).
//! - otherwise the half-open interval `[key, range_end)`.

use serde::{Deserialize, Serialize};

/// One key's state at one revision, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Revision of the last creation of this key.
    pub create_revision: i64,
    /// Revision of the last modification.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after creation).
    pub version: i64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Attached lease id, 0 if none.
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// etcd `RangeRequest`. `revision <= 0` reads the current revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// Maximum number of keys returned; 0 = no limit.
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// Serve from the local member without a ReadIndex.
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` returned.
    pub more: bool,
    /// Number of keys in the range (before limit, after revision filters as etcd does).
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    /// Filled only when `prev_kv` was asked.
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Lease(i64),
}

/// etcd `Compare`: with a `range_end`, it must hold for every key in range.
/// A missing key compares as version/create/mod/lease 0 and never matches a
/// value compare (etcd's behaviour).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

/// The checks on a put that need no state (etcd's `checkPutRequest`):
/// a key, and no value/lease given together with ignore_value/ignore_lease.
/// The one place these rules live: the state machine applies them, and the
/// etcd frontend calls them early to answer in etcd's error order.
pub fn check_put(req: &PutRequest) -> Result<(), crate::KvError> {
    check_put_parts(
        &req.key,
        !req.value.is_empty(),
        req.lease,
        req.ignore_value,
        req.ignore_lease,
    )
}

/// [`check_put`] on borrowed parts (callers holding another message type
/// need not copy the value).
pub fn check_put_parts(
    key: &[u8],
    has_value: bool,
    lease: i64,
    ignore_value: bool,
    ignore_lease: bool,
) -> Result<(), crate::KvError> {
    check_key(key)?;
    if ignore_value && has_value {
        return Err(crate::KvError::ValueProvided);
    }
    if ignore_lease && lease != 0 {
        return Err(crate::KvError::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkRangeRequest` / `checkDeleteRequest`: a key is required.
pub fn check_key(key: &[u8]) -> Result<(), crate::KvError> {
    if key.is_empty() {
        return Err(crate::KvError::EmptyKey);
    }
    Ok(())
}

/// Whether `key` lies in the range described by (`start`, `end`) with etcd's
/// conventions (see the module docs).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

/// A lease as listed by `leases()`/`time_to_live()`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: i64,
    /// TTL granted, in seconds (rounded up from milliseconds).
    pub granted_ttl: i64,
    /// Remaining TTL in seconds; -1 if the lease is unknown/expired.
    pub ttl: i64,
    /// Attached keys, only when asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl: i64,
}
