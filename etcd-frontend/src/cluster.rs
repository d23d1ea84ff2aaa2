//! etcd's Cluster service. janus runs one member until replication lands:
//! MemberList describes it; membership changes answer with the error etcd
//! gives for the same request where one exists, Unimplemented otherwise.

use tonic::{Request, Response, Status};

use crate::pb::etcdserverpb as pb;
use crate::state::Shared;
use crate::status::ApiError;

#[derive(Clone)]
pub struct ClusterService(pub Shared);

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

    fn self_id(&self) -> u64 {
        self.0.node.header().member_id
    }

    pub fn members(&self) -> Vec<pb::Member> {
        vec![pb::Member {
            id: self.self_id(),
            name: self.0.node.config().name.clone(),
            peer_ur_ls: self.0.cfg.peer_urls.clone(),
            client_ur_ls: self.0.cfg.client_urls.clone(),
            is_learner: false,
        }]
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
        if !valid_urls(&r.get_ref().peer_ur_ls) {
            return Err(ApiError::MemberBadUrls.into());
        }
        Err(ApiError::Unimplemented("adding members (single-member janus)").into())
    }
    async fn member_remove(
        &self,
        r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        if r.get_ref().id != self.self_id() {
            return Err(ApiError::MemberNotFound.into());
        }
        Err(ApiError::Unimplemented("removing the only member").into())
    }
    async fn member_update(
        &self,
        r: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        if r.get_ref().id != self.self_id() {
            return Err(ApiError::MemberNotFound.into());
        }
        if !valid_urls(&r.get_ref().peer_ur_ls) {
            return Err(ApiError::MemberBadUrls.into());
        }
        Err(ApiError::Unimplemented("updating member peer URLs").into())
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
        if r.get_ref().id != self.self_id() {
            return Err(ApiError::MemberNotFound.into());
        }
        Err(ApiError::MemberNotLearner.into())
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
