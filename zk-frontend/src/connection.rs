//! One client connection: four-letter word or ConnectRequest, then a loop
//! that answers requests in order and delivers watch notifications.
//!
//! Pipelining. Clients may send many requests without waiting; replies go
//! out strictly in request (xid) order. Writes that need no tree state to
//! build their command (create, delete, setData, setACL, check, multi:
//! [`cmd::Mode::Pipelined`]) are submitted to core as they arrive, each
//! after the previous one (core applies proposals in the order it receives
//! them), and their applies are awaited together, so one connection's
//! writes share the raft loop's group commit. Every other request (reads,
//! watch and session requests, sync, closeSession:
//! [`cmd::Mode::Exclusive`]) waits until every earlier request has been
//! answered, and the connection reads nothing more until it has run: a read
//! sees every earlier write of the session and none of the later ones
//! (ZooKeeper's FIFO client order). At most [`MAX_IN_FLIGHT`] requests
//! ([`MAX_IN_FLIGHT_BYTES`] bytes) are in flight; beyond that the
//! connection stops reading and TCP pushes back on the client.
//!
//! Ordering (D6): before a reply is written, every event the hub has
//! already queued is applied to the watch tables and the resulting
//! notifications are written *before* the reply (an exclusive request also
//! drains before it runs). Core queues an event before any reply or read can
//! reflect its revision, so a client never sees a reply reflecting revision
//! R ahead of a notification for an event at a revision <= R.
//!
//! A malformed frame, an oversized frame or a ConnectRequest that does not
//! decode closes this connection only (logged at warn), as ZooKeeper's
//! NIOServerCnxn does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use janus_core::watch::{Event, WatchRequest};
use janus_core::znode::Id;
use janus_core::{CoreError, KvError, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_util::codec::{Framed, FramedParts, LengthDelimitedCodec};
use tracing::{debug, warn};

use crate::cmd::write::PreparedWrite;
use crate::cmd::{self, Ctx, Mode, Prepared, Reply};
use crate::proto::{self, code, ConnectRequest, ConnectResponse, Request};
use crate::session::{self, ConnInfo, SessionError};
use crate::shared::Shared;
use crate::watches::{translate, WatchTable, ZkEvent};
use crate::{fourlw, read_only, ZkFrontendError};

/// A client connection's byte stream: plain TCP, or TLS on the secure port.
pub trait ClientStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> ClientStream for T {}
pub type Stream = Box<dyn ClientStream>;

type Io = Framed<Stream, LengthDelimitedCodec>;

/// Most requests a connection has submitted and not yet answered; beyond
/// it the connection stops reading (TCP pushes back on the client).
const MAX_IN_FLIGHT: usize = 1024;

/// Most request bytes in flight per connection (frames may be up to
/// `max_frame_bytes` each, so the count alone does not bound memory).
const MAX_IN_FLIGHT_BYTES: usize = 16 << 20;

/// A pipelined request's outcome.
struct Answered {
    xid: i32,
    /// Frame size, returned to the in-flight byte budget when answered.
    bytes: usize,
    reply: Result<Reply, CoreError>,
}

type Job = BoxFuture<'static, Answered>;
type InFlight = FuturesOrdered<Job>;

fn done(xid: i32, bytes: usize, reply: Result<Reply, CoreError>) -> Job {
    Box::pin(std::future::ready(Answered { xid, bytes, reply }))
}

/// How long a fresh connection may take to send its first frame.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Minimum spacing of lease refreshes caused by ordinary requests; pings
/// always refresh.
const KEEPALIVE_SPACING: Duration = Duration::from_millis(200);

/// Capacity of a connection's read buffer (what `Framed::new` would give).
/// The buffer must start with it: a `BytesMut` made from the four bytes
/// already read keeps that small capacity as its refill size once frames
/// are split off it, and each refill then reads only a few bytes (two
/// `recv` calls per request under load instead of one per batch).
const READ_BUFFER: usize = 16 * 1024;

pub struct Connection {
    shared: Arc<Shared>,
    /// Taken by [`Connection::run`] when it switches to framed I/O.
    socket: Option<Stream>,
    peer: SocketAddr,
    stop: broadcast::Receiver<()>,
    /// Identities the TLS handshake proved (the x509 scheme), ahead of
    /// everything the session learns later.
    tls_ids: Vec<Id>,
    /// When each request not yet answered was read, oldest first (request
    /// latency, see `latency.rs`).
    received_at: Mutex<VecDeque<Instant>>,
}

/// The state of an established session on this connection.
struct Session {
    id: i64,
    /// A read-only session (`read_only.rs`): no lease behind it, writes
    /// refused, closed when the member can reach a quorum again.
    read_only: bool,
    timeout_ms: i32,
    auth: Vec<Id>,
    watches: WatchTable,
    /// The table's generation last copied into `info`.
    watches_shown: u64,
    watcher: Watcher,
    last_zxid: i64,
    info: Arc<Mutex<ConnInfo>>,
    /// This connection's random id and its last write number: FIFO order is
    /// per connection, so a reconnect starts again at 1 (core's
    /// `znode::fifo`).
    conn: u64,
    seq: std::sync::atomic::AtomicU64,
    /// Lease revocations (subscribed before the session was checked, so
    /// none is missed) and sessions taken by newer connections.
    revoked: broadcast::Receiver<i64>,
    taken: broadcast::Receiver<(i64, u64)>,
    /// Core's configuration version, for the `/zookeeper/config` watches
    /// (subscribed before the session's first read, so no change after it
    /// is missed).
    config: tokio::sync::watch::Receiver<u64>,
    sasl: crate::sasl::Exchange,
}

impl Session {
    /// The context one request of this session is prepared or run in: the
    /// one place it is built, for the pipelined and the exclusive path.
    fn ctx<'a>(&'a mut self, shared: &'a Shared) -> Ctx<'a> {
        Ctx {
            node: &shared.node,
            cfg: &shared.cfg,
            session: self.id,
            auth: &mut self.auth,
            watches: &mut self.watches,
            immediate: Vec::new(),
            conn: self.conn,
            seq: &self.seq,
            sasl: &mut self.sasl,
        }
    }
}

impl Connection {
    pub fn new(
        shared: Arc<Shared>,
        socket: Stream,
        peer: SocketAddr,
        stop: broadcast::Receiver<()>,
        tls_ids: Vec<Id>,
    ) -> Connection {
        Connection {
            shared,
            socket: Some(socket),
            peer,
            stop,
            tls_ids,
            received_at: Mutex::new(VecDeque::new()),
        }
    }

    /// A new session's identities: the certificate's (ZooKeeper
    /// authenticates them during the handshake, before the
    /// ConnectRequest), then the client's address.
    fn initial_auth(&self) -> Vec<Id> {
        let mut auth = self.tls_ids.clone();
        auth.push(Id::new("ip", &self.peer.ip().to_string()));
        auth
    }

    pub async fn run(mut self) -> Result<(), ZkFrontendError> {
        let Some(mut socket) = self.socket.take() else {
            return Ok(());
        };
        // The first four bytes are either a four-letter word or the length
        // of the ConnectRequest (at most a few hundred, so never ASCII).
        let mut first = [0u8; 4];
        match tokio::time::timeout(CONNECT_TIMEOUT, socket.read_exact(&mut first)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Ok(()),
        }
        if let Some(word) = fourlw::parse(&first) {
            if self.shared.cfg.four_letter_words {
                let text = fourlw::answer(&self.shared, word);
                socket.write_all(text.as_bytes()).await?;
            } else {
                let msg = format!("{word} is not executed because it is not in the whitelist.\n");
                socket.write_all(msg.as_bytes()).await?;
            }
            let _ = socket.shutdown().await;
            return Ok(());
        }
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(self.shared.cfg.max_frame_bytes)
            .new_codec();
        let mut parts = FramedParts::new::<Bytes>(socket, codec);
        parts.read_buf = BytesMut::with_capacity(READ_BUFFER);
        parts.read_buf.extend_from_slice(&first);
        let mut io: Io = Framed::from_parts(parts);

        let frame = match tokio::time::timeout(CONNECT_TIMEOUT, io.next()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                warn!(peer = %self.peer, error = %e, "bad first frame; closing");
                return Err(e.into());
            }
            Ok(None) | Err(_) => return Ok(()),
        };
        let Ok(creq) = ConnectRequest::decode(&frame) else {
            warn!(peer = %self.peer, "malformed ConnectRequest; closing");
            return Err(ZkFrontendError::Malformed("ConnectRequest".into()));
        };
        let Some(mut sess) = self.connect(&mut io, creq).await? else {
            return Ok(());
        };
        let reg_id = self.shared.registry.register(sess.info.clone());
        let r = self.serve(&mut io, &mut sess).await;
        self.shared.registry.unregister(reg_id);
        // Flush, then send FIN before the socket closes, as ZooKeeper's
        // closeSock shuts its output down first: a client that is still
        // writing (a frame over the limit) reads end-of-stream
        // (ConnectionLoss) instead of a reset from unread input.
        let _ = SinkExt::<Bytes>::close(&mut io).await;
        r
    }

    /// A read-only session on a member cut off from the majority: a fake
    /// session id (no lease: nothing can be written), the ConnectResponse's
    /// readOnly flag set. A client resuming a session keeps its id if the
    /// password is right. `None`: the connection must close.
    async fn connect_read_only(
        &mut self,
        io: &mut Io,
        creq: ConnectRequest,
    ) -> Result<Option<Session>, ZkFrontendError> {
        let node = &self.shared.node;
        if creq.last_zxid_seen > node.revision() {
            warn!(peer = %self.peer, seen = creq.last_zxid_seen, ours = node.revision(),
                "refusing read-only session: client has seen a later zxid");
            return Ok(None);
        }
        let timeout = session::negotiate_timeout(&self.shared.cfg, creq.timeout);
        let id = if creq.session_id > 0 && creq.passwd == node.session_password(creq.session_id) {
            creq.session_id
        } else {
            read_only::session_id()
        };
        let revoked = node.lease_revocations();
        let taken = self.shared.taken.subscribe();
        let watcher = match node.watch_paths(WatchRequest {
            key: b"/".to_vec(),
            range_end: vec![0],
            start_revision: 0,
            tree_events: true,
        }) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to the watch hub");
                return Ok(None);
            }
        };
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: node.session_password(id).to_vec(),
            read_only: Some(true),
        };
        let conn: u64 = rand::random();
        let _ = self.shared.taken.send((id, conn));
        io.send(resp.encode().freeze()).await?;
        debug!(peer = %self.peer, session = id, "read-only session");
        let info = Arc::new(Mutex::new(ConnInfo {
            peer: self.peer,
            session: id,
            timeout_ms: timeout,
            received: 0,
            sent: 0,
            last_zxid: 0,
            watches: Vec::new(),
            ephemerals: 0,
        }));
        Ok(Some(Session {
            id,
            read_only: true,
            timeout_ms: timeout,
            auth: self.initial_auth(),
            watches: WatchTable::new(watcher.interest()),
            watches_shown: 0,
            watcher,
            last_zxid: creq.last_zxid_seen.max(0),
            info,
            conn,
            seq: std::sync::atomic::AtomicU64::new(0),
            revoked,
            taken,
            config: node.config_versions(),
            sasl: crate::sasl::Exchange::default(),
        }))
    }

    /// Handles the ConnectRequest. `None`: the connection must close (the
    /// answer, if any, has been sent).
    async fn connect(
        &mut self,
        io: &mut Io,
        creq: ConnectRequest,
    ) -> Result<Option<Session>, ZkFrontendError> {
        let node = &self.shared.node;
        // A member that cannot reach a leader is not serving: ZooKeeper
        // closes client connections until its server has joined a quorum,
        // and the client tries again (here or elsewhere). Answering instead
        // would let a just-restarted member accept a session and then fail
        // its first request. The barrier also brings this member up to the
        // leader's commit point. With read-only mode on, a client that
        // asked for it gets a read-only session instead (`read_only.rs`).
        let may_be_read_only = read_only::allowed(&self.shared.cfg, &creq);
        if let Err(e) = read_only::barrier(node, may_be_read_only).await {
            if may_be_read_only {
                return self.connect_read_only(io, creq).await;
            }
            debug!(peer = %self.peer, error = %e, "not serving yet; closing");
            return Ok(None);
        }
        // A client that has seen a later zxid than this member must not go
        // back in time (D8): wait for the member to catch up, or refuse.
        if creq.last_zxid_seen > node.revision() {
            let _ = node.read_barrier().await;
            if creq.last_zxid_seen > node.revision() {
                warn!(peer = %self.peer, seen = creq.last_zxid_seen, ours = node.revision(),
                    "refusing session: client has seen a later zxid");
                return Ok(None);
            }
        }
        let timeout = session::negotiate_timeout(&self.shared.cfg, creq.timeout);
        let ro = creq.read_only.map(|_| false);
        let revoked = node.lease_revocations();
        let taken = self.shared.taken.subscribe();
        let id = if creq.session_id == 0 {
            match session::open(node, timeout).await {
                Ok(id) => id,
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "cannot open session");
                    return Ok(None);
                }
            }
        } else {
            match session::resume(node, creq.session_id, &creq.passwd).await {
                Ok(()) => creq.session_id,
                Err(SessionError::Expired) => {
                    debug!(peer = %self.peer, session = creq.session_id, "expired session");
                    let resp = ConnectResponse {
                        protocol_version: 0,
                        timeout: 0,
                        session_id: 0,
                        passwd: vec![0; 16],
                        read_only: ro,
                    };
                    io.send(resp.encode().freeze()).await?;
                    return Ok(None);
                }
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "cannot resume session");
                    return Ok(None);
                }
            }
        };
        let watcher = match node.watch_paths(WatchRequest {
            key: b"/".to_vec(),
            range_end: vec![0],
            start_revision: 0,
            tree_events: true,
        }) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to the watch hub");
                return Ok(None);
            }
        };
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: node.session_password(id).to_vec(),
            read_only: ro,
        };
        // The previous connection of the session is told before the client
        // can use this one.
        let conn: u64 = rand::random();
        let _ = self.shared.taken.send((id, conn));
        io.send(resp.encode().freeze()).await?;
        let info = Arc::new(Mutex::new(ConnInfo {
            peer: self.peer,
            session: id,
            timeout_ms: timeout,
            received: 0,
            sent: 0,
            last_zxid: 0,
            watches: Vec::new(),
            ephemerals: 0,
        }));
        Ok(Some(Session {
            id,
            read_only: false,
            timeout_ms: timeout,
            auth: self.initial_auth(),
            watches: WatchTable::new(watcher.interest()),
            watches_shown: 0,
            watcher,
            last_zxid: creq.last_zxid_seen.max(0),
            info,
            conn,
            seq: std::sync::atomic::AtomicU64::new(0),
            revoked,
            taken,
            config: node.config_versions(),
            sasl: crate::sasl::Exchange::default(),
        }))
    }

    async fn serve(&mut self, io: &mut Io, s: &mut Session) -> Result<(), ZkFrontendError> {
        let timeout = Duration::from_millis(s.timeout_ms.max(1) as u64);
        let mut check = tokio::time::interval((timeout / 3).max(Duration::from_millis(50)));
        let mut last_heard = Instant::now();
        let mut last_keepalive = Instant::now();
        // Submitted writes (and replies decided without the log), in
        // request order; `FuturesOrdered` yields them in that order.
        let mut in_flight: InFlight = FuturesOrdered::new();
        let mut in_flight_bytes = 0usize;
        // An exclusive request waiting for `in_flight` to empty. While one
        // waits, nothing is read, so nothing later starts before it.
        let mut held: Option<(i32, Request)> = None;
        loop {
            if in_flight.is_empty() {
                if let Some((xid, req)) = held.take() {
                    if self.exclusive(io, s, xid, req).await? {
                        return Ok(());
                    }
                    continue;
                }
            }
            let reading = held.is_none()
                && in_flight.len() < MAX_IN_FLIGHT
                && in_flight_bytes < MAX_IN_FLIGHT_BYTES;
            tokio::select! {
                _ = self.stop.recv() => {
                    // Answer what was already submitted, then stop.
                    while let Some(a) = in_flight.next().await {
                        if self.answer(io, s, a.xid, a.reply?, Vec::new()).await? {
                            break;
                        }
                    }
                    return Ok(());
                }
                Some(a) = in_flight.next(), if !in_flight.is_empty() => {
                    in_flight_bytes -= a.bytes;
                    if self.answer(io, s, a.xid, a.reply?, Vec::new()).await? {
                        return Ok(());
                    }
                    // Answer everything else already done, then flush once.
                    while let Poll::Ready(Some(a)) = futures::poll!(in_flight.next()) {
                        in_flight_bytes -= a.bytes;
                        if self.answer(io, s, a.xid, a.reply?, Vec::new()).await? {
                            return Ok(());
                        }
                    }
                    SinkExt::<Bytes>::flush(io).await?;
                }
                frame = io.next(), if reading => {
                    let mut frame = frame;
                    loop {
                        let f = match frame {
                            None => return Ok(()),
                            Some(Ok(f)) => f,
                            Some(Err(e)) => {
                                warn!(peer = %self.peer, error = %e, "bad frame; closing connection");
                                return Err(e.into());
                            }
                        };
                        last_heard = Instant::now();
                        self.shared.count_received();
                        // A request that arrives after the session ended or
                        // moved to a newer connection is not served.
                        if self.session_over(s) {
                            return Ok(());
                        }
                        if let Ok(mut q) = self.received_at.lock() {
                            q.push_back(Instant::now());
                        }
                        let (hdr, req) = match proto::decode_request(&f) {
                            Ok(r) => r,
                            Err(_) => {
                                warn!(peer = %self.peer, len = f.len(), "malformed request; closing connection");
                                return Err(ZkFrontendError::Malformed("request".into()));
                            }
                        };
                        // Any request keeps the session alive, spaced and
                        // without waiting (its own reply does not depend on
                        // it; a lease that is gone closes the connection
                        // through the revocation feed). A ping's reply waits
                        // for its renewal ([`Connection::exclusive`]). A
                        // read-only session has no lease to keep alive.
                        if matches!(req, Request::Ping) {
                            last_keepalive = Instant::now();
                        } else if !s.read_only && last_keepalive.elapsed() >= KEEPALIVE_SPACING {
                            let (node, id) = (self.shared.node.clone(), s.id);
                            tokio::spawn(async move { node.lease_keepalive(id).await });
                            last_keepalive = Instant::now();
                        }
                        let local = if s.read_only {
                            read_only::answer(&self.shared.node, &req)
                        } else {
                            None
                        };
                        match (local, cmd::mode(&req)) {
                            // Answered in request order, after what is in flight.
                            (Some(reply), _) => in_flight.push_back(done(hdr.xid, 0, Ok(reply))),
                            (None, Mode::Exclusive) => held = Some((hdr.xid, req)),
                            (None, Mode::Pipelined) => {
                                let bytes = f.len();
                                in_flight_bytes += bytes;
                                let job = self.submit(s, hdr.xid, bytes, req).await;
                                in_flight.push_back(job);
                            }
                        }
                        // Take further frames the client already sent, up
                        // to the in-flight bounds, before answering.
                        if held.is_some()
                            || in_flight.len() >= MAX_IN_FLIGHT
                            || in_flight_bytes >= MAX_IN_FLIGHT_BYTES
                        {
                            break;
                        }
                        match futures::poll!(io.next()) {
                            Poll::Ready(next) => frame = next,
                            Poll::Pending => break,
                        }
                    }
                }
                evs = s.watcher.next() => {
                    match evs {
                        Ok(evs) => self.deliver(io, &mut s.watches, &evs),
                        Err(e) => return Err(lagged(e)),
                    }
                    SinkExt::<Bytes>::flush(io).await?;
                }
                r = s.config.changed() => {
                    if r.is_err() {
                        // The node is gone.
                        return Ok(());
                    }
                    self.config_changed(io, s, &mut Vec::new());
                    SinkExt::<Bytes>::flush(io).await?;
                }
                r = s.revoked.recv() => {
                    if self.revoked_ends(s, r) {
                        return Ok(());
                    }
                }
                r = s.taken.recv() => {
                    if taken_ends(s, r) {
                        return Ok(());
                    }
                }
                _ = check.tick() => {
                    // The leader expires the lease; this member only notices.
                    // A silent client is also dropped after its timeout, as
                    // ZooKeeper's connection expiry does.
                    if s.read_only {
                        // ZooKeeper closes read-only sessions when its
                        // server rejoins a quorum: the client reconnects
                        // read-write.
                        if janus_core::health::serving(&self.shared.node) || last_heard.elapsed() > timeout {
                            debug!(session = s.id, "quorum back or client silent; closing read-only session");
                            return Ok(());
                        }
                    } else if !self.shared.node.lease_exists(s.id) || last_heard.elapsed() > timeout {
                        debug!(session = s.id, "session expired or client silent; closing");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Whether a lease revocation ends this connection's session: then
    /// close now, as ZooKeeper closes an expired or closed session's
    /// connection at once (closeSession on another connection, expiry, an
    /// etcd lease revoke); the client's reconnect learns SessionExpired.
    fn revoked_ends(&self, s: &Session, r: Result<i64, broadcast::error::RecvError>) -> bool {
        let ended = match r {
            Ok(id) => id == s.id,
            Err(broadcast::error::RecvError::Lagged(_)) => !self.shared.node.lease_exists(s.id),
            // The node is gone.
            Err(broadcast::error::RecvError::Closed) => true,
        };
        if ended {
            debug!(session = s.id, "session ended; closing connection");
        }
        ended
    }

    /// Drains both session feeds without waiting: true if the session ended
    /// or was taken by a newer connection.
    fn session_over(&self, s: &mut Session) -> bool {
        loop {
            match s.revoked.try_recv() {
                Ok(id) if self.revoked_ends(s, Ok(id)) => return true,
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    if self.revoked_ends(s, Err(broadcast::error::RecvError::Lagged(n))) {
                        return true;
                    }
                }
                Err(_) => break,
            }
        }
        loop {
            match s.taken.try_recv() {
                Ok(t) if taken_ends(s, Ok(t)) => return true,
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    }

    /// Prepares a pipelined write and submits it to core *now*: the first
    /// poll of `Node::propose` sends the proposal to the raft loop, and this
    /// returns only after it, so writes reach core (which applies them in
    /// the order it receives them) in request order. The returned future
    /// waits for the apply and renders the reply.
    async fn submit(&self, s: &mut Session, xid: i32, bytes: usize, req: Request) -> Job {
        let ctx = s.ctx(&self.shared);
        let proposal = match cmd::prepare(&ctx, req) {
            Prepared::Write(PreparedWrite::Propose(p)) => p,
            Prepared::Write(PreparedWrite::Answered(r)) => return done(xid, bytes, Ok(r)),
            // `mode` said Pipelined, so `prepare` takes it; answer as an
            // unknown request would be rather than panic.
            Prepared::Other(_) => {
                let r = Reply::err(self.shared.node.revision(), code::SYSTEM_ERROR);
                return done(xid, bytes, Ok(r));
            }
        };
        let shared = self.shared.clone();
        let mut job: Job = Box::pin(async move {
            let reply = match shared.node.propose(proposal.command).await {
                Ok(applied) => proposal.shape.render(applied),
                Err(e) => Err(e),
            };
            Answered { xid, bytes, reply }
        });
        match futures::poll!(job.as_mut()) {
            Poll::Ready(a) => Box::pin(std::future::ready(a)),
            Poll::Pending => job,
        }
    }

    /// Runs a request that must see exactly the effects of the requests
    /// before it, once they are all answered. True: close the connection.
    async fn exclusive(
        &mut self,
        io: &mut Io,
        s: &mut Session,
        xid: i32,
        req: Request,
    ) -> Result<bool, ZkFrontendError> {
        // No request is in flight here: nothing waits for a reply.
        self.drain(io, s, &mut Vec::new())?;
        if matches!(req, Request::Ping) && !s.read_only && !self.renewed(s).await {
            return Ok(true);
        }
        let mut ctx = s.ctx(&self.shared);
        let reply = cmd::dispatch(&mut ctx, req).await?;
        let immediate = std::mem::take(&mut ctx.immediate);
        let close = self.answer(io, s, xid, reply, immediate).await?;
        SinkExt::<Bytes>::flush(io).await?;
        Ok(close)
    }

    /// A ping's keepalive: the pong means the leader renewed the session.
    /// A session that is gone, or a member that cannot get the leader to
    /// renew it within the request timeout, closes the connection unanswered:
    /// the client reconnects (to this or another member) and learns there
    /// whether its session lives, as a ZooKeeper follower that lost its
    /// leader drops its clients.
    async fn renewed(&self, s: &Session) -> bool {
        match self.shared.node.lease_keepalive(s.id).await {
            Ok(Some(_)) => true,
            Ok(None) => {
                debug!(session = s.id, "session expired; closing connection");
                false
            }
            Err(e) => {
                debug!(
                    session = s.id,
                    "session not renewed ({e}); closing connection"
                );
                false
            }
        }
    }

    /// Buffers one reply (not flushed), preceded by every notification for
    /// the events the hub has queued so far (D6) and by `immediate`, except
    /// those of events after the read of a watch this request set: they
    /// follow the reply. True: close the connection after it.
    async fn answer(
        &self,
        io: &mut Io,
        s: &mut Session,
        xid: i32,
        reply: Reply,
        immediate: Vec<(i32, String)>,
    ) -> Result<bool, ZkFrontendError> {
        let mut after = Vec::new();
        self.drain(io, s, &mut after)?;
        for (kind, path) in immediate {
            io.feed(proto::encode_notification(kind, &path).freeze())
                .await?;
        }
        let zxid = if xid == proto::xid::AUTH {
            reply.zxid
        } else {
            s.last_zxid = s.last_zxid.max(reply.zxid);
            s.last_zxid
        };
        io.feed(proto::encode_reply(xid, zxid, reply.err, reply.body.as_deref()).freeze())
            .await?;
        for zev in after {
            io.feed(proto::encode_notification(zev.kind, &zev.path).freeze())
                .await?;
        }
        s.watches.end_request();
        self.shared.count_sent();
        // Replies go out in request order, so the oldest receipt time is
        // this reply's request.
        if let Some(t) = self.received_at.lock().ok().and_then(|mut q| q.pop_front()) {
            self.shared.latency.record(t.elapsed());
        }
        if let Ok(mut i) = s.info.lock() {
            i.received += 1;
            i.sent += 1;
            i.last_zxid = s.last_zxid;
            // Copied only when they changed: no per-reply work that grows
            // with the watch count.
            s.watches.prune();
            if s.watches.generation() != s.watches_shown {
                s.watches_shown = s.watches.generation();
                i.watches = watch_paths(&s.watches);
            }
        }
        if reply.close {
            SinkExt::<Bytes>::flush(io).await?;
        }
        Ok(reply.close)
    }

    /// Applies every already-queued hub event to the watch tables and
    /// buffers the notifications (flushed with the next reply), except those
    /// that must follow the reply being answered, which go to `after`.
    fn drain(
        &self,
        io: &mut Io,
        s: &mut Session,
        after: &mut Vec<ZkEvent>,
    ) -> Result<(), ZkFrontendError> {
        while let Some(r) = s.watcher.try_next() {
            match r {
                Ok(evs) => self.deliver_deferring(io, &mut s.watches, &evs, after),
                Err(e) => return Err(lagged(e)),
            }
        }
        if s.config.has_changed().unwrap_or(false) {
            self.config_changed(io, s, after);
        }
        Ok(())
    }

    /// Takes core's latest configuration version and notifies the
    /// `/zookeeper/config` watches it fires (deferred to `after` like a
    /// key event's). A member that shows no configuration (a standalone
    /// look) has none to change.
    fn config_changed(&self, io: &mut Io, s: &mut Session, after: &mut Vec<ZkEvent>) {
        let version = *s.config.borrow_and_update() as i64;
        if s.watches.is_empty() || !cmd::system::shows_config(&self.shared.node, &self.shared.cfg) {
            return;
        }
        let Some((defer, count)) = s.watches.config_changed(version) else {
            return;
        };
        for _ in 0..count {
            let zev = ZkEvent {
                kind: proto::event_type::NODE_DATA_CHANGED,
                path: cmd::system::CONFIG.to_string(),
                revision: version,
            };
            if defer || !after.is_empty() {
                after.push(zev);
            } else {
                let _ =
                    io.start_send_unpin(proto::encode_notification(zev.kind, &zev.path).freeze());
            }
        }
        s.watches.prune();
    }

    fn deliver(&self, io: &mut Io, watches: &mut WatchTable, evs: &[Event]) {
        self.deliver_deferring(io, watches, evs, &mut Vec::new());
    }

    /// Applies `evs` to the watch tables and buffers their notifications,
    /// except those [`WatchTable::defers`], which go to `after`.
    fn deliver_deferring(
        &self,
        io: &mut Io,
        watches: &mut WatchTable,
        evs: &[Event],
        after: &mut Vec<ZkEvent>,
    ) {
        if watches.is_empty() {
            return;
        }
        for ev in evs {
            let Some(zev) = translate(ev) else { continue };
            // Once one waits, every later event (a later revision, so also
            // after the read) waits behind it: notifications keep zxid order.
            let defer = !after.is_empty() || watches.defers(&zev);
            if watches.trigger(&zev) {
                if defer {
                    after.push(zev);
                } else {
                    // `Framed::start_send` only buffers; errors surface on
                    // flush.
                    let _ = io
                        .start_send_unpin(proto::encode_notification(zev.kind, &zev.path).freeze());
                }
            }
        }
        watches.prune();
    }
}

/// Whether a newer connection took this connection's session.
fn taken_ends(s: &Session, r: Result<(i64, u64), broadcast::error::RecvError>) -> bool {
    let taken = matches!(r, Ok((id, conn)) if id == s.id && conn != s.conn);
    if taken {
        debug!(
            session = s.id,
            "session resumed on another connection; closing"
        );
    }
    taken
}

/// The hub dropped this subscriber (it fell below the compaction point):
/// close the connection; the client reconnects and SetWatches re-arms its
/// watches against current state.
fn lagged(e: KvError) -> ZkFrontendError {
    ZkFrontendError::WatchLost(e)
}

fn watch_paths(t: &WatchTable) -> Vec<String> {
    let mut v: Vec<String> = t
        .data
        .keys()
        .chain(t.child.keys())
        .chain(t.persistent.keys())
        .chain(t.recursive.keys())
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v
}
