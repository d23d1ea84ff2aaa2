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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::EtcdError;

/// The TLS settings of a client listener.
#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
}

/// The common name of a connection's verified client certificate.
#[derive(Clone, Debug)]
pub struct PeerCommonName(pub String);

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn tls_err(what: impl std::fmt::Display) -> EtcdError {
    EtcdError::Tls(what.to_string())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, EtcdError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, EtcdError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))
}

/// A self-signed certificate for `localhost` and `127.0.0.1` (`--auto-tls`).
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), EtcdError> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(tls_err)?;
    let key = PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
    Ok((vec![ck.cert.der().clone()], key.into()))
}

/// The rustls configuration of a listener.
pub fn server_config(t: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, EtcdError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => (load_certs(c)?, load_key(k)?),
        _ if t.auto_tls => self_signed()?,
        _ => {
            return Err(tls_err(
                "an https:// client URL needs --cert-file and --key-file (or --auto-tls)",
            ))
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = if t.client_cert_auth {
        let ca = t
            .trusted_ca_file
            .as_ref()
            .ok_or_else(|| tls_err("--client-cert-auth needs --trusted-ca-file"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c).map_err(tls_err)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(tls_err)?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
        certified_key(&provider, certs, key)?,
    )));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The certificate chain with its key, checked to belong together.
/// rustls's own check (`CertifiedKey::from_der`) parses the certificate
/// with webpki, which refuses X.509 v1 certificates; Go's `crypto/tls`
/// (etcd) and Java (ZooKeeper) serve them, and test harnesses make them
/// (kazoo's does), so the public keys are compared here instead.
fn certified_key(
    provider: &rustls::crypto::CryptoProvider,
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::sign::CertifiedKey, EtcdError> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(tls_err)?;
    let leaf = certs
        .first()
        .ok_or_else(|| tls_err("the certificate file holds no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| tls_err(format!("bad certificate: {e}")))?;
    if let Some(spki) = signing.public_key() {
        if spki.as_ref() != cert.public_key().raw {
            return Err(tls_err("the private key does not match the certificate"));
        }
    }
    Ok(rustls::sign::CertifiedKey::new(certs, signing))
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
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tower::ServiceExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
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
        let (acceptor, app, mut stop) = (acceptor.clone(), app.clone(), stop.clone());
        conns.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
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
                hyper_util::rt::TokioIo::new(crate::h2_authority::AuthorityFix::new(stream)),
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
