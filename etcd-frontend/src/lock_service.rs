//! etcd's Lock service (`v3lockpb`): the server side of
//! `concurrency.Mutex`, as etcd 3.4's `v3lock` runs it.
//!
//! Lock puts `name/<lease hex>` attached to the lease unless it exists
//! (locking twice with one lease is one acquisition), then waits until
//! no key under `name/` is older; Unlock deletes the key.

use tonic::{Request, Response, Status};

use crate::concurrency::{self as cc, Cleanup};
use crate::context::Shared;
use crate::kv_service::KvService;
use crate::pb::etcdserverpb as epb;
use crate::pb::v3lockpb as pb;
use crate::status::ApiError;

#[derive(Clone)]
pub struct LockService(pub Shared);

impl LockService {
    /// `Mutex.Lock`: one txn that enqueues the caller and reads the
    /// current owner; if the owner is someone else, waits for every older
    /// waiter's key to go. The answer's header is the txn's when the lock
    /// was free, else the read that found no older waiter.
    pub async fn lock(&self, r: pb::LockRequest) -> Result<pb::LockResponse, ApiError> {
        self.try_lock(r).await.map_err(cc::go_error)
    }

    async fn try_lock(&self, r: pb::LockRequest) -> Result<pb::LockResponse, ApiError> {
        let s = &self.0;
        let lease = cc::session_lease(s, r.lease).await?;
        let pfx = cc::prefix(&r.name);
        let key = cc::own_key(&r.name, lease);
        let owner = || cc::op_get(cc::by_create(&pfx, true, 0));
        let resp = KvService(s.clone())
            .txn(epb::TxnRequest {
                compare: vec![cc::created_at(&key, 0)],
                success: vec![cc::op_put(&key, b"", lease), owner()],
                failure: vec![cc::op_get_key(&key), owner()],
            })
            .await?;
        let my_rev = if resp.succeeded {
            cc::header_revision(&resp.header)
        } else {
            cc::range_kvs(&resp, 0)?
                .first()
                .map_or(0, |kv| kv.create_revision)
        };
        let owner_rev = cc::range_kvs(&resp, 1)?
            .first()
            .map(|kv| kv.create_revision);
        if owner_rev.is_none_or(|rev| rev == my_rev) {
            return Ok(pb::LockResponse {
                header: resp.header,
                key,
            });
        }
        let cleanup = Cleanup::new(s, unlock_txn(&key));
        match cc::wait_deletes(s, &pfx, my_rev - 1).await {
            Ok(header) => {
                cleanup.disarm();
                Ok(pb::LockResponse { header, key })
            }
            Err(e) => {
                // etcd releases the key of a failed wait and answers the
                // wait's error.
                let _ = cleanup.run().await;
                Err(e)
            }
        }
    }

    pub async fn unlock(&self, r: pb::UnlockRequest) -> Result<pb::UnlockResponse, ApiError> {
        let resp = KvService(self.0.clone())
            .delete_range(epb::DeleteRangeRequest {
                key: r.key,
                ..Default::default()
            })
            .await
            .map_err(cc::go_error)?;
        Ok(pb::UnlockResponse {
            header: resp.header,
        })
    }
}

/// `Mutex.Unlock` as a txn (for [`Cleanup`]): a plain delete of the key.
fn unlock_txn(key: &[u8]) -> epb::TxnRequest {
    epb::TxnRequest {
        success: vec![cc::op_delete(key)],
        ..Default::default()
    }
}

#[tonic::async_trait]
impl pb::lock_server::Lock for LockService {
    async fn lock(
        &self,
        r: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        Ok(Response::new(
            LockService::lock(self, r.into_inner()).await?,
        ))
    }
    async fn unlock(
        &self,
        r: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        Ok(Response::new(
            LockService::unlock(self, r.into_inner()).await?,
        ))
    }
}
