//! etcd's Auth service, answering as an etcd with authentication disabled
//! and no users or roles: lookups of users/roles find nothing, enabling
//! auth needs a root user that cannot exist, and creating users or roles
//! is Unimplemented until core stores auth data.

use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;

#[derive(Clone)]
pub struct AuthService(pub Shared);

type R<T> = Result<Response<T>, Status>;

#[allow(clippy::result_large_err)] // tonic::Status is what the trait returns
fn err<T>(e: ApiError) -> R<T> {
    Err(e.into())
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(&self, _r: Request<pb::AuthEnableRequest>) -> R<pb::AuthEnableResponse> {
        err(ApiError::RootUserNotExist)
    }
    async fn auth_disable(
        &self,
        _r: Request<pb::AuthDisableRequest>,
    ) -> R<pb::AuthDisableResponse> {
        Ok(Response::new(pb::AuthDisableResponse {
            header: self.0.header(None),
        }))
    }
    async fn authenticate(
        &self,
        _r: Request<pb::AuthenticateRequest>,
    ) -> R<pb::AuthenticateResponse> {
        err(ApiError::AuthNotEnabled)
    }
    async fn user_add(&self, _r: Request<pb::AuthUserAddRequest>) -> R<pb::AuthUserAddResponse> {
        err(ApiError::Unimplemented("etcd users"))
    }
    async fn user_get(&self, _r: Request<pb::AuthUserGetRequest>) -> R<pb::AuthUserGetResponse> {
        err(ApiError::UserNotFound)
    }
    async fn user_list(&self, _r: Request<pb::AuthUserListRequest>) -> R<pb::AuthUserListResponse> {
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.0.header(None),
            users: vec![],
        }))
    }
    async fn user_delete(
        &self,
        _r: Request<pb::AuthUserDeleteRequest>,
    ) -> R<pb::AuthUserDeleteResponse> {
        err(ApiError::UserNotFound)
    }
    async fn user_change_password(
        &self,
        _r: Request<pb::AuthUserChangePasswordRequest>,
    ) -> R<pb::AuthUserChangePasswordResponse> {
        err(ApiError::UserNotFound)
    }
    async fn user_grant_role(
        &self,
        _r: Request<pb::AuthUserGrantRoleRequest>,
    ) -> R<pb::AuthUserGrantRoleResponse> {
        err(ApiError::UserNotFound)
    }
    async fn user_revoke_role(
        &self,
        _r: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> R<pb::AuthUserRevokeRoleResponse> {
        err(ApiError::UserNotFound)
    }
    async fn role_add(&self, _r: Request<pb::AuthRoleAddRequest>) -> R<pb::AuthRoleAddResponse> {
        err(ApiError::Unimplemented("etcd roles"))
    }
    async fn role_get(&self, _r: Request<pb::AuthRoleGetRequest>) -> R<pb::AuthRoleGetResponse> {
        err(ApiError::RoleNotFound)
    }
    async fn role_list(&self, _r: Request<pb::AuthRoleListRequest>) -> R<pb::AuthRoleListResponse> {
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.0.header(None),
            roles: vec![],
        }))
    }
    async fn role_delete(
        &self,
        _r: Request<pb::AuthRoleDeleteRequest>,
    ) -> R<pb::AuthRoleDeleteResponse> {
        err(ApiError::RoleNotFound)
    }
    async fn role_grant_permission(
        &self,
        _r: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> R<pb::AuthRoleGrantPermissionResponse> {
        err(ApiError::RoleNotFound)
    }
    async fn role_revoke_permission(
        &self,
        _r: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> R<pb::AuthRoleRevokePermissionResponse> {
        err(ApiError::RoleNotFound)
    }
}
