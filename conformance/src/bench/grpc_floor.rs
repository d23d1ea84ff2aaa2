//! The floor under one etcd request: a gRPC server that speaks etcd's
//! `KV.Put` and `KV.Range` and does nothing else. It decodes the request,
//! answers a response with a header (Range: one key-value, the key asked
//! for, a value of the configured size) and stores nothing: no raft, no
//! WAL, no fsync, no index. It implements janus-etcd's own generated
//! `KV` server (the same protos, prost types and tonic 0.12 code janus's
//! KV service runs through), on tokio's multi-thread runtime and hyper's
//! HTTP/2, so with the same load generator on the same box its
//! throughput is the most any server built on that stack can answer, and
//! its CPU per operation is what the stack alone costs.
//!
//! `janus-bench grpc-floor` serves it; `janus-bench compare etcd put
//! --grpc-floor` runs each level against it too and prints it beside
//! janus and etcd.

use std::net::SocketAddr;

use janus_etcd::pb::etcdserverpb as pb;
use janus_etcd::pb::etcdserverpb::kv_server::{Kv, KvServer};
use janus_etcd::pb::mvccpb::KeyValue;
use tonic::{Request, Response, Status};

/// etcd's `KV` service with Put and Range answered at once, the generated
/// server janus's own KV service implements.
#[derive(Clone)]
pub struct KvFloor {
    /// Bytes of the value every Range answers.
    pub value_size: usize,
}

fn header() -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: 1,
        member_id: 1,
        revision: 1,
        raft_term: 1,
    })
}

fn refused() -> Status {
    Status::unimplemented("the gRPC floor answers only KV.Put and KV.Range")
}

#[tonic::async_trait]
impl Kv for KvFloor {
    async fn range(
        &self,
        r: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let kv = KeyValue {
            key: r.into_inner().key,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            value: vec![b'v'; self.value_size],
            lease: 0,
        };
        Ok(Response::new(pb::RangeResponse {
            header: header(),
            kvs: vec![kv],
            more: false,
            count: 1,
        }))
    }
    async fn put(&self, _r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        Ok(Response::new(pb::PutResponse {
            header: header(),
            prev_kv: None,
        }))
    }
    async fn delete_range(
        &self,
        _r: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Err(refused())
    }
    async fn txn(&self, _r: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        Err(refused())
    }
    async fn compact(
        &self,
        _r: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Err(refused())
    }
}

/// Serves [`KvFloor`] on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    value_size: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)?;
    tonic::transport::Server::builder()
        .add_service(KvServer::new(KvFloor { value_size }))
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
