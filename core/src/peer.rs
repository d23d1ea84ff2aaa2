//! Peer transport: raft messages and the few member-to-member requests
//! (forwarded lease keepalives, [`crate::lease_forward`]; snapshot
//! streams; HashKV for the corruption check; round-trip probes) over TCP
//! with length-delimited frames.
//!
//! Every peer has one outbound link: a task that connects (with backoff),
//! writes queued frames and reconnects on error. Sending never blocks the
//! raft loop: a full queue drops the frame (raft retransmits), and a dead
//! peer only fills its own queue. Snapshots go over a connection of their
//! own so that a large stream does not delay heartbeats; so do the two
//! request/answer exchanges, HashKV ([`Peers::hash_kv`]) and the prober
//! that measures each peer's round-trip time for
//! `etcd_network_peer_round_trip_time_seconds`, as etcd's rafthttp probes
//! its peers.
//!
//! Frame: `[len: u32 BE][type: u8][payload]`.
//!
//! TLS (etcd's `--peer-*` flags): a member whose peer URL is `https://`
//! serves its peer port over TLS, and links to peers whose URLs are
//! `https://` dial with TLS, presenting this member's certificate and
//! verifying the peer's against the trusted CA ([`crate::tls`]). A peer with
//! a certificate from another CA fails the handshake and never exchanges a
//! raft message. Certificates are re-read when their files change: each new
//! connection takes the current configuration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::corrupt_check::{PeerHash, PeerHashError};
use crate::lease_forward::{self, Forwarder, Renewal};
use crate::transport::{Chunks, Outbox};
use crate::CoreError;

const RAFT: u8 = 1;
/// A follower's forwarded lease keepalive (the lease id, i64 BE), answered
/// by [`KEEPALIVE_ANSWER`] on the same connection.
pub(crate) const KEEPALIVE: u8 = 2;
const SNAP_HEADER: u8 = 3;
const SNAP_CHUNK: u8 = 4;
const SNAP_END: u8 = 5;
/// HashKV request: the revision (i64 BE); answered by [`HASHKV_ANSWER`].
const HASHKV: u8 = 6;
const HASHKV_ANSWER: u8 = 7;
/// Round-trip probe: an opaque payload, echoed back in [`PROBE_ANSWER`].
const PROBE: u8 = 8;
const PROBE_ANSWER: u8 = 9;
pub(crate) const KEEPALIVE_ANSWER: u8 = 10;

/// How often each peer is probed (etcd's `proberInterval`: its connection
/// read timeout, 5 s, less one second).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// How long a probe may wait for its answer (etcd's `ConnReadTimeout`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// When the smoothed round-trip time is first recorded, and again after an
/// unhealthy probe (etcd's `statusErrorInterval`).
const RTT_RECORD_SOON: Duration = Duration::from_secs(5);
/// How often it is recorded while the peer answers (etcd's
/// `statusMonitoringInterval`).
const RTT_RECORD_EVERY: Duration = Duration::from_secs(30);
/// Weight of the newest probe in the smoothed round-trip time (RFC 2988's
/// alpha, which etcd's prober uses).
const SRTT_ALPHA: f64 = 0.125;

/// Largest frame (a raft message is bounded by max_size_per_msg).
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Frames queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Largest snapshot accepted from a peer.
const MAX_SNAPSHOT: usize = 8 * 1024 * 1024 * 1024;

/// What the transport hands to the raft loop.
#[derive(Debug)]
pub enum PeerEvent {
    Raft(Message),
    /// A snapshot stream to `to` finished (`ok`) or failed.
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// A peer could not be reached.
    Unreachable(u64),
}

type Deliver = Arc<dyn Fn(PeerEvent) + Send + Sync>;

/// What answers a peer's HashKV request: this member's hash at a revision.
pub type HashSource = Arc<dyn Fn(i64) -> Result<PeerHash, PeerHashError> + Send + Sync>;

/// What answers a follower's forwarded keepalive: this member renewing the
/// lease on its own clock if it is the leader.
pub type RenewalSource = Arc<dyn Fn(i64) -> Renewal + Send + Sync>;

/// TLS of the peer port (serving) and of links to `https://` peers
/// (dialling).
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<crate::tls::ServerTls>,
    pub client: Arc<crate::tls::ClientTls>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

