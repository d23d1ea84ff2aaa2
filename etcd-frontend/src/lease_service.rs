//! etcd's Lease service. Leases are janus sessions (D4): a ZooKeeper
//! session shows up here as a lease and the other way round.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use janus_core::{Applied, Command, CommandResult, KvError};
use tonic::{Request, Response, Status, Streaming};

use crate::context::{Shared, MAX_LEASE_TTL, MIN_LEASE_TTL};
use crate::kv_service::{propose, unexpected};
use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;

/// etcd's quota cost of a lease grant (`leaseOverhead`).
const LEASE_OVERHEAD: usize = 64;

#[derive(Clone)]
pub struct LeaseService(pub Shared);

/// A stream of keepalive responses (gRPC or the JSON gateway).
pub type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

impl LeaseService {
    pub async fn grant(
        &self,
        r: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, ApiError> {
        self.0.check_quota(LEASE_OVERHEAD).await?;
        // etcd picks a random positive id when the client gave none; ids
        // stay positive because ZooKeeper reads negative session ids as
        // special ephemeral owners.
        let id = if r.id == 0 { random_lease_id() } else { r.id };
        if r.ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge.into());
        }
        // etcd's lessor raises any TTL below the minimum to the minimum.
        let ttl = r.ttl.max(MIN_LEASE_TTL);
        let Applied { revision, result } = propose(
            &self.0,
            Command::LeaseGrant {
                id,
                ttl_ms: ttl * 1000,
            },
        )
        .await?;
        match result {
            CommandResult::LeaseGrant(res) => {
                let g = res?;
                Ok(pb::LeaseGrantResponse {
                    header: self.0.header(Some(revision)),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                })
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn revoke(
        &self,
        r: pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, ApiError> {
        let Applied { revision, result } =
            propose(&self.0, Command::LeaseRevoke { id: r.id }).await?;
        match result {
            CommandResult::LeaseRevoke(res) => {
                res?;
                Ok(pb::LeaseRevokeResponse {
                    header: self.0.header(Some(revision)),
                })
            }
            other => Err(unexpected(other)),
        }
    }

    /// etcd answers an unknown lease with TTL -1 rather than an error.
    pub async fn time_to_live(
        &self,
        r: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, ApiError> {
        let header = self.0.header(None);
        match self.0.node.lease_time_to_live(r.id, r.keys) {
            Ok(info) if info.ttl >= 0 => Ok(pb::LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: info.ttl,
                granted_ttl: info.granted_ttl,
                keys: info.keys,
            }),
            Ok(_) | Err(KvError::LeaseNotFound) => Ok(pb::LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn leases(
        &self,
        _r: pb::LeaseLeasesRequest,
    ) -> Result<pb::LeaseLeasesResponse, ApiError> {
        let header = self.0.header(None);
        let leases = self
            .0
            .node
            .leases()
            .into_iter()
            .map(|id| pb::LeaseStatus { id })
            .collect();
        Ok(pb::LeaseLeasesResponse { header, leases })
    }

    /// One keepalive: the header is taken before renewing (etcd does so,
    /// so the revision never postdates a revoke the client could miss); an
    /// unknown lease answers TTL 0.
    pub async fn keep_alive_once(&self, id: i64) -> Result<pb::LeaseKeepAliveResponse, ApiError> {
        let header = self.0.header(None);
        let ttl = self.0.node.lease_keepalive(id).await?.unwrap_or(0);
        Ok(pb::LeaseKeepAliveResponse { header, id, ttl })
    }

    /// Answers each request of `requests` in order until the client closes
    /// its side or sends garbage.
    pub fn keep_alive_stream<S>(&self, requests: S) -> KeepAliveStream
    where
        S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Send + 'static,
    {
        let this = self.clone();
        let stopped = self.0.stopped();
        Box::pin(requests.take_until(stopped).then(move |req| {
            let this = this.clone();
            async move {
                let req = req?;
                Ok(this.keep_alive_once(req.id).await?)
            }
        }))
    }
}

pub fn random_lease_id() -> i64 {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        r: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        Ok(Response::new(self.grant(r.into_inner()).await?))
    }
    async fn lease_revoke(
        &self,
        r: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        Ok(Response::new(self.revoke(r.into_inner()).await?))
    }
    type LeaseKeepAliveStream = KeepAliveStream;
    async fn lease_keep_alive(
        &self,
        r: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        Ok(Response::new(self.keep_alive_stream(r.into_inner())))
    }
    async fn lease_time_to_live(
        &self,
        r: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(self.time_to_live(r.into_inner()).await?))
    }
    async fn lease_leases(
        &self,
        r: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.leases(r.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_ids_are_positive() {
        for _ in 0..1000 {
            assert!(super::random_lease_id() > 0);
        }
    }
}
