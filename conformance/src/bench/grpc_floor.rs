//! The floor under one etcd request: a gRPC server that speaks etcd's
//! `KV.Put` and `KV.Range` and does nothing else. It decodes the request,
//! answers a response with a header (Range: one key-value, the key asked
//! for, a value of the configured size) and stores nothing: no raft, no
//! WAL, no fsync, no index. It runs on the same crates janus's etcd
//! frontend runs on (tokio's multi-thread runtime, tonic 0.12 over hyper's
//! HTTP/2, prost), so with the same load generator on the same box its
//! throughput is the most any server built on that stack can answer, and
//! its CPU per operation is what the stack alone costs.
//!
//! `janus-bench grpc-floor` serves it; `janus-bench compare etcd put
//! --grpc-floor` runs each level against it too and prints it beside
//! janus and etcd.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tonic::body::BoxBody;
use tonic::codec::ProstCodec;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// etcd's `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// etcd's `etcdserverpb.PutRequest` (every field, so decoding costs what
/// a real server's does).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
    #[prost(bool, tag = "5")]
    pub ignore_value: bool,
    #[prost(bool, tag = "6")]
    pub ignore_lease: bool,
}

/// etcd's `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// etcd's `etcdserverpb.PutResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `etcdserverpb.RangeRequest`, the fields a point read uses (the
/// rest are skipped as unknown fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    pub revision: i64,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// etcd's `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

fn header() -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 1,
        member_id: 1,
        revision: 1,
        raft_term: 1,
    })
}

struct Put;

impl UnaryService<PutRequest> for Put {
    type Response = PutResponse;
    type Future = std::future::Ready<Result<Response<PutResponse>, Status>>;
    fn call(&mut self, _req: Request<PutRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(PutResponse {
            header: header(),
            prev_kv: None,
        })))
    }
}

struct Range {
    value_size: usize,
}

impl UnaryService<RangeRequest> for Range {
    type Response = RangeResponse;
    type Future = std::future::Ready<Result<Response<RangeResponse>, Status>>;
    fn call(&mut self, req: Request<RangeRequest>) -> Self::Future {
        let kv = KeyValue {
            key: req.into_inner().key,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            value: vec![b'v'; self.value_size],
            lease: 0,
        };
        std::future::ready(Ok(Response::new(RangeResponse {
            header: header(),
            kvs: vec![kv],
            more: false,
            count: 1,
        })))
    }
}

/// The `etcdserverpb.KV` service with only Put and Range.
#[derive(Clone)]
pub struct KvFloor {
    /// Bytes of the value every Range answers.
    pub value_size: usize,
}

impl NamedService for KvFloor {
    const NAME: &'static str = "etcdserverpb.KV";
}

impl Service<http::Request<BoxBody>> for KvFloor {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let value_size = self.value_size;
        Box::pin(async move {
            Ok(match req.uri().path() {
                "/etcdserverpb.KV/Put" => Grpc::new(ProstCodec::default()).unary(Put, req).await,
                "/etcdserverpb.KV/Range" => {
                    Grpc::new(ProstCodec::default())
                        .unary(Range { value_size }, req)
                        .await
                }
                _ => Status::unimplemented("the gRPC floor answers only KV.Put and KV.Range")
                    .into_http(),
            })
        })
    }
}

/// Serves [`KvFloor`] on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    value_size: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)?;
    tonic::transport::Server::builder()
        .add_service(KvFloor { value_size })
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// Binds `addr` and prints the bound address on stdout (the line a parent
/// process waits for), then serves.
pub async fn run(
    addr: SocketAddr,
    value_size: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    serve(listener, value_size).await
}
