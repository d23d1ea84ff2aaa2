//! TLS settings shared by every listener and by the links between members
//! (rustls): PEM certificate and key loading, etcd's `--auto-tls`
//! self-signed certificate, client-certificate verification, and reloading
//! certificate files when they change, so operators rotate certificates
//! without a restart.
//!
//! The same rules serve the etcd client port, the secure ZooKeeper port
//! and the peer port; the frontends and the peer transport take a
//! [`ServerTls`] (and the peer transport a [`ClientTls`]) and ask it for
//! the current configuration once per connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

/// How long every TLS listener waits for a client to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS record content type of a handshake message (RFC 8446 5.1): the
/// first byte of every ClientHello.
const HANDSHAKE_RECORD: u8 = 22;

/// Why an incoming TLS connection was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the first bytes are not a TLS handshake record")]
    NotTls,
    #[error("the client closed the connection before its handshake")]
    Closed,
    #[error("TLS handshake timed out")]
    TimedOut,
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// Accepts one TLS connection, for every listener (etcd client port,
/// secure ZooKeeper port, peer port). Bytes that do not begin a handshake
/// record are refused by closing the connection without a word, as etcd
/// (Go's `crypto/tls`: "first record does not look like a TLS handshake")
/// and ZooKeeper (Netty's `SslHandler`) do; rustls alone would answer
/// them with a `decode_error` alert. The whole handshake is bounded by
/// [`HANDSHAKE_TIMEOUT`].
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, AcceptError> {
    let handshake = async {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Err(AcceptError::Closed),
            Ok(_) if first[0] != HANDSHAKE_RECORD => return Err(AcceptError::NotTls),
            Ok(_) => {}
            Err(e) => return Err(AcceptError::Handshake(e)),
        }
        acceptor.accept(tcp).await.map_err(AcceptError::Handshake)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| AcceptError::TimedOut)?
}

/// A TLS setting that cannot be used, with the file or flag at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

fn err(what: impl std::fmt::Display) -> TlsError {
    TlsError(what.to_string())
}

/// The certificate flags of one port, etcd style (`--cert-file`,
/// `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, `--auto-tls`;
/// the `--peer-*` and `--zk-*` families fill the same fields).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
}

impl TlsFiles {
    /// The files whose change triggers a reload.
    fn watched(&self) -> Vec<PathBuf> {
        [&self.cert_file, &self.key_file, &self.trusted_ca_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(format!("{}: {e}", path.display())))
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// A self-signed certificate for `localhost` and `127.0.0.1` (`--auto-tls`).
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(err)?;
    let key = PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
    Ok((vec![ck.cert.der().clone()], key.into()))
}

/// This end's certificate chain and key: the files, or a self-signed pair
/// under `auto_tls`; `what` names the flags in the error.
fn identity(
    t: &TlsFiles,
    what: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Ok((load_certs(c)?, load_key(k)?)),
        _ if t.auto_tls => self_signed(),
        _ => Err(err(what)),
    }
}

/// The rustls configuration of a listener offering the given ALPN names.
pub fn server_config(t: &TlsFiles, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let (certs, key) = identity(
        t,
        "a TLS listener needs a certificate and a key file (or auto TLS)",
    )?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(err)?;
    let builder = if t.client_cert_auth {
        let ca = t
            .trusted_ca_file
            .as_ref()
            .ok_or_else(|| err("client certificate auth needs a trusted CA file"))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(load_roots(ca)?),
            provider(),
        )
        .build()
        .map_err(err)?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let provider = provider();
    let mut cfg = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
        certified_key(&provider, certs, key)?,
    )));
    cfg.alpn_protocols = alpn.to_vec();
    Ok(cfg)
}

