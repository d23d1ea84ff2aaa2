//! Settings of the ZooKeeper endpoint (D12: `--zk-*` flags).

use std::net::SocketAddr;

/// How the ZooKeeper endpoint behaves. Defaults follow ZooKeeper 3.8's
/// (`tickTime=2000`, min/max session timeout 2/20 ticks, jute.maxbuffer 1 MiB)
/// except that four-letter words and TTL nodes are on (docs/ARCHITECTURE.md, wire facts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkConfig {
    pub listen: SocketAddr,
    /// ZooKeeper `tickTime` in milliseconds.
    pub tick_ms: u32,
    /// Lower bound of negotiated session timeouts (ZooKeeper: 2 x tick).
    pub min_session_timeout_ms: u32,
    /// Upper bound of negotiated session timeouts (ZooKeeper: 20 x tick).
    pub max_session_timeout_ms: u32,
    /// Largest frame accepted or sent (jute.maxbuffer).
    pub max_frame_bytes: usize,
    /// Answer four-letter words on the client port.
    pub four_letter_words: bool,
    /// Accept createTTL / TTL create modes (ZooKeeper's extendedTypesEnabled).
    pub ttl_nodes: bool,
    /// Connections served at once; further clients wait in the accept queue.
    pub max_connections: usize,
    /// ZooKeeper's `superDigest` (`user:base64(sha1(user:password))`): a
    /// digest login with that identity is the superuser.
    pub super_digest: Option<String>,
    /// ZooKeeper's `zookeeper.X509AuthenticationProvider.superUser`: a
    /// client whose verified certificate has this subject (RFC 2253, as
    /// `X500Principal.getName()`) is the superuser.
    pub x509_super_user: Option<String>,
    /// TLS for this endpoint (ZooKeeper's `secureClientPort`): every
    /// connection starts with a TLS handshake.
    pub tls: Option<Tls>,
    /// Serve `reconfig` (ZooKeeper's `reconfigEnabled`); otherwise it is
    /// answered ReconfigDisabled.
    pub reconfig: bool,
    /// ZooKeeper's `standaloneEnabled`: a reconfig must leave at least 2
    /// voters; off, 1 is enough (a quorum of one).
    pub standalone_enabled: bool,
    /// Read-only mode (ZooKeeper's `readonlymode.enabled`): a member cut
    /// off from the majority keeps serving reads to clients that asked for
    /// read-only sessions.
    pub read_only: bool,
    /// SASL DIGEST-MD5 users and passwords (the `Server` section of
    /// ZooKeeper's JAAS file); empty: SASL is not served.
    pub sasl_users: Vec<(String, String)>,
}

/// A rustls server configuration, compared by identity (so the settings
/// stay `Eq`).
#[derive(Clone, Debug)]
pub struct Tls(pub std::sync::Arc<janus_core::tls::ServerTls>);

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Tls {}

impl Default for ZkConfig {
    fn default() -> Self {
        ZkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2181)),
            tick_ms: 2000,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            max_frame_bytes: 1024 * 1024,
            four_letter_words: true,
            ttl_nodes: true,
            max_connections: 1024,
            super_digest: None,
            x509_super_user: None,
            tls: None,
            reconfig: false,
            standalone_enabled: true,
            read_only: false,
            sasl_users: Vec::new(),
        }
    }
}
