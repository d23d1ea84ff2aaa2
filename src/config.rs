//! Command-line flags and the settings derived from them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use janus_core::members::member_id_for;
use sha2::{Digest, Sha256};

/// One member of a janus cluster: the etcd v3 API and the ZooKeeper protocol
/// over one replicated, revisioned store.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "janus",
    version,
    about,
    after_help = "Tools: `janus migrate zookeeper|etcd --help` (live migration into janus), `janus snapshot status|restore --help` (etcd-format backups)."
)]
pub struct Args {
    /// Human-readable name of this member.
    #[arg(long, env = "JANUS_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: ./<name>.janus].
    #[arg(long, env = "JANUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated URLs to serve the etcd API (gRPC and HTTP) on.
    #[arg(
        long,
        env = "JANUS_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,
    /// Comma-separated client URLs advertised to clients (MemberList).
    #[arg(
        long,
        env = "JANUS_ADVERTISE_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub advertise_client_urls: String,
    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "JANUS_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,
    /// Comma-separated peer URLs advertised to the rest of the cluster.
    #[arg(
        long,
        env = "JANUS_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long, env = "JANUS_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state: `new` or `existing`.
    #[arg(long, env = "JANUS_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into member and cluster ids.
    #[arg(
        long,
        env = "JANUS_INITIAL_CLUSTER_TOKEN",
        default_value = "janus-cluster"
    )]
    pub initial_cluster_token: String,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "JANUS_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, env = "JANUS_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Largest client request, in bytes.
    #[arg(long, env = "JANUS_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,
    /// Most operations in one txn.
    #[arg(long, env = "JANUS_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Backend size above which the NOSPACE alarm is raised.
    #[arg(long, env = "JANUS_QUOTA_BACKEND_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub quota_backend_bytes: i64,
    /// How often watchers that asked for progress notifications get one,
    /// in milliseconds (etcd's --experimental-watch-progress-notify-interval).
    #[arg(
        long,
        env = "JANUS_WATCH_PROGRESS_NOTIFY_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub watch_progress_notify_interval_ms: u64,
    /// The same under etcd's name, as a duration (`10m`, `500ms`); wins
    /// over `--watch-progress-notify-interval-ms` when given.
    #[arg(
        long,
        env = "JANUS_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        value_parser = go_duration
    )]
    pub experimental_watch_progress_notify_interval: Option<Duration>,
    /// How `--auto-compaction-retention` is read: `periodic` (a duration; a
    /// bare number is hours) or `revision` (a number of revisions).
    #[arg(long, env = "JANUS_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// History kept by auto-compaction; 0 turns it off. janus compacts by
    /// default (etcd does not) because ZooKeeper clients never compact.
    #[arg(long, env = "JANUS_AUTO_COMPACTION_RETENTION", default_value = "5m")]
    pub auto_compaction_retention: String,
    /// How often `revision` mode compacts (etcd: fixed 5 minutes).
    #[arg(long, env = "JANUS_AUTO_COMPACTION_INTERVAL", default_value = "5m")]
    pub auto_compaction_interval: String,
    /// How often the leader compares every member's HashKV and raises
    /// CORRUPT on a mismatch (a Go duration such as `1m` or `30s`; `0s`:
    /// off, etcd's default).
    #[arg(
        long,
        env = "JANUS_EXPERIMENTAL_CORRUPT_CHECK_TIME",
        default_value = "0s"
    )]
    pub experimental_corrupt_check_time: String,
    /// Compare this member's HashKV with every peer's before serving
    /// clients, and refuse to start on a mismatch (etcd's flag, off by
    /// default).
    #[arg(long, env = "JANUS_EXPERIMENTAL_INITIAL_CORRUPT_CHECK")]
    pub experimental_initial_corrupt_check: bool,
    /// Raft entries kept when the log is truncated, so a slow follower
    /// catches up without a snapshot (etcd 3.5's
    /// --experimental-snapshot-catchup-entries).
    #[arg(
        long,
        env = "JANUS_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 10_000
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// Extra comma-separated URLs serving only `/metrics` and the health
    /// endpoints (the client URLs serve them too).
    #[arg(long, env = "JANUS_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// Level of janus's own log lines: debug, info, warn or error
    /// (dependencies log at warn; RUST_LOG overrides both).
    #[arg(long, env = "JANUS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format: text or json (one object per line).
    #[arg(long, env = "JANUS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// etcd auth token provider: `simple`, or signed tokens with
    /// `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256...,ttl=5m`.
    #[arg(long, env = "JANUS_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Client-port certificate (PEM), for `https://` client URLs.
    #[arg(long, env = "JANUS_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Client-port private key (PEM).
    #[arg(long, env = "JANUS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to.
    #[arg(long, env = "JANUS_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require and verify client certificates on `https://` client URLs;
    /// a certificate's common name is the etcd user of requests without a
    /// token.
    #[arg(long, env = "JANUS_CLIENT_CERT_AUTH")]
    pub client_cert_auth: bool,
    /// Serve `https://` client URLs with a self-signed certificate made at
    /// startup when no --cert-file/--key-file are given.
    #[arg(long, env = "JANUS_AUTO_TLS")]
    pub auto_tls: bool,
    /// Peer-port certificate (PEM), for `https://` peer URLs; also the
    /// client certificate this member presents to its peers.
    #[arg(long, env = "JANUS_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Peer-port private key (PEM).
    #[arg(long, env = "JANUS_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA bundle (PEM) peers' certificates must chain to.
    #[arg(long, env = "JANUS_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require and verify peers' client certificates on the peer port.
    #[arg(long, env = "JANUS_PEER_CLIENT_CERT_AUTH")]
    pub peer_client_cert_auth: bool,
    /// Peer TLS with a self-signed certificate made at startup (peers'
    /// certificates are then not verified, as etcd's --peer-auto-tls).
    #[arg(long, env = "JANUS_PEER_AUTO_TLS")]
    pub peer_auto_tls: bool,
    /// Seconds a simple auth token lives unused (etcd's --auth-token-ttl).
    #[arg(long, env = "JANUS_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Address of the ZooKeeper client endpoint.
    #[arg(long, env = "JANUS_LISTEN_ZK_ADDR", default_value = "127.0.0.1:2181")]
    pub listen_zk_addr: String,
    /// ZooKeeper tickTime in milliseconds.
    #[arg(long, env = "JANUS_ZK_TICK_MS", default_value_t = 2000)]
    pub zk_tick_ms: u32,
    /// Smallest negotiated ZooKeeper session timeout [default: 2 x tick].
    #[arg(long, env = "JANUS_ZK_MIN_SESSION_TIMEOUT_MS")]
    pub zk_min_session_timeout_ms: Option<u32>,
    /// Largest negotiated ZooKeeper session timeout [default: 20 x tick].
    #[arg(long, env = "JANUS_ZK_MAX_SESSION_TIMEOUT_MS")]
    pub zk_max_session_timeout_ms: Option<u32>,
    /// Largest ZooKeeper frame (jute.maxbuffer).
    #[arg(long, env = "JANUS_ZK_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub zk_max_frame_bytes: usize,
    /// Answer four-letter words (ruok, srvr, mntr, ...) on the ZooKeeper port.
    #[arg(long, env = "JANUS_ZK_FOUR_LETTER_WORDS", default_value_t = true, action = clap::ArgAction::Set)]
    pub zk_four_letter_words: bool,
    /// Accept TTL nodes (ZooKeeper's extendedTypesEnabled).
    #[arg(long, env = "JANUS_ZK_TTL_NODES", default_value_t = true, action = clap::ArgAction::Set)]
    pub zk_ttl_nodes: bool,
    /// Most ZooKeeper connections served at once.
    #[arg(long, env = "JANUS_ZK_MAX_CONNECTIONS", default_value_t = 4096)]
    pub zk_max_connections: usize,
    /// Address of the TLS ZooKeeper endpoint (ZooKeeper's secureClientPort).
    #[arg(long, env = "JANUS_LISTEN_ZK_SECURE_ADDR")]
    pub listen_zk_secure_addr: Option<String>,
    /// Certificate of the secure ZooKeeper endpoint [default: --cert-file].
    #[arg(long, env = "JANUS_ZK_CERT_FILE")]
    pub zk_cert_file: Option<PathBuf>,
    /// Private key of the secure ZooKeeper endpoint [default: --key-file].
    #[arg(long, env = "JANUS_ZK_KEY_FILE")]
    pub zk_key_file: Option<PathBuf>,
    /// CA bundle for ZooKeeper client certificates [default: --trusted-ca-file].
    #[arg(long, env = "JANUS_ZK_TRUSTED_CA_FILE")]
    pub zk_trusted_ca_file: Option<PathBuf>,
    /// Require and verify client certificates on the secure ZooKeeper endpoint.
    #[arg(long, env = "JANUS_ZK_CLIENT_CERT_AUTH")]
    pub zk_client_cert_auth: bool,
    /// ZooKeeper superuser: `user:base64(sha1(user:password))` (ZooKeeper's
    /// zookeeper.DigestAuthenticationProvider.superDigest).
    #[arg(long, env = "JANUS_ZK_SUPER_DIGEST")]
    pub zk_super_digest: Option<String>,
    /// ZooKeeper superuser by client certificate subject, RFC 2253 as Java
    /// writes it (`CN=admin,O=acme`; ZooKeeper's
    /// zookeeper.X509AuthenticationProvider.superUser).
    #[arg(long, env = "JANUS_ZK_X509_SUPER_USER")]
    pub zk_x509_super_user: Option<String>,
    /// Serve ZooKeeper's reconfig (ZooKeeper's reconfigEnabled); off, it
    /// is answered ReconfigDisabled.
    #[arg(long, env = "JANUS_ZK_RECONFIG")]
    pub zk_reconfig: bool,
    /// ZooKeeper's standaloneEnabled: on (the default), a reconfig must
    /// leave at least 2 voters; off, a single voter is a valid ensemble.
    #[arg(long, env = "JANUS_ZK_STANDALONE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub zk_standalone_enabled: bool,
    /// ZooKeeper read-only mode (ZooKeeper's readonlymode.enabled): cut off
    /// from the majority, keep serving reads to read-only clients.
    #[arg(long, env = "JANUS_ZK_READ_ONLY")]
    pub zk_read_only: bool,
    /// This member's ZooKeeper server id (ZooKeeper's myid), shown in
    /// /zookeeper/config [default: the member id].
    #[arg(long, env = "JANUS_ZK_SERVER_ID")]
    pub zk_server_id: Option<u64>,
    /// Election port shown for this member in /zookeeper/config
    /// [default: the peer port, which janus elects over].
    #[arg(long, env = "JANUS_ZK_ELECTION_PORT")]
    pub zk_election_port: Option<u16>,
    /// JAAS file whose `Server` section lists SASL DIGEST-MD5 users
    /// (`user_<name>="<password>"`, ZooKeeper's DigestLoginModule):
    /// serve SASL authentication on the ZooKeeper port.
    #[arg(long, env = "JANUS_ZK_JAAS_CONFIG")]
    pub zk_jaas_config: Option<PathBuf>,
    /// How often the leader removes empty containers and expired TTL nodes (ms).
    #[arg(long, env = "JANUS_ZK_REAP_INTERVAL_MS", default_value_t = 1000)]
    pub zk_reap_interval_ms: u64,
}