/// The certificate chain with its key, checked to belong together.
/// rustls's own check (`CertifiedKey::from_der`) parses the certificate
/// with webpki, which refuses X.509 v1 certificates; Go's `crypto/tls`
/// (etcd) and Java (ZooKeeper) serve them, and test harnesses make them
/// (kazoo's does), so the public keys are compared here instead.
fn certified_key(
    provider: &CryptoProvider,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let signing = provider.key_provider.load_private_key(key).map_err(err)?;
    let leaf = certs
        .first()
        .ok_or_else(|| err("the certificate file holds no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| err(format!("bad certificate: {e}")))?;
    if let Some(spki) = signing.public_key() {
        if spki.as_ref() != cert.public_key().raw {
            return Err(err("the private key does not match the certificate"));
        }
    }
    Ok(rustls::sign::CertifiedKey::new(certs, signing))
}

/// The rustls configuration of a member dialling its peers: it presents
/// its own certificate (peers may require one) and verifies theirs against
/// the trusted CA. Under auto TLS without a CA, peers' self-signed
/// certificates cannot be verified and are accepted unverified, as etcd's
/// `--peer-auto-tls` does (the link is encrypted, not authenticated).
pub fn client_config(t: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(err)?;
    let builder = match &t.trusted_ca_file {
        Some(ca) => builder.with_root_certificates(load_roots(ca)?),
        None if t.auto_tls => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider()))),
        None => {
            return Err(err(
                "verifying peers needs a trusted CA file (or auto TLS, unverified)",
            ))
        }
    };
    let (certs, key) = identity(
        t,
        "a TLS peer needs a certificate and a key file (or auto TLS)",
    )?;
    builder.with_client_auth_cert(certs, key).map_err(err)
}

/// Accepts any server certificate, checking only that the handshake is
/// signed by it (auto TLS between peers).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How often the certificate files are looked at for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A TLS configuration rebuilt from its files when they change: each new
/// connection takes [`Reloading::current`], which looks at the files' mtime
/// and size at most once per [`RELOAD_CHECK`]. A change that does not load
/// (a certificate written before its key, say) keeps the previous
/// configuration and is retried at the next check; connections already
/// open keep the configuration they started with.
pub struct Reloading<T> {
    files: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    state: Mutex<ReloadState<T>>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish()
    }
}

struct ReloadState<T> {
    current: Arc<T>,
    stamps: Vec<Stamp>,
    checked: Instant,
}

/// A listener's TLS configuration.
pub type ServerTls = Reloading<ServerConfig>;
/// A dialling member's TLS configuration.
pub type ClientTls = Reloading<ClientConfig>;

impl<T> Reloading<T> {
    fn new(
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let stamps = files.iter().map(|f| stamp(f)).collect();
        let current = Arc::new(build()?);
        Ok(Arc::new(Reloading {
            files,
            build: Box::new(build),
            state: Mutex::new(ReloadState {
                current,
                stamps,
                checked: Instant::now(),
            }),
        }))
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<T> {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if st.checked.elapsed() < RELOAD_CHECK || self.files.is_empty() {
            return Arc::clone(&st.current);
        }
        st.checked = Instant::now();
        let stamps: Vec<Stamp> = self.files.iter().map(|f| stamp(f)).collect();
        if stamps != st.stamps {
            match (self.build)() {
                Ok(cfg) => {
                    tracing::info!(files = ?self.files, "TLS certificates reloaded");
                    st.current = Arc::new(cfg);
                    st.stamps = stamps;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificates changed but do not load; keeping the previous ones")
                }
            }
        }
        Arc::clone(&st.current)
    }
}

impl Reloading<ServerConfig> {
    /// A listener's configuration from `files`, offering `alpn`.
    pub fn server(files: TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerTls>, TlsError> {
        let watched = files.watched();
        // A self-signed identity is made once: it has no files to change.
        if files.cert_file.is_none() && files.auto_tls {
            let cfg = server_config(&files, &alpn)?;
            return Reloading::new(Vec::new(), move || Ok(cfg.clone()));
        }
        Reloading::new(watched, move || server_config(&files, &alpn))
    }
}

impl Reloading<ClientConfig> {
    /// A dialling member's configuration from `files`.
    pub fn client(files: TlsFiles) -> Result<Arc<ClientTls>, TlsError> {
        let watched = files.watched();
        if files.cert_file.is_none() && files.auto_tls {
            let cfg = client_config(&files)?;
            return Reloading::new(Vec::new(), move || Ok(cfg.clone()));
        }
        Reloading::new(watched, move || client_config(&files))
    }
}

/// The TLS name to check a peer's certificate against: its URL's host.
pub fn server_name(hostport: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hostport,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| err(format!("{host}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, cn: &str) -> TlsFiles {
        let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, cn.to_string());
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("cert");
        std::fs::write(dir.join("c.pem"), cert.pem()).expect("write");
        std::fs::write(dir.join("k.pem"), key.serialize_pem()).expect("write");
        TlsFiles {
            cert_file: Some(dir.join("c.pem")),
            key_file: Some(dir.join("k.pem")),
            ..TlsFiles::default()
        }
    }

    /// Garbage gets no answer and a closed connection; a real ClientHello
    /// behind it on the next connection is served.
    #[tokio::test]
    async fn garbage_is_refused_silently_and_a_handshake_still_works() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "server");
        let cfg = Arc::new(server_config(&files, &[]).expect("config"));
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");

        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"\x00\x01 not a ClientHello")
            .await
            .expect("write");
        let (tcp, _) = listener.accept().await.expect("accept");
        let r = accept(&acceptor, tcp).await;
        assert!(matches!(r, Err(AcceptError::NotTls)), "{r:?}");
        let mut back = Vec::new();
        // Closed with unread bytes: EOF or a reset, never an answer.
        let _ = c.read_to_end(&mut back).await;
        assert!(back.is_empty(), "answered garbage with {back:?}");

