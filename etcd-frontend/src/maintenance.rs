//! etcd's Maintenance service: Status, Alarm, Hash/HashKV, Snapshot,
//! Defragment, MoveLeader.

use std::pin::Pin;

use futures::Stream;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::context::{Shared, ETCD_VERSION};
use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;

/// etcd's `snapshotSendBufferSize`: bytes per snapshot message.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

#[derive(Clone)]
pub struct MaintenanceService(pub Shared);

pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

impl MaintenanceService {
    pub async fn status(&self, _r: pb::StatusRequest) -> Result<pb::StatusResponse, ApiError> {
        let st = self.0.node.status();
        let mut errors = Vec::new();
        if st.leader == 0 {
            errors.push("etcdserver: no leader".to_string());
        }
        for a in self.0.alarms() {
            errors.push(alarm_string(&a));
        }
        Ok(pb::StatusResponse {
            header: self.0.header(None),
            version: ETCD_VERSION.to_string(),
            db_size: st.db_size,
            leader: st.leader,
            raft_index: st.raft_index,
            raft_term: st.raft_term,
            raft_applied_index: st.applied_index,
            errors,
            db_size_in_use: st.db_size,
            is_learner: false,
        })
    }

    /// GET lists alarms (of one type, or all for NONE); ACTIVATE and
    /// DEACTIVATE answer with the alarm they changed, as etcd's applier.
    pub async fn alarm(&self, r: pb::AlarmRequest) -> Result<pb::AlarmResponse, ApiError> {
        use pb::alarm_request::AlarmAction as A;
        let kind = janus_core::alarm::AlarmKind::from_i32(r.alarm);
        let alarms = match (A::try_from(r.action), kind) {
            (Ok(A::Activate), Some(kind)) | (Ok(A::Deactivate), Some(kind)) => {
                let activate = matches!(A::try_from(r.action), Ok(A::Activate));
                let alarm = janus_core::alarm::Alarm {
                    member_id: r.member_id,
                    kind,
                };
                self.0
                    .node
                    .alarm(activate, alarm)
                    .await?
                    .into_iter()
                    .map(|a| pb::AlarmMember {
                        member_id: a.member_id,
                        alarm: a.kind as i32,
                    })
                    .collect()
            }
            // Activating or clearing NONE changes nothing.
            (Ok(A::Activate), None) | (Ok(A::Deactivate), None) => vec![],
            _ => {
                let all = self.0.alarms();
                if r.alarm == pb::AlarmType::None as i32 {
                    all
                } else {
                    all.into_iter().filter(|a| a.alarm == r.alarm).collect()
                }
            }
        };
        // etcd's applier answers alarms without a header.
        Ok(pb::AlarmResponse {
            header: None,
            alarms,
        })
    }

    /// The member's HashKV at `revision`: a scan of the store, so off the
    /// async threads.
    async fn hash_kv_at(&self, revision: i64) -> Result<(u32, i64, i64), ApiError> {
        let node = self.0.node.clone();
        tokio::task::spawn_blocking(move || node.hash_kv(revision))
            .await
            .map_err(|e| ApiError::Core(format!("hash task: {e}"), crate::status::CoreKind::Other))?
            .map_err(ApiError::from)
    }

    pub async fn hash(&self, _r: pb::HashRequest) -> Result<pb::HashResponse, ApiError> {
        crate::caller::require_admin(&self.0).await?;
        let (hash, _compact, rev) = self.hash_kv_at(0).await?;
        Ok(pb::HashResponse {
            header: self.0.header(Some(rev)),
            hash,
        })
    }

    pub async fn hash_kv(&self, r: pb::HashKvRequest) -> Result<pb::HashKvResponse, ApiError> {
        crate::caller::require_admin(&self.0).await?;
        let (hash, compact_revision, rev) = self.hash_kv_at(r.revision).await?;
        Ok(pb::HashKvResponse {
            header: self.0.header(Some(rev)),
            hash,
            compact_revision,
        })
    }

