//! etcd's Watch service: one bidirectional stream carrying many watchers.
//!
//! Shape (mirrors etcd's `serverWatchStream`): one task reads the client's
//! create/cancel/progress requests; each watcher gets its own task pumping
//! core events into the stream's single bounded output channel. A created
//! response is queued before its watcher task starts, so it always precedes
//! the watcher's events. A slow client fills the output channel; the
//! watcher tasks then stop pulling from core, whose hub marks them lagging
//! and lets them catch up from MVCC history later, so neither the state
//! machine nor other clients ever wait for this stream.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use janus_core::watch::{Event, EventKind, WatchRequest};
use janus_core::{KvError, Watcher};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::context::Shared;
use crate::convert;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;

/// Responses buffered per stream before watcher tasks wait for the client.
const OUT_BUFFER: usize = 128;
/// etcd's `watchBatchMaxRevs`: most revisions in one history response.
const HISTORY_BATCH_MAX_REVS: usize = 1000;
/// clientv3's `InvalidWatchID`: responses tied to no watcher.
const INVALID_WATCH_ID: i64 = -1;

pub type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

#[derive(Clone)]
pub struct WatchService(pub Shared);

/// What a watcher was asked for, beyond its key range.
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    progress_notify: bool,
}

impl WatchService {
    /// Serves one watch stream: reads `requests`, returns the responses.
    pub fn run<S>(&self, requests: S) -> WatchStream
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        let creds = crate::caller::captured();
        tokio::spawn(crate::caller::within(
            creds,
            serve_stream(self.0.clone(), requests, tx),
        ));
        ReceiverStream::new(rx)
    }
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

async fn serve_stream<S>(s: Shared, mut requests: S, tx: Out)
where
    S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin + 'static,
{
    let stopped = s.stopped();
    tokio::pin!(stopped);
    let mut stream = StreamState {
        s,
        tx,
        watchers: HashMap::new(),
        next_id: 0,
    };
    loop {
        let req = tokio::select! {
            _ = stream.tx.closed() => break,
            _ = &mut stopped => break,
            req = requests.next() => req,
        };
        match req {
            Some(Ok(req)) => {
                if !stream.handle(req).await {
                    break;
                }
            }
            // The client closed its sending side: etcd keeps the watchers
            // running until the stream itself goes away.
            None => {
                tokio::select! {
                    _ = stream.tx.closed() => {},
                    _ = &mut stopped => {},
                }
                break;
            }
            // Broken or undecodable input ends this stream only.
            Some(Err(status)) => {
                tracing::debug!(%status, "watch stream receive failed");
                break;
            }
        }
    }
    for (_, w) in stream.watchers.drain() {
        w.task.abort();
    }
}

struct StreamState {
    s: Shared,
    tx: Out,
    /// Watch id → its pump task (kept after a compaction ends it, so the
    /// id is not reused and a later cancel is still answered, as in etcd).
    watchers: HashMap<i64, Running>,
    next_id: i64,
}

/// A watcher's pump and how to ask it whether it is synced.
struct Running {
    task: JoinHandle<()>,
    progress: mpsc::Sender<ProgressQuery>,
}

/// Asks a pump for the revision up to which it has put every event of its
/// watcher into the stream (`None`: it has not, it is catching up).
type ProgressQuery = tokio::sync::oneshot::Sender<Option<i64>>;

/// How long a progress request waits for the stream's watchers to answer;
/// one that does not answer in time is busy sending, so not synced.
const PROGRESS_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

impl StreamState {
    /// Handles one client request; false once the client is gone.
    async fn handle(&mut self, req: pb::WatchRequest) -> bool {
        use pb::watch_request::RequestUnion as U;
        match req.request_union {
            Some(U::CreateRequest(c)) => self.create(c).await,
            Some(U::CancelRequest(c)) => {
                let Some(w) = self.watchers.remove(&c.watch_id) else {
                    return true;
                };
                w.task.abort();
                let resp = pb::WatchResponse {
                    header: self.s.header(None),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                };
                self.tx.send(Ok(resp)).await.is_ok()
            }
            Some(U::ProgressRequest(_)) => {
                let Some(revision) = self.synced_revision().await else {
                    return true;
                };
                let resp = pb::WatchResponse {
                    header: self.s.header(Some(revision)),
                    watch_id: INVALID_WATCH_ID,
                    ..Default::default()
                };
                self.tx.send(Ok(resp)).await.is_ok()
            }
            // etcd ignores requests it does not understand.
            None => true,
        }
    }

