//! etcd's Election service (`v3electionpb`): the server side of
//! `concurrency.Election`, as etcd 3.4's `v3election` runs it.
//!
//! A campaigner puts `name/<lease hex>` with its value; the leader is the
//! key under `name/` with the smallest create revision. A [`pb::LeaderKey`]
//! (key + create revision) is the proof of leadership Proclaim and Resign
//! check in their txn's compare.

use std::pin::Pin;

use futures::Stream;
use janus_core::watch::EventKind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::concurrency::{self as cc, Cleanup};
use crate::context::Shared;
use crate::kv_service::KvService;
use crate::pb::etcdserverpb as epb;
use crate::pb::v3electionpb as pb;
use crate::status::ApiError;

/// `concurrency.ErrElectionNotLeader`.
const NOT_LEADER: &str = "election: not leader";
/// `concurrency.ErrElectionNoLeader`.
const NO_LEADER: &str = "election: no leader";
/// `v3election.ErrMissingLeaderKey`.
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

fn error(text: &str) -> ApiError {
    ApiError::Concurrency(text.to_string())
}

/// Leader changes an Observe stream may have queued for a slow client.
const OBSERVE_QUEUE: usize = 16;

/// A stream of leader updates (gRPC or the JSON gateway).
pub type ObserveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaderResponse, Status>> + Send>>;

#[derive(Clone)]
pub struct ElectionService(pub Shared);

impl ElectionService {
    /// `Election.Campaign`: enqueue (or find our earlier key, re-proclaiming
    /// a changed value), then wait to be the oldest. The answer carries the
    /// header of the enqueueing txn, as etcd's does.
    pub async fn campaign(&self, r: pb::CampaignRequest) -> Result<pb::CampaignResponse, ApiError> {
        self.try_campaign(r).await.map_err(cc::go_error)
    }

    async fn try_campaign(&self, r: pb::CampaignRequest) -> Result<pb::CampaignResponse, ApiError> {
        let s = &self.0;
        let lease = cc::session_lease(s, r.lease).await?;
        let key = cc::own_key(&r.name, lease);
        let resp = KvService(s.clone())
            .txn(epb::TxnRequest {
                compare: vec![cc::created_at(&key, 0)],
                success: vec![cc::op_put(&key, &r.value, lease)],
                failure: vec![cc::op_get_key(&key)],
            })
            .await?;
        let mut leader = pb::LeaderKey {
            name: r.name.clone(),
            key: key.clone(),
            rev: cc::header_revision(&resp.header),
            lease,
        };
        if !resp.succeeded {
            let existing = cc::range_kvs(&resp, 0)?.first().cloned();
            if let Some(kv) = existing {
                leader.rev = kv.create_revision;
                if kv.value != r.value {
                    if let Err(e) = self.proclaim_as(&leader, &r.value).await {
                        let _ = self.resign_as(&leader).await;
                        return Err(e);
                    }
                }
            }
        }
        let cleanup = Cleanup::new(s, resign_txn(&leader));
        // A failed wait (not a cancelled one) leaves the key in place, as
        // in etcd.
        let waited = cc::wait_deletes(s, &cc::prefix(&r.name), leader.rev - 1).await;
        cleanup.disarm();
        waited?;
        Ok(pb::CampaignResponse {
            header: resp.header,
            leader: Some(leader),
        })
    }

    pub async fn proclaim(&self, r: pb::ProclaimRequest) -> Result<pb::ProclaimResponse, ApiError> {
        self.try_proclaim(r).await.map_err(cc::go_error)
    }

    async fn try_proclaim(&self, r: pb::ProclaimRequest) -> Result<pb::ProclaimResponse, ApiError> {
        let mut leader = r.leader.ok_or_else(|| error(MISSING_LEADER_KEY))?;
        leader.lease = cc::session_lease(&self.0, leader.lease).await?;
        let header = self.proclaim_as(&leader, &r.value).await?;
        Ok(pb::ProclaimResponse { header })
    }

    /// `Election.Proclaim`: rewrite the value only while the leader key
    /// still has the create revision the leadership was won with.
    async fn proclaim_as(
        &self,
        leader: &pb::LeaderKey,
        value: &[u8],
    ) -> Result<Option<epb::ResponseHeader>, ApiError> {
        let resp = KvService(self.0.clone())
            .txn(epb::TxnRequest {
                compare: vec![cc::created_at(&leader.key, leader.rev)],
                success: vec![cc::op_put(&leader.key, value, leader.lease)],
                failure: Vec::new(),
            })
            .await?;
        if !resp.succeeded {
            return Err(error(NOT_LEADER));
        }
        Ok(resp.header)
    }

    pub async fn resign(&self, r: pb::ResignRequest) -> Result<pb::ResignResponse, ApiError> {
        self.try_resign(r).await.map_err(cc::go_error)
    }