fn split(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `http://host:port` → a socket address.
fn url_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let hostport = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .with_context(|| format!("bad URL {url}"))?
        .next()
        .with_context(|| format!("URL {url} resolves to no address"))
}

/// First 8 bytes of SHA-256 over the parts, never 0 (ids are raft ids).
fn id_of(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b).max(1)
}

impl Args {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.janus", self.name)))
    }

    pub fn node_config(&self) -> anyhow::Result<janus_core::NodeConfig> {
        let join_existing = match self.initial_cluster_state.as_str() {
            "new" => false,
            "existing" => true,
            _ => bail!("--initial-cluster-state must be new or existing"),
        };
        let token = &self.initial_cluster_token;
        let peer_urls = split(&self.initial_advertise_peer_urls);
        let client_urls = split(&self.advertise_client_urls);
        let member_id = member_id_for(&peer_urls, token);
        // --initial-cluster: name=peer-url,... (a name may repeat for several URLs).
        let mut initial: Vec<janus_core::Member> = Vec::new();
        if let Some(ic) = &self.initial_cluster {
            let mut by_name: Vec<(String, Vec<String>)> = Vec::new();
            for part in ic.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, url) = part
                    .split_once('=')
                    .with_context(|| format!("bad --initial-cluster entry {part:?}"))?;
                match by_name.iter_mut().find(|(n, _)| n == name) {
                    Some((_, urls)) => urls.push(url.to_string()),
                    None => by_name.push((name.to_string(), vec![url.to_string()])),
                }
            }
            for (name, urls) in by_name {
                let id = member_id_for(&urls, token);
                // Client URLs are not part of --initial-cluster: every member
                // bootstraps the same table (no client URLs) and publishes its
                // own through the log once a leader is known.
                initial.push(janus_core::Member {
                    id,
                    name,
                    peer_urls: urls,
                    client_urls: Vec::new(),
                    is_learner: false,
                });
            }
            if !initial.iter().any(|m| m.id == member_id) {
                bail!(
                    "--initial-cluster has no entry for this member (--name {} with peer URLs {})",
                    self.name,
                    peer_urls.join(",")
                );
            }
        }
        let cluster_id = id_of(&[token]);
        if self.heartbeat_interval == 0 || self.election_timeout < 5 * self.heartbeat_interval {
            bail!("--election-timeout must be at least 5 x --heartbeat-interval");
        }
        let peer_listen = match split(&self.listen_peer_urls).first() {
            Some(u) => Some(url_addr(u)?),
            None => None,
        };
        let peer_tls = self.peer_tls()?;
        Ok(janus_core::NodeConfig {
            data_dir: self.data_dir(),
            name: self.name.clone(),
            member_id,
            cluster_id,
            cluster_token: token.clone(),
            log_keep: self.experimental_snapshot_catchup_entries.max(1),
            cluster_secret: format!("janus:{token}:{cluster_id:x}").into_bytes(),
            tick: Duration::from_millis(self.heartbeat_interval),
            election_ticks: (self.election_timeout / self.heartbeat_interval) as usize,
            request_timeout: Duration::from_secs(7),
            reap_interval: Duration::from_millis(self.zk_reap_interval_ms.max(10)),
            peer_urls,
            client_urls,
            peer_listen,
            initial_members: initial,
            join_existing,
            peer_tls,
            zk_server: Some(janus_core::ZkServer {
                server_id: self.zk_server_id.unwrap_or(member_id),
                election_port: self.zk_election_port.unwrap_or(0),
                client_addr: self.listen_zk_addr.clone(),
            }),
            // etcd: 0 means the default quota, a negative value no quota.
            quota_backend_bytes: match self.quota_backend_bytes {
                0 => janus_core::DEFAULT_QUOTA_BYTES,
                q => q,
            },
        })
    }

    /// Peer TLS, when this member's peer URLs are `https://`: the peer
    /// port serves TLS and links to `https://` peers dial with it, both
    /// from the `--peer-*` certificate flags.
    fn peer_tls(&self) -> anyhow::Result<Option<janus_core::PeerTls>> {
        let https = split(&self.listen_peer_urls)
            .iter()
            .chain(split(&self.initial_advertise_peer_urls).iter())
            .any(|u| u.starts_with("https://"));
        if !https {
            return Ok(None);
        }
        let files = janus_core::tls::TlsFiles {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            auto_tls: self.peer_auto_tls,
        };
        let server = janus_core::tls::ServerTls::server(files.clone(), Vec::new())
            .context("peer TLS (--peer-cert-file, --peer-key-file, --peer-auto-tls)")?;
        let client = janus_core::tls::ClientTls::client(files)
            .context("peer TLS (--peer-trusted-ca-file or --peer-auto-tls)")?;
        Ok(Some(janus_core::PeerTls { server, client }))
    }

    /// The auto-compaction schedule (`None`: off) and revision-mode interval.
    pub fn compaction(
        &self,
    ) -> anyhow::Result<(Option<janus_core::compactor::Retention>, Duration)> {
        use janus_core::compactor::Retention;
        let retention =
            Retention::parse(&self.auto_compaction_mode, &self.auto_compaction_retention)
                .map_err(anyhow::Error::msg)?;
        let interval = match Retention::parse("periodic", &self.auto_compaction_interval) {
            Ok(Some(Retention::Periodic(d))) => d,
            _ => bail!(
                "--auto-compaction-interval {:?} must be a positive duration",
                self.auto_compaction_interval
            ),
        };
        Ok((retention, interval))
    }

    /// The periodic corruption check's interval (`None`: off).
    /// (Parsed here rather than by clap so that `0` and `0s` mean off.)
    pub fn corrupt_check_time(&self) -> anyhow::Result<Option<Duration>> {
        let s = self.experimental_corrupt_check_time.trim();
        if s == "0" {
            return Ok(None);
        }
        match janus_core::compactor::parse_go_duration(s) {
            Some(d) if d.is_zero() => Ok(None),
            Some(d) => Ok(Some(d)),
            None => {
                bail!("invalid --experimental-corrupt-check-time {s:?} (a duration such as 5m)")
            }
        }
    }

    pub fn metrics_listen_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        split(&self.listen_metrics_urls)
            .iter()
            .map(|u| url_addr(u))
            .collect()
    }

    pub fn client_listen_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        split(&self.listen_client_urls)
            .iter()
            .map(|u| url_addr(u))
            .collect()
    }

    pub fn etcd_config(&self, listen: SocketAddr) -> janus_etcd::EtcdConfig {
        janus_etcd::EtcdConfig {
            listen,
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            client_urls: split(&self.advertise_client_urls),
            peer_urls: split(&self.initial_advertise_peer_urls),
            watch_progress_notify_interval: self
                .experimental_watch_progress_notify_interval
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_millis(
                    self.watch_progress_notify_interval_ms.max(1),
                )),
            tls: self.client_tls(listen),
            jwt: self.jwt().ok().flatten(),
            // etcd treats a TTL of 0 as its default.
            auth_token_ttl: Duration::from_secs(match self.auth_token_ttl {
                0 => 300,
                t => t,
            }),
        }
    }

    /// The secure ZooKeeper endpoint (`--listen-zk-secure-addr`): the
    /// ZooKeeper settings with TLS from the `--zk-*` certificate flags,
    /// falling back to the client port's.
    pub fn zk_secure_config(&self) -> anyhow::Result<Option<janus_zk::ZkConfig>> {
        let Some(addr) = &self.listen_zk_secure_addr else {
            return Ok(None);
        };
        let listen = addr
            .to_socket_addrs()
            .with_context(|| format!("bad --listen-zk-secure-addr {addr}"))?
            .next()
            .context("--listen-zk-secure-addr resolves to no address")?;
        // The ZooKeeper protocol has no ALPN name.
        let tls = janus_core::tls::ServerTls::server(
            janus_core::tls::TlsFiles {
                cert_file: self.zk_cert_file.clone().or_else(|| self.cert_file.clone()),
                key_file: self.zk_key_file.clone().or_else(|| self.key_file.clone()),
                trusted_ca_file: self
                    .zk_trusted_ca_file
                    .clone()
                    .or_else(|| self.trusted_ca_file.clone()),
                client_cert_auth: self.zk_client_cert_auth,
                auto_tls: self.auto_tls,
            },
            Vec::new(),
        )
        .context("secure ZooKeeper endpoint")?;
        let mut cfg = self.zk_config()?;
        cfg.listen = listen;
        cfg.tls = Some(janus_zk::Tls(tls));
        Ok(Some(cfg))
    }

    /// TLS settings of the client listener on `listen`, if its URL is
    /// `https://`.
    fn client_tls(&self, listen: SocketAddr) -> Option<janus_etcd::tls::TlsConfig> {
        let https = split(&self.listen_client_urls)
            .iter()
            .any(|u| u.starts_with("https://") && url_addr(u).is_ok_and(|a| a == listen));
        https.then(|| janus_etcd::tls::TlsConfig {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
            auto_tls: self.auto_tls,
        })
    }

    /// `--auth-token`: etcd's token provider options (`simple`, or
    /// `jwt,pub-key=F,priv-key=F,sign-method=RS256,ttl=5m`).
    pub fn jwt(&self) -> anyhow::Result<Option<std::sync::Arc<janus_etcd::jwt::Jwt>>> {
        let (kind, opts) = self
            .auth_token
            .split_once(',')
            .unwrap_or((self.auth_token.as_str(), ""));
        match kind {
            "simple" => Ok(None),
            "jwt" => janus_etcd::jwt::Jwt::from_options(opts)
                .map(|j| Some(std::sync::Arc::new(j)))
                .map_err(|e| anyhow::anyhow!("--auth-token: {e}")),
            other => {
                anyhow::bail!("--auth-token {other:?}: invalid auth options (want simple or jwt)")
            }
        }
    }

    pub fn zk_config(&self) -> anyhow::Result<janus_zk::ZkConfig> {
        let listen = self
            .listen_zk_addr
            .to_socket_addrs()
            .with_context(|| format!("bad --listen-zk-addr {}", self.listen_zk_addr))?
            .next()
            .context("--listen-zk-addr resolves to no address")?;
        Ok(janus_zk::ZkConfig {
            listen,
            tick_ms: self.zk_tick_ms,
            min_session_timeout_ms: self
                .zk_min_session_timeout_ms
                .unwrap_or(2 * self.zk_tick_ms),
            max_session_timeout_ms: self
                .zk_max_session_timeout_ms
                .unwrap_or(20 * self.zk_tick_ms),
            max_frame_bytes: self.zk_max_frame_bytes,
            four_letter_words: self.zk_four_letter_words,
            ttl_nodes: self.zk_ttl_nodes,
            max_connections: self.zk_max_connections,
            super_digest: self.zk_super_digest.clone(),
            x509_super_user: self.zk_x509_super_user.clone(),
            tls: None,
            reconfig: self.zk_reconfig,
            standalone_enabled: self.zk_standalone_enabled,
            read_only: self.zk_read_only,
            sasl_users: match &self.zk_jaas_config {
                None => Vec::new(),
                Some(p) => janus_zk::sasl::jaas_users(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read --zk-jaas-config {}", p.display()))?,
                ),
            },
        })
    }
}

/// A Go duration flag (`time.ParseDuration`'s units h, m, s, ms).
fn go_duration(s: &str) -> Result<Duration, String> {
    janus_core::compactor::parse_go_duration(s.trim())
        .ok_or_else(|| format!("{s:?} is not a duration (such as 10m or 500ms)"))
}
