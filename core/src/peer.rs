//! Peer transport: raft messages and the few member-to-member requests
//! (forwarded lease keepalives, snapshot streams) over TCP with
//! length-delimited frames.
//!
//! Every peer has one outbound link: a task that connects (with backoff),
//! writes queued frames and reconnects on error. Sending never blocks the
//! raft loop: a full queue drops the frame (raft retransmits), and a dead
//! peer only fills its own queue. Snapshots go over a connection of their
//! own so that a large stream does not delay heartbeats.
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

use crate::transport::{Chunks, Outbox};
use crate::CoreError;

const RAFT: u8 = 1;
const KEEPALIVE: u8 = 2;
const SNAP_HEADER: u8 = 3;
const SNAP_CHUNK: u8 = 4;
const SNAP_END: u8 = 5;

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
    /// A follower forwarded a client's lease keepalive (D9).
    KeepAlive(i64),
    /// A snapshot stream to `to` finished (`ok`) or failed.
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// A peer could not be reached.
    Unreachable(u64),
}

type Deliver = Arc<dyn Fn(PeerEvent) + Send + Sync>;

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

/// How long a peer may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// Dials `url`'s host and port: TLS when the URL is `https://` (and the
/// member has peer TLS settings), plain TCP otherwise.
async fn dial(url: &str, tls: Option<&PeerTls>) -> Result<PeerStream, String> {
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
    let stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
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
}

fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 1);
    b.put_u8(kind);
    b.put_slice(payload);
    b.freeze()
}

fn codec() -> LengthDelimitedCodec {
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
        })
    }

    /// Closes the listener, every inbound connection and every link.
    pub fn shutdown(&self) {
        let _ = self.closed.send(true);
        if let Ok(mut links) = self.links.lock() {
            links.clear();
        }
    }

    /// Makes the links match the member list (id, first peer URL).
    pub fn set_members(&self, members: &[(u64, String)]) {
        let Ok(mut links) = self.links.lock() else {
            return;
        };
        links.retain(|id, l| members.iter().any(|(m, u)| m == id && *u == l.url));
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

    pub fn send_keepalive(&self, to: u64, lease: i64) {
        self.send_frame(to, frame(KEEPALIVE, &lease.to_be_bytes()));
    }

    /// Streams a snapshot message and its data to its recipient on a
    /// connection of its own, then reports the outcome.
    pub fn send_snapshot(
        &self,
        msg: Message,
        chunks: impl Iterator<Item = Result<Vec<u8>, CoreError>> + Send + 'static,
    ) {
        let to = msg.to;
        let url = self
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(&to).map(|l| l.url.clone()));
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
                let s = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_string())?
                    .map_err(|e| {
                        tracing::warn!("peer TLS handshake refused: {e}");
                        format!("TLS handshake failed: {e}")
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
                    (self.deliver)(PeerEvent::Raft(m));
                }
                KEEPALIVE => {
                    let b: [u8; 8] = payload.try_into().map_err(|_| "bad keepalive frame")?;
                    (self.deliver)(PeerEvent::KeepAlive(i64::from_be_bytes(b)));
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
            if framed.feed(f).await.is_err() {
                break;
            }
            // Batch whatever else is queued into one flush.
            while let Ok(f) = rx.try_recv() {
                if framed.feed(f).await.is_err() {
                    break;
                }
            }
            if SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
                deliver(PeerEvent::Unreachable(to));
                break;
            }
        }
    }
}

impl Outbox for Peers {
    fn send_raft(&self, m: &Message) {
        Peers::send_raft(self, m)
    }

    fn send_snapshot(&self, m: Message, chunks: Chunks) {
        Peers::send_snapshot(self, m, chunks)
    }

    fn send_keepalive(&self, to: u64, lease: i64) {
        Peers::send_keepalive(self, to, lease)
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
}
