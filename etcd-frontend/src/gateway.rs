//! The HTTP side of the client port: `/health`, `/version` and etcd's
//! grpc-gateway JSON API (`/v3/...`, also under `/v3beta/` as etcd 3.4).
//!
//! JSON follows grpc-gateway v1 with `OrigName: true`, as etcd configures
//! it: proto field names, 64-bit integers as strings, bytes as base64,
//! enums by name, unset fields omitted. Requests accept either field-name
//! style and numbers or strings for integers; an empty body is an empty
//! message. The mapping is driven by the proto descriptors (prost-reflect),
//! so it cannot drift from the gRPC types. Streamed calls (`/v3/watch`,
//! `/v3/lease/keepalive`) read a sequence of JSON requests from the body
//! and answer with a chunked stream of `{"result": ...}` objects.

use std::sync::LazyLock;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::{Stream, StreamExt};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::auth_service::AuthService;
use crate::cluster::ClusterService;
use crate::context::{Shared, CLUSTER_VERSION, ETCD_VERSION};
use crate::election_service::ElectionService;
use crate::kv_service::KvService;
use crate::lease_service::LeaseService;
use crate::lock_service::LockService;
use crate::maintenance::MaintenanceService;
use crate::pb::{self, etcdserverpb as epb, v3electionpb as elpb, v3lockpb as lpb};
use crate::status::{http_status, ApiError};
use crate::watch_service::WatchService;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The descriptor set is produced by build.rs from our own protos; it
    // failing to decode is a build defect, not an input error.
    DescriptorPool::decode(pb::DESCRIPTOR_SET)
        .expect("etcd descriptor set built by build.rs decodes")
});

/// The gateway's routes (mounted under `/v3` and `/v3beta`) plus `/health`
/// and `/version`.
pub fn router(s: Shared) -> Router {
    let v3 = Router::new()
        .route("/kv/range", post(kv_range))
        .route("/kv/put", post(kv_put))
        .route("/kv/deleterange", post(kv_deleterange))
        .route("/kv/txn", post(kv_txn))
        .route("/kv/compaction", post(kv_compaction))
        .route("/lease/grant", post(lease_grant))
        .route("/lease/revoke", post(lease_revoke))
        .route("/kv/lease/revoke", post(lease_revoke))
        .route("/lease/timetolive", post(lease_timetolive))
        .route("/kv/lease/timetolive", post(lease_timetolive))
        .route("/lease/leases", post(lease_leases))
        .route("/kv/lease/leases", post(lease_leases))
        .route("/lease/keepalive", post(lease_keepalive))
        .route("/watch", post(watch))
        .route("/cluster/member/list", post(member_list))
        .route("/maintenance/status", post(maint_status))
        .route("/maintenance/alarm", post(maint_alarm))
        .route("/maintenance/hash", post(maint_hashkv))
        .route("/maintenance/defragment", post(maint_defragment))
        .route("/auth/enable", post(auth_auth_enable))
        .route("/auth/disable", post(auth_auth_disable))
        .route("/auth/authenticate", post(auth_authenticate))
        .route("/auth/user/add", post(auth_user_add))
        .route("/auth/user/get", post(auth_user_get))
        .route("/auth/user/list", post(auth_user_list))
        .route("/auth/user/delete", post(auth_user_delete))
        .route("/auth/user/changepw", post(auth_user_change_password))
        .route("/auth/user/grant", post(auth_user_grant_role))
        .route("/auth/user/revoke", post(auth_user_revoke_role))
        .route("/auth/role/add", post(auth_role_add))
        .route("/auth/role/get", post(auth_role_get))
        .route("/auth/role/list", post(auth_role_list))
        .route("/auth/role/delete", post(auth_role_delete))
        .route("/auth/role/grant", post(auth_role_grant_permission))
        .route("/auth/role/revoke", post(auth_role_revoke_permission))
        .route("/lock/lock", post(lock_lock))
        .route("/lock/unlock", post(lock_unlock))
        .route("/election/campaign", post(election_campaign))
        .route("/election/proclaim", post(election_proclaim))
        .route("/election/leader", post(election_leader))
        .route("/election/observe", post(election_observe))
        .route("/election/resign", post(election_resign));
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .nest("/v3", v3.clone())
        .nest("/v3beta", v3)
        .with_state(s)
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({"etcdserver": ETCD_VERSION, "etcdcluster": CLUSTER_VERSION}),
    )
}

