//! etcd's Cluster service over core's membership (raft conf changes):
//! MemberList from the replicated member table, MemberAdd/Remove/Promote as
//! conf changes, MemberUpdate as a replicated command.

use janus_core::Member;
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;

#[derive(Clone)]
pub struct ClusterService(pub Shared);

fn to_pb(m: Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

impl ClusterService {
    /// etcd's cluster header: ids and term, no revision.
    fn header(&self) -> Option<pb::ResponseHeader> {
        let h = self.0.node.header();
        Some(pb::ResponseHeader {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: 0,
            raft_term: h.raft_term,
        })
    }

    pub fn members(&self) -> Vec<pb::Member> {
        self.0.node.members().into_iter().map(to_pb).collect()
    }

    pub async fn list(
        &self,
        _r: pb::MemberListRequest,
    ) -> Result<pb::MemberListResponse, ApiError> {
        Ok(pb::MemberListResponse {
            header: self.header(),
            members: self.members(),
        })
    }
}

/// etcd's `types.NewURLs`: every URL must be `scheme://host:port` with an
/// http/https/unix(s) scheme and no path.
fn valid_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            let Some((scheme, rest)) = u.split_once("://") else {
                return false;
            };
            matches!(scheme, "http" | "https" | "unix" | "unixs")
                && !rest.is_empty()
                && !rest.contains('/')
                && (scheme.starts_with("unix")
                    || rest
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()))
        })
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = r.into_inner();
        if !valid_urls(&r.peer_ur_ls) {
            return Err(ApiError::MemberBadUrls.into());
        }
        let (m, list) = self
            .0
            .node
            .member_add(r.peer_ur_ls, r.is_learner)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(),
            member: Some(to_pb(m)),
            members: list.into_iter().map(to_pb).collect(),
        }))
    }
    async fn member_remove(
        &self,
        r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let list = self
            .0
            .node
            .member_remove(r.get_ref().id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header(),
            members: list.into_iter().map(to_pb).collect(),
        }))
    }
    async fn member_update(
        &self,
        r: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = r.into_inner();
        if !self.0.node.members().iter().any(|m| m.id == r.id) {
            return Err(ApiError::MemberNotFound.into());
        }
        if !valid_urls(&r.peer_ur_ls) {
            return Err(ApiError::MemberBadUrls.into());
        }
        let list = self
            .0
            .node
            .member_update(r.id, r.peer_ur_ls)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header(),
            members: list.into_iter().map(to_pb).collect(),
        }))
    }
    async fn member_list(
        &self,
        r: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(self.list(r.into_inner()).await?))
    }
    async fn member_promote(
        &self,
        r: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let list = self
            .0
            .node
            .member_promote(r.get_ref().id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header(),
            members: list.into_iter().map(to_pb).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_urls;

    #[test]
    fn urls() {
        assert!(valid_urls(&["http://127.0.0.1:2380".into()]));
        assert!(valid_urls(&["https://a:1".into(), "http://b:2".into()]));
        assert!(!valid_urls(&[]));
        assert!(!valid_urls(&["127.0.0.1:2380".into()]));
        assert!(!valid_urls(&["http://a:2380/x".into()]));
        assert!(!valid_urls(&["http://a".into()]));
        assert!(!valid_urls(&["ftp://a:1".into()]));
    }
}
