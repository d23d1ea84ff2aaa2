//! Lease keepalives forwarded from a follower to the leader, answered
//! before the client is (D9).
//!
//! Only the leader's clock expires leases, so a keepalive that reaches a
//! follower counts only once the leader has renewed the lease. The
//! follower waits for the leader's answer before it answers its client, as
//! etcd's `LeaseRenew` forwards to the leader over HTTP and waits: a
//! keepalive lost on the way (a partition, a full queue) is then an error
//! the client sees and retries, never a renewal the client believes in and
//! the leader never made.
//!
//! Each follower keeps one connection per leader for them, requests
//! pipelined on it and answered in order, so a member serving thousands of
//! sessions pays one round trip per keepalive and no connection set-up.
//!
//! Request frame payload: `[lease: i64 BE]`; answer:
//! `[lease: i64 BE][outcome: u8][ttl seconds: i64 BE]`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::peer::{codec, dial, frame, PeerStream, PeerTls, KEEPALIVE, KEEPALIVE_ANSWER};

/// What the leader made of a forwarded keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed; the lease's TTL in seconds.
    Renewed(i64),
    /// The leader has no such lease (expired or revoked).
    NotFound,
    /// The member asked is not the leader (any more).
    NotLeader,
}

const RENEWED: u8 = 0;
const NOT_FOUND: u8 = 1;
const NOT_LEADER: u8 = 2;

/// Requests queued per leader connection before callers are told it is
/// unreachable.
const QUEUE: usize = 4096;

pub(crate) fn encode_answer(lease: i64, r: Renewal) -> Vec<u8> {
    let (outcome, ttl) = match r {
        Renewal::Renewed(ttl) => (RENEWED, ttl),
        Renewal::NotFound => (NOT_FOUND, 0),
        Renewal::NotLeader => (NOT_LEADER, 0),
    };
    let mut b = Vec::with_capacity(17);
    b.extend_from_slice(&lease.to_be_bytes());
    b.push(outcome);
    b.extend_from_slice(&ttl.to_be_bytes());
    b
}

pub(crate) fn decode_answer(b: &[u8]) -> Result<(i64, Renewal), String> {
    let bad = || format!("bad keepalive answer of {} bytes", b.len());
    if b.len() != 17 {
        return Err(bad());
    }
    let lease = i64::from_be_bytes(b[..8].try_into().map_err(|_| bad())?);
    let ttl = i64::from_be_bytes(b[9..].try_into().map_err(|_| bad())?);
    let r = match b[8] {
        RENEWED => Renewal::Renewed(ttl),
        NOT_FOUND => Renewal::NotFound,
        NOT_LEADER => Renewal::NotLeader,
        other => return Err(format!("unknown keepalive outcome {other}")),
    };
    Ok((lease, r))
}

/// How long one answer may take before the connection is given up as hung
/// (a paused leader) and every request waiting on it fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

type Conn = Framed<PeerStream, LengthDelimitedCodec>;

/// One keepalive waiting for its answer.
pub(crate) struct Call {
    lease: i64,
    reply: oneshot::Sender<Result<Renewal, String>>,
}

/// The sending side of one leader's keepalive connection.
pub(crate) struct Forwarder {
    pub(crate) url: String,
    tx: mpsc::Sender<Call>,
}

impl Forwarder {
    /// Starts the connection task for the member at `url` on `rt`.
    pub(crate) fn start(rt: &tokio::runtime::Handle, url: String, tls: Option<PeerTls>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        rt.spawn(run(url.clone(), tls, rx));
        Forwarder { url, tx }
    }

    /// Forwards a keepalive of `lease`; resolves with the leader's answer.
    pub(crate) fn renew(
        &self,
        lease: i64,
    ) -> impl std::future::Future<Output = Result<Renewal, String>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let queued = self.tx.try_send(Call { lease, reply });
        let url = self.url.clone();
        async move {
            queued.map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => format!("{url}: too many keepalives waiting"),
                mpsc::error::TrySendError::Closed(_) => format!("{url}: keepalive link stopped"),
            })?;
            rx.await
                .map_err(|_| format!("{url}: keepalive connection closed"))?
        }
    }
}

fn fail_all(waiting: &mut VecDeque<(Instant, Call)>, why: &str) {
    for (_, c) in waiting.drain(..) {
        let _ = c.reply.send(Err(why.to_string()));
    }
}

/// The connection task: dials when there is something to send, pipelines
/// requests, matches answers to requests in order, and on any failure
/// fails what waits and dials again for the next request.
async fn run(url: String, tls: Option<PeerTls>, mut calls: mpsc::Receiver<Call>) {
    let mut conn: Option<Conn> = None;
    let mut waiting: VecDeque<(Instant, Call)> = VecDeque::new();
    loop {
        let Some(framed) = conn.as_mut() else {
            let Some(call) = calls.recv().await else {
                return;
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, dial(&url, tls.as_ref())).await {
                Ok(Ok(stream)) => {
                    let mut framed = Framed::new(stream, codec());
                    match framed
                        .send(frame(KEEPALIVE, &call.lease.to_be_bytes()))
                        .await
                    {
                        Ok(()) => {
                            waiting.push_back((Instant::now(), call));
                            conn = Some(framed);
                        }
                        Err(e) => {
                            let _ = call.reply.send(Err(format!("{url}: {e}")));
                        }
                    }
                }
                Ok(Err(e)) => {
                    let _ = call.reply.send(Err(e));
                }
                Err(_) => {
                    let _ = call.reply.send(Err(format!("{url}: dial timed out")));
                }
            }
            continue;
        };
        let oldest = waiting.front().map(|(t, _)| *t + ANSWER_TIMEOUT);
        tokio::select! {
            call = calls.recv() => {
                let Some(call) = call else {
                    fail_all(&mut waiting, "member stopped");
                    return;
                };
                match framed.send(frame(KEEPALIVE, &call.lease.to_be_bytes())).await {
                    Ok(()) => waiting.push_back((Instant::now(), call)),
                    Err(e) => {
                        let why = format!("{url}: {e}");
                        let _ = call.reply.send(Err(why.clone()));
                        fail_all(&mut waiting, &why);
                        conn = None;
                    }
                }
            }
            answer = framed.next() => {
                let outcome = match answer {
                    Some(Ok(f)) => match f.split_first() {
                        Some((&KEEPALIVE_ANSWER, body)) => decode_answer(body),
                        _ => Err(format!("{url}: not a keepalive answer")),
                    },
                    Some(Err(e)) => Err(format!("{url}: {e}")),
                    None => Err(format!("{url}: the peer closed the connection")),
                };
                match (outcome, waiting.pop_front()) {
                    (Ok((lease, r)), Some((_, call))) if lease == call.lease => {
                        let _ = call.reply.send(Ok(r));
                    }
                    (outcome, call) => {
                        let why = match outcome {
                            Err(e) => e,
                            Ok(_) => format!("{url}: keepalive answer out of order"),
                        };
                        if let Some((_, c)) = call {
                            let _ = c.reply.send(Err(why.clone()));
                        }
                        fail_all(&mut waiting, &why);
                        conn = None;
                    }
                }
            }
            _ = sleep_until_opt(oldest) => {
                fail_all(&mut waiting, &format!("{url}: no keepalive answer in {ANSWER_TIMEOUT:?}"));
                conn = None;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
