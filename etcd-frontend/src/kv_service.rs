//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Writes are one core command each; the store revision after the command
//! becomes the response header revision (as etcd's applier sets it).
//! Linearizable reads wait for a read barrier first; serializable ones read
//! the local state machine directly.

use janus_core::auth::{Access, AuthError};
use janus_core::{Applied, Command, CommandResult};
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::convert;
use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;
use crate::validate;

/// etcd's quota accounting: per-key overhead added to each put's size.
const KV_OVERHEAD: usize = 256;

#[derive(Clone)]
pub struct KvService(pub Shared);

impl KvService {
    pub async fn range(&self, r: pb::RangeRequest) -> Result<pb::RangeResponse, ApiError> {
        validate::range(&r)?;
        let node = &self.0.node;
        if !r.serializable {
            node.read_barrier().await?;
        }
        // etcd reports the revision the read saw, not the one asked for.
        // etcd's doSerialize: permission before the read, and a read that
        // raced an auth change is refused after it.
        let caller = crate::caller::current(&self.0).await?;
        node.auth_check(&caller, &r.key, &r.range_end, Access::Read)?;
        let (resp, rev) = node.range_with_revision(&convert::range_req(&r))?;
        if caller.revision != 0 && caller.revision != node.auth_revision() {
            return Err(AuthError::AuthOldRevision.into());
        }
        Ok(convert::range_resp(resp, self.0.header(Some(rev))))
    }

    pub async fn put(&self, r: pb::PutRequest) -> Result<pb::PutResponse, ApiError> {
        // etcd's order: quota (quotaKVServer), API checks (kvServer), size
        // (at proposal).
        self.0
            .check_quota(KV_OVERHEAD + prost::Message::encoded_len(&r))
            .await?;
        validate::put(&r)?;
        validate::size(&r, self.0.cfg.max_request_bytes)?;
        let Applied { revision, result } =
            propose(&self.0, Command::Put(convert::put_req(&r))).await?;
        match result {
            CommandResult::Put(res) => Ok(convert::put_resp(res?, self.0.header(Some(revision)))),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(
        &self,
        r: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, ApiError> {
        validate::delete(&r)?;
        validate::size(&r, self.0.cfg.max_request_bytes)?;
        let Applied { revision, result } =
            propose(&self.0, Command::DeleteRange(convert::delete_req(&r))).await?;
        match result {
            CommandResult::DeleteRange(res) => {
                Ok(convert::delete_resp(res?, self.0.header(Some(revision))))
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, r: pb::TxnRequest) -> Result<pb::TxnResponse, ApiError> {
        self.0.check_quota(txn_cost(&r)).await?;
        validate::txn(&r, self.0.cfg.max_txn_ops)?;
        validate::size(&r, self.0.cfg.max_request_bytes)?;
        let req = convert::txn_req(&r)?;
        let Applied { revision, result } = propose(&self.0, Command::Txn(req)).await?;
        match result {
            CommandResult::Txn(res) => Ok(convert::txn_resp(
                res?,
                revision,
                self.0.header(Some(revision)),
            )),
            other => Err(unexpected(other)),
        }
    }

    pub async fn compact(
        &self,
        r: pb::CompactionRequest,
    ) -> Result<pb::CompactionResponse, ApiError> {
        let Applied { revision, result } = propose(
            &self.0,
            Command::Compact {
                revision: r.revision,
            },
        )
        .await?;
        match result {
            // Core compacts synchronously, so `physical` needs no wait.
            CommandResult::Compact(res) => {
                res?;
                Ok(pb::CompactionResponse {
                    header: self.0.header(Some(revision)),
                })
            }
            other => Err(unexpected(other)),
        }
    }
}

/// etcd's `costTxn`: the larger of the two branches' put costs (nested txns
/// are not counted, as in etcd).
fn txn_cost(r: &pb::TxnRequest) -> usize {
    let branch = |ops: &[pb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(pb::request_op::Request::RequestPut(p)) => {
                    KV_OVERHEAD + prost::Message::encoded_len(p)
                }
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

/// Proposes one command through raft and waits for its result. The
/// request's credentials are resolved first (a bad token fails every
/// proposal, as in etcd); etcd writes carry their caller so that apply
/// checks its permissions (D14).
pub async fn propose(s: &Shared, cmd: Command) -> Result<Applied, ApiError> {
    let caller = crate::caller::current(s).await?;
    let cmd = match cmd {
        Command::Put(_)
        | Command::DeleteRange(_)
        | Command::Txn(_)
        | Command::LeaseRevoke { .. } => Command::As {
            caller,
            command: Box::new(cmd),
        },
        Command::Auth { op, .. } => Command::Auth { caller, op },
        other => other,
    };
    Ok(s.node.propose(cmd).await?)
}

/// Core answered a command with a result of another kind: a bug in core.
pub fn unexpected(result: CommandResult) -> ApiError {
    tracing::error!(?result, "core returned a result of the wrong kind");
    ApiError::Core(
        format!("janus: unexpected command result {result:?}"),
        crate::status::CoreKind::Other,
    )
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        r: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        Ok(Response::new(KvService::range(self, r.into_inner()).await?))
    }
    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        Ok(Response::new(KvService::put(self, r.into_inner()).await?))
    }
    async fn delete_range(
        &self,
        r: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Ok(Response::new(
            KvService::delete_range(self, r.into_inner()).await?,
        ))
    }
    async fn txn(&self, r: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        Ok(Response::new(KvService::txn(self, r.into_inner()).await?))
    }
    async fn compact(
        &self,
        r: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Ok(Response::new(
            KvService::compact(self, r.into_inner()).await?,
        ))
    }
}