pub(crate) trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
pub(crate) type PeerStream = Box<dyn PeerIo>;

/// Dials `url`'s host and port: TLS when the URL is `https://` (and the
/// member has peer TLS settings), plain TCP otherwise.
pub(crate) async fn dial(url: &str, tls: Option<&PeerTls>) -> Result<PeerStream, String> {
    let addr = url_hostport(url);
    let tcp = crate::sockets::connect(&addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !url.starts_with("https://") {
        return Ok(Box::new(tcp));
    }
    let tls = tls.ok_or_else(|| format!("{url}: an https:// peer needs peer TLS settings"))?;
    let name = crate::tls::server_name(&addr).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(tls.client.current());
    let stream = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| format!("{addr}: TLS handshake timed out"))?
        .map_err(|e| format!("{addr}: TLS handshake failed: {e}"))?;
    Ok(Box::new(stream))
}

struct Link {
    url: String,
    tx: mpsc::Sender<Bytes>,
}

/// The member's view of its peers.
pub struct Peers {
    self_id: u64,
    rt: tokio::runtime::Handle,
    links: Mutex<HashMap<u64, Link>>,
    deliver: Deliver,
    tls: Option<PeerTls>,
    /// Snapshot data received, by (index, term), until raft installs it.
    staged: Mutex<HashMap<(u64, u64), Vec<u8>>>,
    /// Set once on shutdown: the listener and inbound connections end.
    closed: tokio::sync::watch::Sender<bool>,
    /// Answers HashKV requests, once the member is open.
    hash_source: std::sync::OnceLock<HashSource>,
    /// Answers forwarded keepalives, once the member is open.
    renewal_source: std::sync::OnceLock<RenewalSource>,
    /// This member's keepalive connection to each peer it forwarded to.
    forwarders: Mutex<HashMap<u64, Forwarder>>,
}

pub(crate) fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 1);
    b.put_u8(kind);
    b.put_slice(payload);
    b.freeze()
}

pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// `http://host:port` → `host:port`.
pub fn url_hostport(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, r)| r)
        .trim_end_matches('/')
        .to_string()
}

impl Peers {
    pub fn new(
        self_id: u64,
        rt: tokio::runtime::Handle,
        tls: Option<PeerTls>,
        deliver: Deliver,
    ) -> Arc<Peers> {
        Arc::new(Peers {
            self_id,
            rt,
            links: Mutex::new(HashMap::new()),
            deliver,
            tls,
            staged: Mutex::new(HashMap::new()),
            closed: tokio::sync::watch::channel(false).0,
            hash_source: std::sync::OnceLock::new(),
            renewal_source: std::sync::OnceLock::new(),
            forwarders: Mutex::new(HashMap::new()),
        })
    }

    /// Sets what answers peers' HashKV requests (once; later calls are
    /// ignored). Until then they are answered with an error.
    pub fn set_hash_source(&self, f: HashSource) {
        let _ = self.hash_source.set(f);
    }

    /// Sets what answers peers' forwarded keepalives (once; later calls
    /// are ignored). Until then the answer is that this is not the leader.
    pub fn set_renewal_source(&self, f: RenewalSource) {
        let _ = self.renewal_source.set(f);
    }

