//! janus-etcd: the etcd v3 API of janus.
//!
//! One listener serves both etcd's gRPC services (tonic) and its HTTP
//! endpoints (`/health`, `/version`, the `/v3/...` JSON gateway): gRPC
//! requests (content type `application/grpc*`: `/etcdserverpb.*/...`,
//! `/v3lockpb.Lock/...`, `/v3electionpb.Election/...`, and janus's own
//! `/janus.migration.Import/...` for `janus migrate`) go to tonic,
//! everything else is plain HTTP. The Lock and Election services run
//! etcd's concurrency recipes on top of the KV service, as etcd does. Every handler only translates between etcd's wire types and
//! janus-core; core decides every KV rule, this crate adds only what etcd
//! itself checks in its API layer (request size, txn op count, duplicate
//! keys, quota alarm) before proposing.

mod auth_service;
mod bolt_read;
mod caller;
mod cluster;
mod concurrency;
mod context;
mod convert;
mod election_service;
mod gateway;
mod h2_authority;
mod health_http;
mod import_service;
pub mod jwt;
mod kv_service;
mod lease_service;
mod listener;
mod lock_service;
mod maintenance;
mod metrics_http;
pub mod pb;
mod snapshot_auth;
pub mod snapshot_file;
pub mod status;
pub mod tls;
mod validate;
mod watch_service;
mod write_batch;

pub use context::{CLUSTER_VERSION, ETCD_VERSION};

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
    /// Advertised client URLs (`--advertise-client-urls`), for MemberList.
    pub client_urls: Vec<String>,
    /// Advertised peer URLs (`--initial-advertise-peer-urls`), for MemberList.
    pub peer_urls: Vec<String>,
    /// How often watchers created with `progress_notify` get an empty
    /// progress response (etcd's
    /// `--experimental-watch-progress-notify-interval`, 10 minutes).
    pub watch_progress_notify_interval: std::time::Duration,
    /// How long a simple auth token lives unused (`--auth-token-ttl`, 300 s).
    pub auth_token_ttl: std::time::Duration,
    /// Signed (JWT) tokens (`--auth-token jwt,...`); `None`: simple tokens.
    pub jwt: Option<std::sync::Arc<jwt::Jwt>>,
    /// TLS on this listener (an `https://` client URL); `None`: plain TCP.
    pub tls: Option<tls::TlsConfig>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2379)),
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            client_urls: vec!["http://127.0.0.1:2379".into()],
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            watch_progress_notify_interval: std::time::Duration::from_secs(600),
            auth_token_ttl: std::time::Duration::from_secs(300),
            jwt: None,
            tls: None,
        }
    }
}

/// Failures of the etcd frontend itself (not answers to clients).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd listener I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd listener TLS: {0}")]
    Tls(String),
}

/// Serves the etcd API on `listener` until `shutdown` resolves.
///
/// gRPC (HTTP/2 with `content-type: application/grpc*`) goes to the tonic
/// services, everything else to the HTTP router, as etcd's cmux does.
/// After `shutdown`, open streams are ended and connections get a few
/// seconds to finish.
pub async fn serve(
    node: janus_core::Node,
    cfg: EtcdConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EtcdError> {
    use pb::etcdserverpb::{
        auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
        lease_server::LeaseServer, maintenance_server::MaintenanceServer,
        watch_server::WatchServer,
    };
    use pb::migration::import_server::ImportServer;
    use pb::v3electionpb::election_server::ElectionServer;
    use pb::v3lockpb::lock_server::LockServer;
    use tower::ServiceExt;

    let s = context::Shared::new(node, cfg.clone());
    // gRPC refuses messages past etcd's limit plus its gRPC overhead
    // allowance; between max_request_bytes and that, the request reaches
    // the API layer and gets etcd's `request is too large`.
    let recv_limit = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let send_limit = usize::MAX;
    macro_rules! svc {
        ($server:ident, $svc:expr) => {
            $server::new($svc)
                .max_decoding_message_size(recv_limit)
                .max_encoding_message_size(send_limit)
        };
    }
    let grpc = tonic::service::Routes::new(svc!(KvServer, kv_service::KvService(s.clone())))
        .add_service(svc!(WatchServer, watch_service::WatchService(s.clone())))
        .add_service(svc!(LeaseServer, lease_service::LeaseService(s.clone())))
        .add_service(svc!(ClusterServer, cluster::ClusterService(s.clone())))
        .add_service(svc!(
            MaintenanceServer,
            maintenance::MaintenanceService(s.clone())
        ))
        .add_service(svc!(AuthServer, auth_service::AuthService(s.clone())))
        .add_service(svc!(LockServer, lock_service::LockService(s.clone())))
        .add_service(svc!(ImportServer, import_service::ImportService(s.clone())))
        .add_service(svc!(
            ElectionServer,
            election_service::ElectionService(s.clone())
        ))
        .into_axum_router();
    metrics_http::init();
    let http = gateway::router(s.clone())
        .merge(health_http::router(s.clone()))
        .merge(metrics_http::router());
    let app = axum::Router::new().fallback_service(tower::service_fn(
        move |req: axum::extract::Request| {
            let is_grpc = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let mut creds = caller::Credentials::from_headers(req.headers());
            if is_grpc {
                creds.common_name = req
                    .extensions()
                    .get::<tls::PeerCommonName>()
                    .map(|c| c.0.clone());
            }
            let grpc = grpc.clone();
            let http = http.clone();
            caller::within(creds, async move {
                if is_grpc {
                    let call = metrics_http::start(req.uri().path());
                    let resp = grpc.oneshot(req).await?;
                    Ok::<_, std::convert::Infallible>(call.finish(resp))
                } else {
                    http.oneshot(req).await
                }
            })
        },
    ));

    let (fired_tx, fired_rx) = tokio::sync::watch::channel(false);
    let stop = s.stop.clone();
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
        let _ = fired_tx.send(true);
    };
    if let Some(t) = &cfg.tls {
        let tls_cfg = tls::server_config(t)?;
        let grace = {
            let mut fired_rx = fired_rx.clone();
            async move {
                let _ = fired_rx.wait_for(|f| *f).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            }
        };
        tokio::spawn(signal);
        tokio::select! {
            _ = tls::serve(listener, tls_cfg, app, fired_rx) => {}
            _ = grace => tracing::warn!("etcd listener: connections still open after shutdown grace period"),
        }
        return Ok(());
    }
    drop(fired_rx);
    listener::serve(listener, app, signal, SHUTDOWN_GRACE).await?;
    Ok(())
}

/// etcd's `grpcOverheadBytes`, added to `--max-request-bytes` for gRPC's
/// own receive limit.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long open connections may take to finish after shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves only `/metrics`, `/health`-style endpoints (`/livez`,
/// `/readyz`) on `listener` (`--listen-metrics-urls`) until `shutdown`.
pub async fn serve_metrics(
    node: janus_core::Node,
    cfg: EtcdConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EtcdError> {
    let s = context::Shared::new(node, cfg);
    metrics_http::init();
    let app = metrics_http::router().merge(health_http::router(s));
    listener::serve(listener, app, shutdown, SHUTDOWN_GRACE).await?;
    Ok(())
}