    async fn try_resign(&self, r: pb::ResignRequest) -> Result<pb::ResignResponse, ApiError> {
        let leader = r.leader.ok_or_else(|| error(MISSING_LEADER_KEY))?;
        // etcd opens a session for the leader's lease (granting one for
        // lease 0) even though resigning never uses it.
        cc::session_lease(&self.0, leader.lease).await?;
        let header = self.resign_as(&leader).await?;
        Ok(pb::ResignResponse { header })
    }

    /// `Election.Resign`: delete the leader key if it is still ours.
    async fn resign_as(
        &self,
        leader: &pb::LeaderKey,
    ) -> Result<Option<epb::ResponseHeader>, ApiError> {
        let resp = KvService(self.0.clone()).txn(resign_txn(leader)).await?;
        Ok(resp.header)
    }

    /// `Election.Leader`: the oldest key under `name/`.
    pub async fn leader(&self, r: pb::LeaderRequest) -> Result<pb::LeaderResponse, ApiError> {
        self.try_leader(r).await.map_err(cc::go_error)
    }

    async fn try_leader(&self, r: pb::LeaderRequest) -> Result<pb::LeaderResponse, ApiError> {
        let resp = KvService(self.0.clone())
            .range(cc::by_create(&cc::prefix(&r.name), true, 0))
            .await?;
        let kv = resp
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| error(NO_LEADER))?;
        Ok(pb::LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }

    /// `Election.Observe`: the current leader, then each of its updates,
    /// then the next leader once it is gone. Like etcd, a failing read or
    /// watch ends the stream without an error.
    pub fn observe(&self, r: pb::LeaderRequest) -> ObserveStream {
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        let this = self.clone();
        let creds = crate::caller::captured();
        tokio::spawn(crate::caller::within(creds, async move {
            let stopped = this.0.stopped();
            tokio::select! {
                _ = stopped => {}
                _ = tx.closed() => {}
                r = this.observe_into(&r.name, &tx) => {
                    if let Err(e) = r {
                        tracing::debug!(?e, "election observe ended");
                    }
                }
            }
        }));
        Box::pin(ReceiverStream::new(rx))
    }

    async fn observe_into(
        &self,
        name: &[u8],
        tx: &mpsc::Sender<Result<pb::LeaderResponse, Status>>,
    ) -> Result<(), ApiError> {
        let s = &self.0;
        let pfx = cc::prefix(name);
        let send = |header, kv| async move {
            tx.send(Ok(pb::LeaderResponse {
                header,
                kv: Some(kv),
            }))
            .await
            .map_err(|_| error("observer went away"))
        };
        loop {
            let resp = KvService(s.clone())
                .range(cc::by_create(&pfx, true, 0))
                .await?;
            let (header, kv) = match resp.kvs.into_iter().next() {
                Some(kv) => (resp.header, kv),
                None => {
                    // No leader: the first put under the prefix is one.
                    let from = cc::header_revision(&resp.header);
                    let mut w = cc::watch(s, &pfx, cc::prefix_end(&pfx), from).await?;
                    loop {
                        let events = w.next().await?;
                        if let Some(ev) = events.into_iter().find(|e| e.kind == EventKind::Put) {
                            let kv = crate::convert::kv_to_pb(ev.kv);
                            break (s.header(Some(kv.mod_revision)), kv);
                        }
                    }
                }
            };
            let from = cc::header_revision(&header) + 1;
            let key = kv.key.clone();
            send(header, kv).await?;
            let mut w = cc::watch(s, &key, Vec::new(), from).await?;
            'leader: loop {
                let events = w.next().await?;
                let rev = events.last().map_or(0, |e| e.kv.mod_revision);
                for ev in events {
                    if ev.kind == EventKind::Delete {
                        break 'leader;
                    }
                    send(s.header(Some(rev)), crate::convert::kv_to_pb(ev.kv)).await?;
                }
            }
        }
    }
}

/// `Election.Resign`'s txn: delete the key if it still has its create
/// revision.
fn resign_txn(leader: &pb::LeaderKey) -> epb::TxnRequest {
    epb::TxnRequest {
        compare: vec![cc::created_at(&leader.key, leader.rev)],
        success: vec![cc::op_delete(&leader.key)],
        failure: Vec::new(),
    }
}

#[tonic::async_trait]
impl pb::election_server::Election for ElectionService {
    async fn campaign(
        &self,
        r: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        Ok(Response::new(
            ElectionService::campaign(self, r.into_inner()).await?,
        ))
    }
    async fn proclaim(
        &self,
        r: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        Ok(Response::new(
            ElectionService::proclaim(self, r.into_inner()).await?,
        ))
    }
    async fn leader(
        &self,
        r: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        Ok(Response::new(
            ElectionService::leader(self, r.into_inner()).await?,
        ))
    }
    type ObserveStream = ObserveStream;
    async fn observe(
        &self,
        r: Request<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        Ok(Response::new(ElectionService::observe(
            self,
            r.into_inner(),
        )))
    }
    async fn resign(
        &self,
        r: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        Ok(Response::new(
            ElectionService::resign(self, r.into_inner()).await?,
        ))
    }
}
