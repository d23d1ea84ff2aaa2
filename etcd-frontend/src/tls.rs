//! TLS on the etcd client port (rustls), with etcd's flags: `https://` in
//! `--listen-client-urls`, `--cert-file`/`--key-file`, `--trusted-ca-file`,
//! `--client-cert-auth` (require and verify client certificates) and
//! `--auto-tls` (a self-signed certificate made at startup). gRPC and the
//! JSON gateway share the TLS port, told apart by content type as on the
//! plain port; ALPN offers `h2` and `http/1.1`.
//!
//! Under `--client-cert-auth` the verified certificate's common name is the
//! caller of gRPC requests that carry no token (etcd's `AuthInfoFromTLS`);
//! gateway requests never take it (etcd ignores it for its gateway).
//!
//! Certificates are re-read when their files change (new connections get
//! the new ones), as operators rotate them.

use std::sync::Arc;
use std::time::Duration;

use janus_core::tls::{ServerTls, TlsFiles};

use crate::EtcdError;

/// The TLS settings of a client listener (the certificate rules live in
/// [`janus_core::tls`], shared with the peer and ZooKeeper ports).
pub type TlsConfig = TlsFiles;

/// The common name of a connection's verified client certificate.
#[derive(Clone, Debug)]
pub struct PeerCommonName(pub String);

/// The client port's TLS, offering `h2` and `http/1.1`, reloaded when the
/// certificate files change.
pub fn server_config(t: &TlsConfig) -> Result<Arc<ServerTls>, EtcdError> {
    ServerTls::server(t.clone(), vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .map_err(|e| EtcdError::Tls(e.0))
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `app` over TLS on `listener` until `stop` turns true: one task
/// per connection, each ended gracefully at shutdown (open streams are
/// ended by the services themselves).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<ServerTls>,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tower::ServiceExt;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "etcd TLS listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        // Each connection takes the current certificates (reloaded on change).
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let (app, mut stop) = (app.clone(), stop.clone());
        conns.spawn(async move {
            let stream = match janus_core::tls::accept(&acceptor, tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS connection refused");
                    return;
                }
            };
            let cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c));
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    if let Some(cn) = &cn {
                        req.extensions_mut().insert(PeerCommonName(cn.clone()));
                    }
                    app.clone().oneshot(req)
                });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(
                hyper_util::rt::TokioIo::new(crate::h2_authority::AuthorityFix::new(
                    crate::write_batch::WriteBatch::new(stream),
                )),
                svc,
            );
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Connections get the shutdown grace of the caller; whatever is left
    // when this future is dropped is aborted with the JoinSet.
    while conns.join_next().await.is_some() {}
}