/// etcd 3.4's `/health`: `{"health":"false"}` (503) with an alarm active,
/// without a leader, or when a linearizable read fails.
async fn health(State(s): State<Shared>) -> Response {
    let healthy = s.alarms().is_empty()
        && s.node.status().leader != 0
        && matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), s.node.read_barrier()).await,
            Ok(Ok(()))
        );
    if healthy {
        json_response(StatusCode::OK, serde_json::json!({"health": "true"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false"}),
        )
    }
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Full proto name of a prost message type, for the descriptor lookup.
trait Named: Message + Default + Sized {
    const NAME: &'static str;
}
macro_rules! named {
    ($($t:ty => $n:literal),* $(,)?) => { $(impl Named for $t { const NAME: &'static str = $n; })* };
}
named! {
    epb::AuthEnableRequest => "etcdserverpb.AuthEnableRequest", epb::AuthEnableResponse => "etcdserverpb.AuthEnableResponse",
    epb::AuthDisableRequest => "etcdserverpb.AuthDisableRequest", epb::AuthDisableResponse => "etcdserverpb.AuthDisableResponse",
    epb::AuthenticateRequest => "etcdserverpb.AuthenticateRequest", epb::AuthenticateResponse => "etcdserverpb.AuthenticateResponse",
    epb::AuthUserAddRequest => "etcdserverpb.AuthUserAddRequest", epb::AuthUserAddResponse => "etcdserverpb.AuthUserAddResponse",
    epb::AuthUserGetRequest => "etcdserverpb.AuthUserGetRequest", epb::AuthUserGetResponse => "etcdserverpb.AuthUserGetResponse",
    epb::AuthUserListRequest => "etcdserverpb.AuthUserListRequest", epb::AuthUserListResponse => "etcdserverpb.AuthUserListResponse",
    epb::AuthUserDeleteRequest => "etcdserverpb.AuthUserDeleteRequest", epb::AuthUserDeleteResponse => "etcdserverpb.AuthUserDeleteResponse",
    epb::AuthUserChangePasswordRequest => "etcdserverpb.AuthUserChangePasswordRequest", epb::AuthUserChangePasswordResponse => "etcdserverpb.AuthUserChangePasswordResponse",
    epb::AuthUserGrantRoleRequest => "etcdserverpb.AuthUserGrantRoleRequest", epb::AuthUserGrantRoleResponse => "etcdserverpb.AuthUserGrantRoleResponse",
    epb::AuthUserRevokeRoleRequest => "etcdserverpb.AuthUserRevokeRoleRequest", epb::AuthUserRevokeRoleResponse => "etcdserverpb.AuthUserRevokeRoleResponse",
    epb::AuthRoleAddRequest => "etcdserverpb.AuthRoleAddRequest", epb::AuthRoleAddResponse => "etcdserverpb.AuthRoleAddResponse",
    epb::AuthRoleGetRequest => "etcdserverpb.AuthRoleGetRequest", epb::AuthRoleGetResponse => "etcdserverpb.AuthRoleGetResponse",
    epb::AuthRoleListRequest => "etcdserverpb.AuthRoleListRequest", epb::AuthRoleListResponse => "etcdserverpb.AuthRoleListResponse",
    epb::AuthRoleDeleteRequest => "etcdserverpb.AuthRoleDeleteRequest", epb::AuthRoleDeleteResponse => "etcdserverpb.AuthRoleDeleteResponse",
    epb::AuthRoleGrantPermissionRequest => "etcdserverpb.AuthRoleGrantPermissionRequest", epb::AuthRoleGrantPermissionResponse => "etcdserverpb.AuthRoleGrantPermissionResponse",
    epb::AuthRoleRevokePermissionRequest => "etcdserverpb.AuthRoleRevokePermissionRequest", epb::AuthRoleRevokePermissionResponse => "etcdserverpb.AuthRoleRevokePermissionResponse",
    epb::RangeRequest => "etcdserverpb.RangeRequest", epb::RangeResponse => "etcdserverpb.RangeResponse",
    epb::PutRequest => "etcdserverpb.PutRequest", epb::PutResponse => "etcdserverpb.PutResponse",
    epb::DeleteRangeRequest => "etcdserverpb.DeleteRangeRequest", epb::DeleteRangeResponse => "etcdserverpb.DeleteRangeResponse",
    epb::TxnRequest => "etcdserverpb.TxnRequest", epb::TxnResponse => "etcdserverpb.TxnResponse",
    epb::CompactionRequest => "etcdserverpb.CompactionRequest", epb::CompactionResponse => "etcdserverpb.CompactionResponse",
    epb::LeaseGrantRequest => "etcdserverpb.LeaseGrantRequest", epb::LeaseGrantResponse => "etcdserverpb.LeaseGrantResponse",
    epb::LeaseRevokeRequest => "etcdserverpb.LeaseRevokeRequest", epb::LeaseRevokeResponse => "etcdserverpb.LeaseRevokeResponse",
    epb::LeaseTimeToLiveRequest => "etcdserverpb.LeaseTimeToLiveRequest", epb::LeaseTimeToLiveResponse => "etcdserverpb.LeaseTimeToLiveResponse",
    epb::LeaseLeasesRequest => "etcdserverpb.LeaseLeasesRequest", epb::LeaseLeasesResponse => "etcdserverpb.LeaseLeasesResponse",
    epb::LeaseKeepAliveRequest => "etcdserverpb.LeaseKeepAliveRequest", epb::LeaseKeepAliveResponse => "etcdserverpb.LeaseKeepAliveResponse",
    epb::WatchRequest => "etcdserverpb.WatchRequest", epb::WatchResponse => "etcdserverpb.WatchResponse",
    epb::MemberListRequest => "etcdserverpb.MemberListRequest", epb::MemberListResponse => "etcdserverpb.MemberListResponse",
    epb::StatusRequest => "etcdserverpb.StatusRequest", epb::StatusResponse => "etcdserverpb.StatusResponse",
    epb::AlarmRequest => "etcdserverpb.AlarmRequest", epb::AlarmResponse => "etcdserverpb.AlarmResponse",
    epb::HashKvRequest => "etcdserverpb.HashKVRequest", epb::HashKvResponse => "etcdserverpb.HashKVResponse",
    epb::DefragmentRequest => "etcdserverpb.DefragmentRequest", epb::DefragmentResponse => "etcdserverpb.DefragmentResponse",
    lpb::LockRequest => "v3lockpb.LockRequest", lpb::LockResponse => "v3lockpb.LockResponse",
    lpb::UnlockRequest => "v3lockpb.UnlockRequest", lpb::UnlockResponse => "v3lockpb.UnlockResponse",
    elpb::CampaignRequest => "v3electionpb.CampaignRequest", elpb::CampaignResponse => "v3electionpb.CampaignResponse",
    elpb::ProclaimRequest => "v3electionpb.ProclaimRequest", elpb::ProclaimResponse => "v3electionpb.ProclaimResponse",
    elpb::LeaderRequest => "v3electionpb.LeaderRequest", elpb::LeaderResponse => "v3electionpb.LeaderResponse",
    elpb::ResignRequest => "v3electionpb.ResignRequest", elpb::ResignResponse => "v3electionpb.ResignResponse",
}

/// A JSON request body that is not a valid message of the expected type.
#[derive(Debug)]
struct BadJson(String);

/// Parses one JSON value into a prost message through its descriptor.
fn from_json<T: Named>(v: &Value) -> Result<T, BadJson> {
    let desc = POOL
        .get_message_by_name(T::NAME)
        .ok_or_else(|| BadJson(format!("unknown message {}", T::NAME)))?;
    let opts = DeserializeOptions::new().deny_unknown_fields(false);
    let dm = DynamicMessage::deserialize_with_options(desc, v, &opts)
        .map_err(|e| BadJson(e.to_string()))?;
    T::decode(dm.encode_to_vec().as_slice()).map_err(|e| BadJson(e.to_string()))
}

/// Renders a prost message as grpc-gateway JSON.
fn to_json<T: Named>(m: &T) -> Value {
    let Some(desc) = POOL.get_message_by_name(T::NAME) else {
        return Value::Null;
    };
    let Ok(dm) = DynamicMessage::decode(desc, m.encode_to_vec().as_slice()) else {
        return Value::Null;
    };
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true);
    dm.serialize_with_options(serde_json::value::Serializer, &opts)
        .unwrap_or(Value::Null)
}

/// Parses a whole (possibly empty) body as one request.
fn parse_body<T: Named>(body: &Bytes) -> Result<T, BadJson> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| BadJson(e.to_string()))?;
    from_json(&v)
}

/// grpc-gateway's error body: `{"error","code","message"}` and the HTTP
/// status for the gRPC code.
fn error_response(code: tonic::Code, message: &str) -> Response {
    json_response(
        http_status(code),
        serde_json::json!({"error": message, "message": message, "code": code as i32}),
    )
}

fn api_error_response(e: ApiError) -> Response {
    let (code, msg) = e.code_and_message();
    error_response(code, &msg)
}

fn bad_json_response(e: BadJson) -> Response {
    error_response(tonic::Code::InvalidArgument, &e.0)
}

/// Parses, calls, renders: the body of every unary route.
async fn unary<Req, Resp, Fut>(body: Bytes, call: impl FnOnce(Req) -> Fut) -> Response
where
    Req: Named,
    Resp: Named,
    Fut: std::future::Future<Output = Result<Resp, ApiError>>,
{
    let req = match parse_body::<Req>(&body) {
        Ok(r) => r,
        Err(e) => return bad_json_response(e),
    };
    match call(req).await {
        Ok(resp) => json_response(StatusCode::OK, to_json(&resp)),
        Err(e) => api_error_response(e),
    }
}

macro_rules! unary_route {
    ($name:ident, $svc:ident, $method:ident) => {
        async fn $name(State(s): State<Shared>, body: Bytes) -> Response {
            let svc = $svc(s);
            unary(body, |r| async move { svc.$method(r).await }).await
        }
    };
}
unary_route!(kv_range, KvService, range);
unary_route!(kv_put, KvService, put);
unary_route!(kv_deleterange, KvService, delete_range);
unary_route!(kv_txn, KvService, txn);
unary_route!(kv_compaction, KvService, compact);
unary_route!(lease_grant, LeaseService, grant);
unary_route!(lease_revoke, LeaseService, revoke);
unary_route!(lease_timetolive, LeaseService, time_to_live);
unary_route!(lease_leases, LeaseService, leases);
unary_route!(member_list, ClusterService, list);
unary_route!(maint_status, MaintenanceService, status);
unary_route!(maint_alarm, MaintenanceService, alarm);
unary_route!(maint_hashkv, MaintenanceService, hash_kv);
unary_route!(maint_defragment, MaintenanceService, defragment);
unary_route!(auth_auth_enable, AuthService, auth_enable);
unary_route!(auth_auth_disable, AuthService, auth_disable);
unary_route!(auth_authenticate, AuthService, authenticate);
unary_route!(auth_user_add, AuthService, user_add);
unary_route!(auth_user_get, AuthService, user_get);
unary_route!(auth_user_list, AuthService, user_list);
unary_route!(auth_user_delete, AuthService, user_delete);
unary_route!(auth_user_change_password, AuthService, user_change_password);
unary_route!(auth_user_grant_role, AuthService, user_grant_role);
unary_route!(auth_user_revoke_role, AuthService, user_revoke_role);
unary_route!(auth_role_add, AuthService, role_add);
unary_route!(auth_role_get, AuthService, role_get);
unary_route!(auth_role_list, AuthService, role_list);
unary_route!(auth_role_delete, AuthService, role_delete);
unary_route!(
    auth_role_grant_permission,
    AuthService,
    role_grant_permission
);
unary_route!(
    auth_role_revoke_permission,
    AuthService,
    role_revoke_permission
);

unary_route!(lock_lock, LockService, lock);
unary_route!(lock_unlock, LockService, unlock);
unary_route!(election_campaign, ElectionService, campaign);
unary_route!(election_proclaim, ElectionService, proclaim);
unary_route!(election_leader, ElectionService, leader);
unary_route!(election_resign, ElectionService, resign);

/// Observe takes one request and answers a stream, like `/v3/watch`.
async fn election_observe(State(s): State<Shared>, body: Bytes) -> Response {
    match parse_body::<elpb::LeaderRequest>(&body) {
        Ok(r) => streamed(ElectionService(s).observe(r)),
        Err(e) => bad_json_response(e),
    }
}

async fn watch(State(s): State<Shared>, body: Body) -> Response {
    let requests = json_requests::<epb::WatchRequest>(body);
    let responses = WatchService(s).run(requests);
    streamed(responses)
}

async fn lease_keepalive(State(s): State<Shared>, body: Body) -> Response {
    let requests = json_requests::<epb::LeaseKeepAliveRequest>(body);
    let responses = LeaseService(s).keep_alive_stream(requests);
    streamed(responses)
}

/// Decodes a request body holding a sequence of JSON messages, message by
/// message as bytes arrive (a client may keep its body open). A body that
/// is not valid JSON ends the sequence with an InvalidArgument error.
fn json_requests<T: Named + Send + 'static>(body: Body) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut frames = body.into_data_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut eof = false;
        loop {
            // Parse every complete value in the buffer.
            let mut consumed = 0;
            {
                let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                loop {
                    match it.next() {
                        Some(Ok(v)) => {
                            consumed = it.byte_offset();
                            let msg = from_json::<T>(&v).map_err(|e| Status::invalid_argument(e.0));
                            let failed = msg.is_err();
                            if tx.send(msg).await.is_err() || failed {
                                return;
                            }
                        }
                        Some(Err(e)) if e.is_eof() && !eof => break,
                        Some(Err(e)) => {
                            let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                            return;
                        }
                        None => {
                            consumed = buf.len();
                            break;
                        }
                    }
                }
            }
            buf.drain(..consumed);
            if eof {
                return;
            }
            match frames.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(_)) => return,
                None => eof = true,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// A chunked response of newline-separated `{"result": ...}` objects; a
/// stream error becomes grpc-gateway's `{"error": {...}}` object and ends it.
fn streamed<T, S>(responses: S) -> Response
where
    T: Named + Send + 'static,
    S: Stream<Item = Result<T, Status>> + Send + 'static,
{
    let mut failed = false;
    let chunks = responses
        .take_while(move |r| {
            let go = !failed;
            failed |= r.is_err();
            futures::future::ready(go)
        })
        .map(|r| {
            let v = match r {
                Ok(m) => serde_json::json!({ "result": to_json(&m) }),
                Err(st) => serde_json::json!({ "error": {
                    "grpc_code": st.code() as i32,
                    "http_code": http_status(st.code()).as_u16(),
                    "message": st.message(),
                    "http_status": http_status(st.code()).canonical_reason().unwrap_or(""),
                }}),
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(format!("{v}\n")))
        });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_proto_names_string_int64_base64_and_omits_defaults() {
        let r = epb::RangeResponse {
            header: Some(epb::ResponseHeader {
                cluster_id: 7,
                member_id: 0,
                revision: 12,
                raft_term: 2,
            }),
            kvs: vec![pb::mvccpb::KeyValue {
                key: b"foo".to_vec(),
                value: b"bar".to_vec(),
                create_revision: 3,
                mod_revision: 12,
                version: 2,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let v = to_json(&r);
        assert_eq!(
            v,
            serde_json::json!({
                "header": {"cluster_id": "7", "revision": "12", "raft_term": "2"},
                "kvs": [{"key": "Zm9v", "create_revision": "3", "mod_revision": "12", "version": "2", "value": "YmFy"}],
                "count": "1"
            })
        );
    }

    #[test]
    fn requests_accept_numbers_strings_and_empty_bodies() {
        let r: epb::RangeRequest = parse_body(&Bytes::from_static(
            br#"{"key":"Zm9v","limit":5,"revision":"3","sort_order":"DESCEND"}"#,
        ))
        .unwrap();
        assert_eq!(
            (r.key.as_slice(), r.limit, r.revision, r.sort_order),
            (&b"foo"[..], 5, 3, 2)
        );
        let r: epb::LeaseLeasesRequest = parse_body(&Bytes::new()).unwrap();
        assert_eq!(r, epb::LeaseLeasesRequest::default());
        assert!(parse_body::<epb::PutRequest>(&Bytes::from_static(b"{nope")).is_err());
        // Txn with oneofs and nested ops by proto names.
        let t: epb::TxnRequest = parse_body(&Bytes::from_static(
            br#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VERSION","version":"0"}],
                 "success":[{"request_put":{"key":"Zm9v","value":"YmFy"}}]}"#,
        ))
        .unwrap();
        assert_eq!(t.success.len(), 1);
        assert_eq!(
            t.compare[0].target_union,
            Some(epb::compare::TargetUnion::Version(0))
        );
    }

    #[test]
    fn enums_render_by_name_and_members_keep_go_names() {
        let m = epb::MemberListResponse {
            header: None,
            members: vec![epb::Member {
                id: 1,
                name: "default".into(),
                peer_ur_ls: vec!["http://a:1".into()],
                client_ur_ls: vec![],
                is_learner: false,
            }],
        };
        assert_eq!(
            to_json(&m),
            serde_json::json!({"members": [{"ID": "1", "name": "default", "peerURLs": ["http://a:1"]}]})
        );
        let w = epb::WatchResponse {
            events: vec![pb::mvccpb::Event {
                r#type: 1,
                kv: None,
                prev_kv: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            to_json(&w),
            serde_json::json!({"events": [{"type": "DELETE"}]})
        );
    }

    #[tokio::test]
    async fn json_request_sequences_parse_incrementally() {
        let body = Body::from(r#"{"ID":"5"} {"ID":6}"#);
        let got: Vec<_> = json_requests::<epb::LeaseKeepAliveRequest>(body)
            .collect()
            .await;
        let ids: Vec<i64> = got
            .into_iter()
            .map(|r| r.map(|r| r.id).unwrap_or(-1))
            .collect();
        assert_eq!(ids, vec![5, 6]);
        let body = Body::from(r#"{"ID":"5"} {oops"#);
        let got: Vec<_> = json_requests::<epb::LeaseKeepAliveRequest>(body)
            .collect()
            .await;
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }
}