    /// etcd's `progressIfSync` for a RequestProgress (3.4.31 / 3.5.13, the
    /// versions Kubernetes requires for it): one response for the whole
    /// stream, with watch id -1, and only when every watcher of the stream
    /// has sent every event up to its revision; otherwise none (the client
    /// asks again), so the revision never runs ahead of the events the
    /// stream delivered. The revision is the lowest the watchers reported,
    /// and the response is queued after their events up to it. A stream
    /// with no running watcher gets no response either (etcd 3.4.23
    /// answered at once in every case).
    async fn synced_revision(&self) -> Option<i64> {
        let mut answers = Vec::new();
        for w in self.watchers.values() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A pump that ended (compacted, canceled) no longer watches.
            if w.progress.try_send(tx).is_ok() {
                answers.push(rx);
            }
        }
        if answers.is_empty() {
            return None;
        }
        let all = futures::future::join_all(answers);
        let answers = tokio::time::timeout(PROGRESS_QUERY_TIMEOUT, all)
            .await
            .ok()?;
        let mut min: Option<i64> = None;
        for a in answers {
            match a {
                Ok(Some(rev)) => min = Some(min.map_or(rev, |m| m.min(rev))),
                // Not synced, or ended while asked: no progress.
                _ => return None,
            }
        }
        min
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> bool {
        let key = if c.key.is_empty() {
            vec![0]
        } else {
            c.key.clone()
        };
        let range_end = c.range_end.clone();
        let wsrev = self.s.node.revision();
        let refuse = |reason: &str| pb::WatchResponse {
            header: self.s.header(Some(wsrev)),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        // etcd's isWatchPermitted, before anything else is looked at. A
        // "from key" watch is checked as the range it watches (etcd 3.4
        // checks only its first key).
        let allowed = match crate::caller::current(&self.s).await {
            Ok(caller) => self
                .s
                .node
                .auth_check(&caller, &key, &range_end, janus_core::auth::Access::Read)
                .map_err(crate::status::ApiError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = allowed {
            // etcd names the reason by its gRPC error text; anything but
            // a token or revision problem reads as "permission denied".
            let text = match &e {
                crate::status::ApiError::Auth(
                    janus_core::auth::AuthError::InvalidAuthToken
                    | janus_core::auth::AuthError::AuthOldRevision
                    | janus_core::auth::AuthError::UserEmpty,
                ) => e.code_and_message().1,
                _ => {
                    crate::status::ApiError::Auth(janus_core::auth::AuthError::PermissionDenied)
                        .code_and_message()
                        .1
                }
            };
            let r = refuse(&text);
            return self.tx.send(Ok(r)).await.is_ok();
        }
        // mvcc's watchStream.Watch: a range whose end is not after its start.
        if !range_end.is_empty() && range_end != [0] && key >= range_end {
            let r = refuse("mvcc: watcher range is empty");
            return self.tx.send(Ok(r)).await.is_ok();
        }
        let id = if c.watch_id == 0 {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watchers.contains_key(&c.watch_id) {
            let r = refuse("mvcc: duplicate watch ID provided on the WatchStream");
            return self.tx.send(Ok(r)).await.is_ok();
        } else {
            c.watch_id
        };
        let start_revision = if c.start_revision == 0 {
            wsrev + 1
        } else {
            c.start_revision
        };
        let mut opts = Options {
            prev_kv: c.prev_kv,
            fragment: c.fragment,
            progress_notify: c.progress_notify,
            ..Default::default()
        };
        for f in &c.filters {
            match pb::watch_create_request::FilterType::try_from(*f) {
                Ok(pb::watch_create_request::FilterType::Noput) => opts.no_put = true,
                Ok(pb::watch_create_request::FilterType::Nodelete) => opts.no_delete = true,
                Err(_) => {}
            }
        }
        let watcher = self.s.node.watch(WatchRequest {
            key,
            range_end,
            start_revision,
            tree_events: false,
        });
        let created = pb::WatchResponse {
            header: self.s.header(Some(wsrev)),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        if self.tx.send(Ok(created)).await.is_err() {
            return false;
        }
        let (progress, queries) = mpsc::channel(4);
        let pump = Pump {
            s: self.s.clone(),
            tx: self.tx.clone(),
            id,
            opts,
            created_rev: wsrev,
        };
        let task = match watcher {
            Ok(w) => tokio::spawn(pump.run(w, queries)),
            // Too old a start revision: created, then the compacted
            // cancellation, as etcd's synchronizer sends it.
            Err(KvError::Compacted { compact_revision }) => {
                tokio::spawn(async move { pump.compacted(compact_revision).await })
            }
            Err(e) => tokio::spawn(async move { pump.cancel_with(e.to_string()).await }),
        };
        self.watchers.insert(id, Running { task, progress });
        true
    }
}

/// Moves one watcher's events from core to the stream.
struct Pump {
    s: Shared,
    tx: Out,
    id: i64,
    opts: Options,
    /// Store revision when the watcher was created: events at or below it
    /// are history, which etcd sends in large batches.
    created_rev: i64,
}

impl Pump {
    async fn run(self, mut w: Watcher, mut queries: mpsc::Receiver<ProgressQuery>) {
        let mut ticker = tokio::time::interval(self.s.progress_interval);
        ticker.tick().await;
        let mut sent_since_tick = false;
        loop {
            // Relies on `Watcher::next` being cancel-safe (a dropped call
            // loses no events), like a channel receive.
            tokio::select! {
                _ = self.tx.closed() => return,
                batch = w.next() => match batch {
                    Ok(events) => {
                        match self.send_events(events).await {
                            Err(()) => return,
                            Ok(sent) => sent_since_tick |= sent,
                        }
                    }
                    Err(KvError::Compacted { compact_revision }) => return self.compacted(compact_revision).await,
                    Err(e) => return self.cancel_with(e.to_string()).await,
                },
                // Between batches every event taken from core is in the
                // stream: synced if core holds none for it either.
                Some(q) = queries.recv() => {
                    let _ = q.send(w.progress_revision());
                }
                _ = ticker.tick(), if self.opts.progress_notify => {
                    // etcd elides a progress notification after events.
                    if !sent_since_tick {
                        if let Some(rev) = w.progress_revision() {
                            let r = pb::WatchResponse { header: self.s.header(Some(rev)), watch_id: self.id, ..Default::default() };
                            if self.tx.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                    }
                    sent_since_tick = false;
                }
            }
        }
    }

    /// Sends a batch as etcd would; Ok(whether anything was sent).
    async fn send_events(&self, events: Vec<Event>) -> Result<bool, ()> {
        let mut sent = false;
        for resp in batch_responses(events, self.created_rev, self.s.node.revision(), self.opts) {
            let resp = pb::WatchResponse {
                header: self.s.header(Some(resp.revision)),
                watch_id: self.id,
                events: resp.events,
                ..Default::default()
            };
            let max = self.s.cfg.max_request_bytes;
            let parts = if self.opts.fragment {
                fragments(resp, max)
            } else {
                vec![resp]
            };
            for part in parts {
                self.tx.send(Ok(part)).await.map_err(|_| ())?;
                sent = true;
            }
        }
        Ok(sent)
    }

    async fn compacted(self, compact_revision: i64) {
        let r = pb::WatchResponse {
            header: self.s.header(Some(0)),
            watch_id: self.id,
            canceled: true,
            compact_revision,
            ..Default::default()
        };
        let _ = self.tx.send(Ok(r)).await;
    }

    async fn cancel_with(self, reason: String) {
        let r = pb::WatchResponse {
            header: self.s.header(None),
            watch_id: self.id,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        let _ = self.tx.send(Ok(r)).await;
    }
}

/// One response's worth of events before headers are attached.
#[derive(Debug, PartialEq)]
struct Batch {
    revision: i64,
    events: Vec<mvccpb::Event>,
}

/// Splits core's events into etcd's responses: history (revisions up to
/// `created_rev`) in batches of up to 1000 revisions with the current
/// revision in the header; live events one response per revision with that
/// revision. Filters and prev_kv apply per event; empty responses vanish.
fn batch_responses(
    events: Vec<Event>,
    created_rev: i64,
    current_rev: i64,
    o: Options,
) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut history: Option<(Batch, usize, i64)> = None; // (batch, revisions, last rev)
    for e in events {
        let rev = e.kv.mod_revision;
        let filtered = match e.kind {
            EventKind::Put => o.no_put,
            EventKind::Delete => o.no_delete,
            EventKind::ChildrenChanged
            | EventKind::ImplicitCreated
            | EventKind::ImplicitDeleted => true,
        };
        let converted = if filtered {
            None
        } else {
            convert::event_to_pb(e, o.prev_kv)
        };
        if rev <= created_rev {
            let (batch, revs, last) = history.get_or_insert_with(|| {
                (
                    Batch {
                        revision: current_rev,
                        events: vec![],
                    },
                    0,
                    i64::MIN,
                )
            });
            if *last != rev {
                if *revs == HISTORY_BATCH_MAX_REVS {
                    let full = std::mem::replace(
                        batch,
                        Batch {
                            revision: current_rev,
                            events: vec![],
                        },
                    );
                    if !full.events.is_empty() {
                        out.push(full);
                    }
                    *revs = 0;
                }
                *revs += 1;
                *last = rev;
            }
            batch.events.extend(converted);
            continue;
        }
        if let Some((batch, _, _)) = history.take() {
            if !batch.events.is_empty() {
                out.push(batch);
            }
        }
        match out.last_mut() {
            Some(b) if b.revision == rev && rev > created_rev => b.events.extend(converted),
            _ => out.push(Batch {
                revision: rev,
                events: converted.into_iter().collect(),
            }),
        }
    }
    if let Some((batch, _, _)) = history.take() {
        out.push(batch);
    }
    out.retain(|b| !b.events.is_empty());
    out
}

/// etcd's `sendFragments`: a response over `max` bytes with more than one
/// event is cut into parts, every part but the last marked `fragment`.
fn fragments(wr: pb::WatchResponse, max: usize) -> Vec<pb::WatchResponse> {
    if wr.encoded_len() < max || wr.events.len() < 2 {
        return vec![wr];
    }
    let mut parts = Vec::new();
    let template = pb::WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..wr.clone()
    };
    let mut events = wr.events.into_iter().peekable();
    while events.peek().is_some() {
        let mut cur = template.clone();
        while let Some(ev) = events.peek() {
            cur.events.push(ev.clone());
            if cur.events.len() > 1 && cur.encoded_len() >= max {
                cur.events.pop();
                break;
            }
            events.next();
        }
        if events.peek().is_none() {
            cur.fragment = false;
        }
        parts.push(cur);
    }
    parts
}

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = WatchStream;
    async fn watch(
        &self,
        r: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.run(r.into_inner())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use janus_core::kv::KeyValue;

    fn ev(kind: EventKind, key: &str, rev: i64) -> Event {
        Event {
            kind,
            kv: KeyValue {
                key: key.into(),
                mod_revision: rev,
                create_revision: 1,
                version: 1,
                ..Default::default()
            },
            prev_kv: Some(KeyValue {
                key: key.into(),
                value: b"old".to_vec(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn history_is_one_response_live_is_per_revision() {
        let events = vec![
            ev(EventKind::Put, "a", 2),
            ev(EventKind::Put, "b", 3),
            ev(EventKind::Delete, "a", 4),
            ev(EventKind::Put, "c", 5),
            ev(EventKind::Put, "d", 5),
            ev(EventKind::Put, "e", 6),
        ];
        let b = batch_responses(events, 4, 6, Options::default());
        let shape: Vec<(i64, usize)> = b.iter().map(|b| (b.revision, b.events.len())).collect();
        assert_eq!(shape, vec![(6, 3), (5, 2), (6, 1)]);
        assert!(b[0].events[0].prev_kv.is_none(), "prev_kv only when asked");
    }

    #[test]
    fn filters_and_prev_kv() {
        let events = vec![ev(EventKind::Put, "a", 5), ev(EventKind::Delete, "a", 6)];
        let o = Options {
            no_put: true,
            prev_kv: true,
            ..Default::default()
        };
        let b = batch_responses(events, 1, 6, o);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].revision, 6);
        assert_eq!(
            b[0].events[0].r#type,
            mvccpb::event::EventType::Delete as i32
        );
        assert_eq!(
            b[0].events[0].prev_kv.as_ref().map(|k| k.value.clone()),
            Some(b"old".to_vec())
        );
        let o = Options {
            no_put: true,
            no_delete: true,
            ..Default::default()
        };
        assert!(batch_responses(vec![ev(EventKind::Put, "a", 5)], 1, 5, o).is_empty());
    }

    #[test]
    fn fragments_split_like_etcd() {
        let big = |k: &str| mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: k.into(),
                value: vec![7; 400],
                ..Default::default()
            }),
            prev_kv: None,
        };
        let wr = pb::WatchResponse {
            watch_id: 3,
            events: (0..5).map(|i| big(&format!("k{i}"))).collect(),
            ..Default::default()
        };
        let parts = fragments(wr.clone(), 1000);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts[parts.len() - 1].fragment);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 5);
        assert!(parts.iter().all(|p| p.watch_id == 3));
        // Small enough, or a single event: unchanged.
        assert_eq!(fragments(wr.clone(), 1 << 20), vec![wr]);
    }
}