    /// Forwards a keepalive of `lease` to peer `to` (the leader) and
    /// resolves with its answer ([`crate::lease_forward`]).
    pub fn renew_lease(
        &self,
        to: u64,
        lease: i64,
    ) -> impl std::future::Future<Output = Result<Renewal, String>> + Send + 'static {
        let call = match (self.url_of(to), self.forwarders.lock()) {
            (Some(url), Ok(mut fw)) => {
                let f = fw
                    .entry(to)
                    .and_modify(|f| {
                        if f.url != url {
                            *f = Forwarder::start(&self.rt, url.clone(), self.tls.clone());
                        }
                    })
                    .or_insert_with(|| Forwarder::start(&self.rt, url.clone(), self.tls.clone()));
                Ok(f.renew(lease))
            }
            _ => Err(format!("no peer {to:x}")),
        };
        async move { call?.await }
    }

    fn url_of(&self, to: u64) -> Option<String> {
        self.links
            .lock()
            .ok()
            .and_then(|l| l.get(&to).map(|l| l.url.clone()))
    }

    /// Asks peer `to` for its HashKV at `revision` (etcd's
    /// `getPeerHashKVHTTP`), on a connection of its own, giving up after
    /// `timeout`.
    pub fn hash_kv(
        &self,
        to: u64,
        revision: i64,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<PeerHash, PeerHashError>> + Send + 'static {
        let url = self.url_of(to);
        let tls = self.tls.clone();
        async move {
            let url = url.ok_or_else(|| PeerHashError::Unreachable(format!("no peer {to:x}")))?;
            let answer = tokio::time::timeout(timeout, async {
                let stream = dial(&url, tls.as_ref()).await?;
                let mut framed = Framed::new(stream, codec());
                framed
                    .send(frame(HASHKV, &revision.to_be_bytes()))
                    .await
                    .map_err(|e| e.to_string())?;
                match framed.next().await {
                    Some(Ok(f)) => Ok(f),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("peer closed the connection".to_string()),
                }
            })
            .await
            .map_err(|_| PeerHashError::Unreachable(format!("{url}: timed out")))?
            .map_err(PeerHashError::Unreachable)?;
            match answer.split_first() {
                Some((&HASHKV_ANSWER, body)) => decode_hash_answer(body),
                _ => Err(PeerHashError::Unreachable(format!(
                    "{url}: not a HashKV answer"
                ))),
            }
        }
    }

    /// Closes the listener, every inbound connection and every link.
    pub fn shutdown(&self) {
        let _ = self.closed.send(true);
        if let Ok(mut links) = self.links.lock() {
            links.clear();
        }
        if let Ok(mut fw) = self.forwarders.lock() {
            fw.clear();
        }
    }

    /// Makes the links match the member list (id, first peer URL).
    pub fn set_members(&self, members: &[(u64, String)]) {
        let Ok(mut links) = self.links.lock() else {
            return;
        };
        links.retain(|id, l| members.iter().any(|(m, u)| m == id && *u == l.url));
        if let Ok(mut fw) = self.forwarders.lock() {
            fw.retain(|id, f| members.iter().any(|(m, u)| m == id && *u == f.url));
        }
        for (id, url) in members {
            if *id == self.self_id || links.contains_key(id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            self.rt.spawn(link_task(
                *id,
                url.clone(),
                self.tls.clone(),
                rx,
                Arc::clone(&self.deliver),
            ));
            self.rt.spawn(probe_task(
                *id,
                url.clone(),
                self.tls.clone(),
                tx.downgrade(),
            ));
            links.insert(
                *id,
                Link {
                    url: url.clone(),
                    tx,
                },
            );
        }
    }

    fn send_frame(&self, to: u64, f: Bytes) {
        if let Ok(links) = self.links.lock() {
            if let Some(l) = links.get(&to) {
                let _ = l.tx.try_send(f);
            }
        }
    }

    pub fn send_raft(&self, m: &Message) {
        if let Ok(bytes) = m.write_to_bytes() {
            self.send_frame(m.to, frame(RAFT, &bytes));
        }
    }

    /// Streams a snapshot message and its data to its recipient on a
    /// connection of its own, then reports the outcome.
    pub fn send_snapshot(
        &self,
        msg: Message,
        chunks: impl Iterator<Item = Result<Vec<u8>, CoreError>> + Send + 'static,
    ) {
        let to = msg.to;
        let url = self.url_of(to);
        let deliver = Arc::clone(&self.deliver);
        let tls = self.tls.clone();
        let Some(url) = url else {
            deliver(PeerEvent::SnapshotSent { to, ok: false });
            return;
        };
        self.rt.spawn(async move {
            let res = async {
                let header = msg.write_to_bytes().map_err(|e| e.to_string())?;
                let stream = dial(&url, tls.as_ref()).await?;
                let mut framed = Framed::new(stream, codec());
                framed
                    .send(frame(SNAP_HEADER, &header))
                    .await
                    .map_err(|e| e.to_string())?;
                // Chunks are read from a fjall view: blocking work, but small
                // steps; done inline for simplicity.
                for c in chunks {
                    let c = c.map_err(|e| e.to_string())?;
                    framed
                        .send(frame(SNAP_CHUNK, &c))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                framed
                    .send(frame(SNAP_END, &[]))
                    .await
                    .map_err(|e| e.to_string())?;
                SinkExt::<Bytes>::flush(&mut framed)
                    .await
                    .map_err(|e| e.to_string())?;
                // Wait for the receiver to acknowledge by closing.
                let _ = tokio::time::timeout(Duration::from_secs(30), framed.next()).await;
                Ok::<(), String>(())
            }
            .await;
            if let Err(e) = &res {
                tracing::warn!(to, "snapshot send failed: {e}");
            }
            deliver(PeerEvent::SnapshotSent {
                to,
                ok: res.is_ok(),
            });
        });
    }

    /// Takes the data of a received snapshot.
    pub fn take_staged(&self, index: u64, term: u64) -> Option<Vec<u8>> {
        self.staged.lock().ok()?.remove(&(index, term))
    }

    /// Accepts peer connections until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut closed = self.closed.subscribe();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = closed.wait_for(|c| *c) => return,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let me = Arc::clone(&self);
                    let mut closed = self.closed.subscribe();
                    tokio::spawn(async move {
                        tokio::select! {
                            r = me.inbound(stream) => if let Err(e) = r {
                                tracing::debug!(%addr, "peer connection closed: {e}");
                            },
                            _ = closed.wait_for(|c| *c) => {}
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("peer accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn inbound(&self, tcp: TcpStream) -> Result<(), String> {
        let _ = tcp.set_nodelay(true);
        let stream: PeerStream = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.current());
                let s = crate::tls::accept(&acceptor, tcp).await.map_err(|e| {
                    tracing::warn!("peer TLS handshake refused: {e}");
                    e.to_string()
                })?;
                Box::new(s)
            }
        };
        let mut framed = Framed::new(stream, codec());
        let mut snap: Option<(Message, Vec<u8>)> = None;
        while let Some(f) = framed.next().await {
            let f = f.map_err(|e| e.to_string())?;
            let (&kind, payload) = f.split_first().ok_or("empty frame")?;
            match kind {
                RAFT => {
                    let m = Message::parse_from_bytes(payload).map_err(|e| e.to_string())?;
                    crate::metrics::peer_received(m.from, f.len() + 4);
                    (self.deliver)(PeerEvent::Raft(m));
                }
                HASHKV => {
                    let b: [u8; 8] = payload.try_into().map_err(|_| "bad HashKV frame")?;
                    let revision = i64::from_be_bytes(b);
                    let answer = match self.hash_source.get().cloned() {
                        // A scan of the store: off the async threads.
                        Some(f) => tokio::task::spawn_blocking(move || f(revision))
                            .await
                            .unwrap_or_else(|e| Err(PeerHashError::Unreachable(e.to_string()))),
                        None => Err(PeerHashError::Unreachable("member not open yet".into())),
                    };
                    framed
                        .send(frame(HASHKV_ANSWER, &encode_hash_answer(&answer)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                PROBE => {
                    framed
                        .send(frame(PROBE_ANSWER, payload))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                KEEPALIVE => {
                    let b: [u8; 8] = payload.try_into().map_err(|_| "bad keepalive frame")?;
                    let lease = i64::from_be_bytes(b);
                    let renewal = self
                        .renewal_source
                        .get()
                        .map_or(Renewal::NotLeader, |f| f(lease));
                    framed
                        .send(frame(
                            KEEPALIVE_ANSWER,
                            &lease_forward::encode_answer(lease, renewal),
                        ))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                SNAP_HEADER => {
                    let m = Message::parse_from_bytes(payload).map_err(|e| e.to_string())?;
                    snap = Some((m, Vec::new()));
                }
                SNAP_CHUNK => {
                    let (_, data) = snap.as_mut().ok_or("snapshot chunk without header")?;
                    if data.len() + payload.len() > MAX_SNAPSHOT {
                        return Err("snapshot too large".into());
                    }
                    data.extend_from_slice(payload);
                }
                SNAP_END => {
                    let (m, data) = snap.take().ok_or("snapshot end without header")?;
                    let meta = m.get_snapshot().get_metadata();
                    if let Ok(mut st) = self.staged.lock() {
                        st.insert((meta.index, meta.term), data);
                    }
                    (self.deliver)(PeerEvent::Raft(m));
                    return Ok(());
                }
                other => return Err(format!("unknown peer frame type {other}")),
            }
        }
        Ok(())
    }
}

async fn link_task(
    to: u64,
    url: String,
    tls: Option<PeerTls>,
    mut rx: mpsc::Receiver<Bytes>,
    deliver: Deliver,
) {
    let mut backoff = Duration::from_millis(50);
    let mut warned = false;
    loop {
        let stream = match dial(&url, tls.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                // A refused handshake is a configuration error worth one
                // warning; an unreachable peer is routine.
                if e.contains("TLS") && !warned {
                    tracing::warn!(to, "peer link: {e}");
                    warned = true;
                }
                if rx.is_closed() {
                    return;
                }
                deliver(PeerEvent::Unreachable(to));
                // Drop what queued up while the peer was away: raft resends.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        warned = false;
        let mut framed = Framed::new(stream, codec());
        loop {
            let Some(f) = rx.recv().await else { return };
            let mut bytes = f.len() + 4;
            if framed.feed(f).await.is_err() {
                break;
            }
            // Batch whatever else is queued into one flush.
            while let Ok(f) = rx.try_recv() {
                bytes += f.len() + 4;
                if framed.feed(f).await.is_err() {
                    break;
                }
            }
            if SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
                deliver(PeerEvent::Unreachable(to));
                break;
            }
            crate::metrics::peer_sent(to, bytes);
        }
    }
}

/// HashKV answer: `0`, member id (u64), revision (i64), compact revision
/// (i64), hash (u32), all big-endian; or `1` compacted, `2` future
/// revision, `3` and a reason.
fn encode_hash_answer(a: &Result<PeerHash, PeerHashError>) -> Vec<u8> {
    let mut b = Vec::with_capacity(29);
    match a {
        Ok(h) => {
            b.push(0);
            b.extend_from_slice(&h.member_id.to_be_bytes());
            b.extend_from_slice(&h.revision.to_be_bytes());
            b.extend_from_slice(&h.compact_revision.to_be_bytes());
            b.extend_from_slice(&h.hash.to_be_bytes());
        }
        Err(PeerHashError::Compacted) => b.push(1),
        Err(PeerHashError::FutureRevision) => b.push(2),
        Err(PeerHashError::Unreachable(why)) => {
            b.push(3);
            b.extend_from_slice(why.as_bytes());
        }
    }
    b
}

fn decode_hash_answer(b: &[u8]) -> Result<PeerHash, PeerHashError> {
    let bad = || PeerHashError::Unreachable("malformed HashKV answer".into());
    let (&tag, rest) = b.split_first().ok_or_else(bad)?;
    match tag {
        0 if rest.len() == 28 => {
            let u64_at = |i: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&rest[i..i + 8]);
                u64::from_be_bytes(a)
            };
            let mut h = [0u8; 4];
            h.copy_from_slice(&rest[24..28]);
            Ok(PeerHash {
                member_id: u64_at(0),
                revision: u64_at(8) as i64,
                compact_revision: u64_at(16) as i64,
                hash: u32::from_be_bytes(h),
            })
        }
        1 => Err(PeerHashError::Compacted),
        2 => Err(PeerHashError::FutureRevision),
        3 => Err(PeerHashError::Unreachable(
            String::from_utf8_lossy(rest).into_owned(),
        )),
        _ => Err(bad()),
    }
}

/// Probes peer `to` every [`PROBE_INTERVAL`] over a connection of its own
/// and records the smoothed round-trip time as etcd's
/// `monitorProbingStatus` does: first after [`RTT_RECORD_SOON`], then every
/// [`RTT_RECORD_EVERY`] while the peer answers (sooner again after a failed
/// probe). Nothing is recorded before a probe has been answered (etcd
/// records its initial 0). Ends when the peer's link is removed.
async fn probe_task(to: u64, url: String, tls: Option<PeerTls>, alive: mpsc::WeakSender<Bytes>) {
    use tokio::time::Instant;
    let mut conn: Option<Framed<PeerStream, LengthDelimitedCodec>> = None;
    let mut srtt: Option<f64> = None;
    let mut healthy = false;
    let start = Instant::now();
    let mut next_probe = start;
    let mut next_record = start + RTT_RECORD_SOON;
    loop {
        if alive.upgrade().is_none() {
            return;
        }
        let now = Instant::now();
        if now >= next_probe {
            next_probe = now + PROBE_INTERVAL;
            match probe(&mut conn, &url, tls.as_ref()).await {
                Ok(rtt) => {
                    let rtt = rtt.as_secs_f64();
                    srtt = Some(srtt.map_or(rtt, |s| (1.0 - SRTT_ALPHA) * s + SRTT_ALPHA * rtt));
                    healthy = true;
                }
                Err(e) => {
                    tracing::trace!(to, "peer probe failed: {e}");
                    conn = None;
                    healthy = false;
                }
            }
        }
        let now = Instant::now();
        if now >= next_record {
            if let Some(s) = srtt {
                crate::metrics::peer_rtt(to, s);
            }
            next_record = now
                + if healthy {
                    RTT_RECORD_EVERY
                } else {
                    RTT_RECORD_SOON
                };
        }
        tokio::time::sleep_until(next_probe.min(next_record)).await;
    }
}

/// One probe on `conn` (dialled first if needed): the time from sending a
/// [`PROBE`] to reading its echo.
async fn probe(
    conn: &mut Option<Framed<PeerStream, LengthDelimitedCodec>>,
    url: &str,
    tls: Option<&PeerTls>,
) -> Result<Duration, String> {
    let framed = match conn {
        Some(f) => f,
        None => {
            let stream = tokio::time::timeout(PROBE_TIMEOUT, dial(url, tls))
                .await
                .map_err(|_| format!("{url}: dial timed out"))??;
            conn.insert(Framed::new(stream, codec()))
        }
    };
    let started = std::time::Instant::now();
    let token = rand::random::<u64>().to_be_bytes();
    tokio::time::timeout(PROBE_TIMEOUT, async {
        framed
            .send(frame(PROBE, &token))
            .await
            .map_err(|e| e.to_string())?;
        match framed.next().await {
            Some(Ok(f)) if f.first() == Some(&PROBE_ANSWER) && f[1..] == token => Ok(()),
            Some(Ok(_)) => Err("unexpected probe answer".to_string()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("peer closed the probe connection".to_string()),
        }
    })
    .await
    .map_err(|_| format!("{url}: probe timed out"))??;
    Ok(started.elapsed())
}

impl Outbox for Peers {
    fn send_raft(&self, m: &Message) {
        Peers::send_raft(self, m)
    }

    fn send_snapshot(&self, m: Message, chunks: Chunks) {
        Peers::send_snapshot(self, m, chunks)
    }

    fn renew_lease(
        &self,
        to: u64,
        lease: i64,
    ) -> futures::future::BoxFuture<'static, Result<Renewal, String>> {
        Box::pin(Peers::renew_lease(self, to, lease))
    }

    fn set_members(&self, members: &[(u64, String)]) {
        Peers::set_members(self, members)
    }

    fn take_staged(&self, index: u64, term: u64) -> Option<Vec<u8>> {
        Peers::take_staged(self, index, term)
    }

    fn shutdown(&self) {
        Peers::shutdown(self)
    }

    fn hash_kv(
        &self,
        to: u64,
        revision: i64,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'static, Result<PeerHash, PeerHashError>> {
        Box::pin(Peers::hash_kv(self, to, revision, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_answers_round_trip() {
        let ok = Ok(PeerHash {
            member_id: u64::MAX - 1,
            revision: 42,
            compact_revision: -1,
            hash: 0xdead_beef,
        });
        for a in [
            ok,
            Err(PeerHashError::Compacted),
            Err(PeerHashError::FutureRevision),
            Err(PeerHashError::Unreachable("why".into())),
        ] {
            assert_eq!(decode_hash_answer(&encode_hash_answer(&a)), a);
        }
        assert!(decode_hash_answer(&[]).is_err());
        assert!(decode_hash_answer(&[0, 1, 2]).is_err());
        assert!(decode_hash_answer(&[9]).is_err());
    }
}