        let c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let client = tokio_rustls::TlsConnector::from(Arc::new(
            client_config(&TlsFiles {
                trusted_ca_file: files.cert_file.clone(),
                ..files.clone()
            })
            .expect("client config"),
        ));
        let name = server_name("127.0.0.1:1").expect("name");
        let (tcp, _) = listener.accept().await.expect("accept");
        let (server, client) = tokio::join!(accept(&acceptor, tcp), client.connect(name, c));
        assert!(server.is_ok(), "{:?}", server.err());
        assert!(client.is_ok(), "{:?}", client.err());
    }

    #[test]
    fn a_changed_certificate_is_picked_up_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "first");
        let r = Reloading::server(files, Vec::new()).expect("load");
        let first = r.current();
        assert!(
            Arc::ptr_eq(&first, &r.current()),
            "unchanged files, same config"
        );

        // A key that is not PEM: the old configuration stays.
        std::fs::write(dir.path().join("k.pem"), "garbage").expect("write");
        std::thread::sleep(RELOAD_CHECK + Duration::from_millis(50));
        assert!(
            Arc::ptr_eq(&first, &r.current()),
            "broken files keep the old config"
        );

        // A complete new pair replaces it.
        write_pair(dir.path(), "second");
        std::thread::sleep(RELOAD_CHECK + Duration::from_millis(50));
        assert!(!Arc::ptr_eq(&first, &r.current()), "new files, new config");
    }

    #[test]
    fn missing_files_and_flags_are_named() {
        let e = server_config(&TlsFiles::default(), &[]).expect_err("no cert");
        assert!(e.0.contains("certificate"), "{e}");
        let e = server_config(
            &TlsFiles {
                cert_file: Some("/nonexistent/c.pem".into()),
                key_file: Some("/nonexistent/k.pem".into()),
                ..TlsFiles::default()
            },
            &[],
        )
        .expect_err("missing file");
        assert!(e.0.contains("/nonexistent/c.pem"), "{e}");
        let e = client_config(&TlsFiles::default()).expect_err("no CA");
        assert!(e.0.contains("trusted CA"), "{e}");
    }

    #[test]
    fn server_names_come_from_the_url_host() {
        assert!(matches!(
            server_name("127.0.0.1:2380"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("node1.example:2380"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("[::1]:2380"),
            Ok(ServerName::IpAddress(_))
        ));
    }
}