    /// The member's state as etcd's bbolt snapshot file
    /// ([`crate::snapshot_file`]) in 32 KiB messages counting down
    /// `remaining_bytes`, then one more message holding the sha256 of
    /// everything sent: etcdctl appends it to the file and `snapshot
    /// restore` checks it.
    pub async fn snapshot(&self, _r: pb::SnapshotRequest) -> Result<SnapshotStream, ApiError> {
        crate::caller::require_admin(&self.0).await?;
        let node = self.0.node.clone();
        let data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
            let backup = node.backup()?;
            let members = node.members();
            let tmp = node.config().data_dir.clone();
            crate::snapshot_file::write(&backup, &members, &tmp)
                .map_err(|e| ApiError::Core(e, crate::status::CoreKind::Other))
        })
        .await
        .map_err(|e| {
            ApiError::Core(
                format!("snapshot task: {e}"),
                crate::status::CoreKind::Other,
            )
        })??;
        let sha = Sha256::digest(&data).to_vec();
        let header = self.0.header(None);
        let total = data.len();
        let mut msgs: Vec<Result<pb::SnapshotResponse, Status>> = data
            .chunks(SNAPSHOT_CHUNK)
            .scan(0usize, |sent, blob| {
                *sent += blob.len();
                Some(Ok(pb::SnapshotResponse {
                    header,
                    remaining_bytes: (total - *sent) as u64,
                    blob: blob.to_vec(),
                }))
            })
            .collect();
        msgs.push(Ok(pb::SnapshotResponse {
            header,
            remaining_bytes: 0,
            blob: sha,
        }));
        Ok(Box::pin(futures::stream::iter(msgs)))
    }

    /// etcd answers Defragment with an empty response (no header).
    pub async fn defragment(
        &self,
        _r: pb::DefragmentRequest,
    ) -> Result<pb::DefragmentResponse, ApiError> {
        crate::caller::require_admin(&self.0).await?;
        let node = self.0.node.clone();
        tokio::task::spawn_blocking(move || node.defragment())
            .await
            .map_err(|e| {
                ApiError::Core(
                    format!("defragment task: {e}"),
                    crate::status::CoreKind::Other,
                )
            })??;
        Ok(pb::DefragmentResponse { header: None })
    }

    /// Only the leader moves leadership; a target that is not a voting
    /// member is a bad transferee; the leader itself is a no-op.
    pub async fn move_leader(
        &self,
        r: pb::MoveLeaderRequest,
    ) -> Result<pb::MoveLeaderResponse, ApiError> {
        crate::caller::require_admin(&self.0).await?;
        let st = self.0.node.status();
        let me = st.header.member_id;
        if st.leader != me {
            return Err(ApiError::NotLeader);
        }
        if r.target_id == me {
            return Ok(pb::MoveLeaderResponse { header: None });
        }
        if !self
            .0
            .node
            .members()
            .iter()
            .any(|m| m.id == r.target_id && !m.is_learner)
        {
            return Err(ApiError::BadLeaderTransferee);
        }
        self.0.node.move_leader(r.target_id).await?;
        Ok(pb::MoveLeaderResponse { header: None })
    }
}

/// Go's `AlarmMember.String()` (gogoproto text form), as etcd puts it in
/// Status.errors: `memberID:1 alarm:NOSPACE `.
fn alarm_string(a: &pb::AlarmMember) -> String {
    let name = pb::AlarmType::try_from(a.alarm)
        .map(|t| t.as_str_name())
        .unwrap_or("NONE");
    format!("memberID:{} alarm:{} ", a.member_id, name)
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        r: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Ok(Response::new(
            MaintenanceService::alarm(self, r.into_inner()).await?,
        ))
    }
    async fn status(
        &self,
        r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(
            MaintenanceService::status(self, r.into_inner()).await?,
        ))
    }
    async fn defragment(
        &self,
        r: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Ok(Response::new(
            MaintenanceService::defragment(self, r.into_inner()).await?,
        ))
    }
    async fn hash(
        &self,
        r: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Ok(Response::new(
            MaintenanceService::hash(self, r.into_inner()).await?,
        ))
    }
    async fn hash_kv(
        &self,
        r: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Ok(Response::new(
            MaintenanceService::hash_kv(self, r.into_inner()).await?,
        ))
    }
    type SnapshotStream = SnapshotStream;
    async fn snapshot(
        &self,
        r: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        Ok(Response::new(
            MaintenanceService::snapshot(self, r.into_inner()).await?,
        ))
    }
    async fn move_leader(
        &self,
        r: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Ok(Response::new(
            MaintenanceService::move_leader(self, r.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_text_matches_go() {
        let a = pb::AlarmMember {
            member_id: 42,
            alarm: pb::AlarmType::Nospace as i32,
        };
        assert_eq!(alarm_string(&a), "memberID:42 alarm:NOSPACE ");
    }
}
