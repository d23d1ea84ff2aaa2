//! etcd's Auth service (etcd 3.4 `v3rpc/auth.go` over `v3_server.go`):
//! changes of the auth store are commands through the log (D7, D14);
//! lookups read the member's store after a read barrier (etcd sends them
//! through raft, which makes them linearizable too).
//!
//! Passwords are checked and hashed here, by the member the client talks
//! to, off the async executor (bcrypt is slow on purpose); the log only
//! ever holds hashes.

use janus_core::auth::{self, AuthError, AuthOp, AuthReply, Caller, PermType, Permission};
use janus_core::{Applied, Command, CommandResult};
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::kv_service::{propose, unexpected};
use crate::pb::{authpb, etcdserverpb as pb};
use crate::status::ApiError;

#[derive(Clone)]
pub struct AuthService(pub Shared);

type R<T> = Result<Response<T>, Status>;

/// Runs a blocking closure (bcrypt) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ApiError::Core(
            format!("janus: password hashing failed: {e}"),
            crate::status::CoreKind::Other,
        )),
    }
}

impl AuthService {
    /// Proposes one auth change; the caller is filled in by `propose`.
    async fn change(&self, op: AuthOp) -> Result<(AuthReply, i64), ApiError> {
        let cmd = Command::Auth {
            caller: Caller::default(),
            op,
        };
        let Applied { revision, result } = propose(&self.0, cmd).await?;
        match result {
            CommandResult::Auth(r) => Ok((r?, revision)),
            other => Err(unexpected(other)),
        }
    }

    async fn done(&self, op: AuthOp) -> Result<Option<pb::ResponseHeader>, ApiError> {
        let (_, revision) = self.change(op).await?;
        Ok(self.0.header(Some(revision)))
    }

    /// The caller of a lookup, after a read barrier.
    async fn reader(&self) -> Result<Caller, ApiError> {
        self.0.node.read_barrier().await?;
        crate::caller::current(&self.0).await
    }

    pub async fn auth_enable(
        &self,
        _r: pb::AuthEnableRequest,
    ) -> Result<pb::AuthEnableResponse, ApiError> {
        Ok(pb::AuthEnableResponse {
            header: self.done(AuthOp::Enable).await?,
        })
    }

    pub async fn auth_disable(
        &self,
        _r: pb::AuthDisableRequest,
    ) -> Result<pb::AuthDisableResponse, ApiError> {
        Ok(pb::AuthDisableResponse {
            header: self.done(AuthOp::Disable).await?,
        })
    }

    /// etcd's `Authenticate`: check the password at the current auth
    /// revision, have the log issue a token, and start over if the auth
    /// store changed in between (the password may have changed).
    pub async fn authenticate(
        &self,
        r: pb::AuthenticateRequest,
    ) -> Result<pb::AuthenticateResponse, ApiError> {
        self.0.node.read_barrier().await?;
        loop {
            let (node, name, password) = (self.0.node.clone(), r.name.clone(), r.password.clone());
            let checked = blocking(move || node.auth_check_password(&name, &password)).await?;
            // With JWTs the log only checks the user; the token is signed
            // here, at the auth revision after the apply.
            let prefix = match self.0.cfg.jwt {
                Some(_) => String::new(),
                None => auth::tokens::new_prefix(),
            };
            let op = AuthOp::Authenticate {
                name: r.name.clone(),
                prefix,
                ttl_ms: self.0.cfg.auth_token_ttl.as_millis() as u64,
            };
            let (reply, revision) = self.change(op).await?;
            let AuthReply::Token(mut token) = reply else {
                return Err(ApiError::Auth(AuthError::AuthFailed));
            };
            if let Some(jwt) = &self.0.cfg.jwt {
                token = jwt.sign(&r.name, self.0.node.auth_revision())?;
            }
            if checked == self.0.node.auth_revision() {
                return Ok(pb::AuthenticateResponse {
                    header: self.0.header(Some(revision)),
                    token,
                });
            }
        }
    }

    pub async fn user_add(
        &self,
        r: pb::AuthUserAddRequest,
    ) -> Result<pb::AuthUserAddResponse, ApiError> {
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let hash = if no_password || r.name.is_empty() {
            None
        } else {
            let pw = r.password.clone();
            Some(blocking(move || auth::hash_password(&pw)).await?)
        };
        let op = if r.name.is_empty() {
            // The store refuses it (user name is empty); no hash needed.
            AuthOp::UserAdd {
                name: String::new(),
                hash: Some(String::new()),
            }
        } else {
            AuthOp::UserAdd { name: r.name, hash }
        };
        Ok(pb::AuthUserAddResponse {
            header: self.done(op).await?,
        })
    }

    pub async fn user_get(
        &self,
        r: pb::AuthUserGetRequest,
    ) -> Result<pb::AuthUserGetResponse, ApiError> {
        let caller = self.reader().await?;
        let u = self.0.node.auth_user_get(&caller, &r.name)?;
        Ok(pb::AuthUserGetResponse {
            header: self.0.header(None),
            roles: u.roles,
        })
    }

    pub async fn user_list(
        &self,
        _r: pb::AuthUserListRequest,
    ) -> Result<pb::AuthUserListResponse, ApiError> {
        let caller = self.reader().await?;
        Ok(pb::AuthUserListResponse {
            header: self.0.header(None),
            users: self.0.node.auth_user_list(&caller)?,
        })
    }

    pub async fn user_delete(
        &self,
        r: pb::AuthUserDeleteRequest,
    ) -> Result<pb::AuthUserDeleteResponse, ApiError> {
        Ok(pb::AuthUserDeleteResponse {
            header: self.done(AuthOp::UserDelete { name: r.name }).await?,
        })
    }

    pub async fn user_change_password(
        &self,
        r: pb::AuthUserChangePasswordRequest,
    ) -> Result<pb::AuthUserChangePasswordResponse, ApiError> {
        let pw = r.password.clone();
        let hash = blocking(move || auth::hash_password(&pw)).await?;
        Ok(pb::AuthUserChangePasswordResponse {
            header: self
                .done(AuthOp::UserChangePassword { name: r.name, hash })
                .await?,
        })
    }

    pub async fn user_grant_role(
        &self,
        r: pb::AuthUserGrantRoleRequest,
    ) -> Result<pb::AuthUserGrantRoleResponse, ApiError> {
        let op = AuthOp::UserGrantRole {
            user: r.user,
            role: r.role,
        };
        Ok(pb::AuthUserGrantRoleResponse {
            header: self.done(op).await?,
        })
    }

    pub async fn user_revoke_role(
        &self,
        r: pb::AuthUserRevokeRoleRequest,
    ) -> Result<pb::AuthUserRevokeRoleResponse, ApiError> {
        let op = AuthOp::UserRevokeRole {
            name: r.name,
            role: r.role,
        };
        Ok(pb::AuthUserRevokeRoleResponse {
            header: self.done(op).await?,
        })
    }

    pub async fn role_add(
        &self,
        r: pb::AuthRoleAddRequest,
    ) -> Result<pb::AuthRoleAddResponse, ApiError> {
        Ok(pb::AuthRoleAddResponse {
            header: self.done(AuthOp::RoleAdd { name: r.name }).await?,
        })
    }

    pub async fn role_get(
        &self,
        r: pb::AuthRoleGetRequest,
    ) -> Result<pb::AuthRoleGetResponse, ApiError> {
        let caller = self.reader().await?;
        let role = self.0.node.auth_role_get(&caller, &r.role)?;
        Ok(pb::AuthRoleGetResponse {
            header: self.0.header(None),
            perm: role
                .perms
                .into_iter()
                .map(|p| authpb::Permission {
                    perm_type: p.perm_type as i32,
                    key: p.key,
                    range_end: p.range_end,
                })
                .collect(),
        })
    }

    pub async fn role_list(
        &self,
        _r: pb::AuthRoleListRequest,
    ) -> Result<pb::AuthRoleListResponse, ApiError> {
        let caller = self.reader().await?;
        Ok(pb::AuthRoleListResponse {
            header: self.0.header(None),
            roles: self.0.node.auth_role_list(&caller)?,
        })
    }

    pub async fn role_delete(
        &self,
        r: pb::AuthRoleDeleteRequest,
    ) -> Result<pb::AuthRoleDeleteResponse, ApiError> {
        Ok(pb::AuthRoleDeleteResponse {
            header: self.done(AuthOp::RoleDelete { name: r.role }).await?,
        })
    }

    pub async fn role_grant_permission(
        &self,
        r: pb::AuthRoleGrantPermissionRequest,
    ) -> Result<pb::AuthRoleGrantPermissionResponse, ApiError> {
        let p = r.perm.unwrap_or_default();
        let op = AuthOp::RoleGrantPermission {
            name: r.name,
            perm: Permission {
                // Out-of-range types read as READ, the proto default.
                perm_type: PermType::from_i32(p.perm_type).unwrap_or(PermType::Read),
                key: p.key,
                range_end: p.range_end,
            },
        };
        Ok(pb::AuthRoleGrantPermissionResponse {
            header: self.done(op).await?,
        })
    }

    pub async fn role_revoke_permission(
        &self,
        r: pb::AuthRoleRevokePermissionRequest,
    ) -> Result<pb::AuthRoleRevokePermissionResponse, ApiError> {
        let op = AuthOp::RoleRevokePermission {
            role: r.role,
            key: r.key,
            range_end: r.range_end,
        };
        Ok(pb::AuthRoleRevokePermissionResponse {
            header: self.done(op).await?,
        })
    }
}

macro_rules! grpc {
    ($($method:ident: $req:ty => $resp:ty;)*) => {
        #[tonic::async_trait]
        impl pb::auth_server::Auth for AuthService {
            $(
                async fn $method(&self, r: Request<$req>) -> R<$resp> {
                    Ok(Response::new(AuthService::$method(self, r.into_inner()).await?))
                }
            )*
        }
    };
}

grpc! {
    auth_enable: pb::AuthEnableRequest => pb::AuthEnableResponse;
    auth_disable: pb::AuthDisableRequest => pb::AuthDisableResponse;
    authenticate: pb::AuthenticateRequest => pb::AuthenticateResponse;
    user_add: pb::AuthUserAddRequest => pb::AuthUserAddResponse;
    user_get: pb::AuthUserGetRequest => pb::AuthUserGetResponse;
    user_list: pb::AuthUserListRequest => pb::AuthUserListResponse;
    user_delete: pb::AuthUserDeleteRequest => pb::AuthUserDeleteResponse;
    user_change_password: pb::AuthUserChangePasswordRequest => pb::AuthUserChangePasswordResponse;
    user_grant_role: pb::AuthUserGrantRoleRequest => pb::AuthUserGrantRoleResponse;
    user_revoke_role: pb::AuthUserRevokeRoleRequest => pb::AuthUserRevokeRoleResponse;
    role_add: pb::AuthRoleAddRequest => pb::AuthRoleAddResponse;
    role_get: pb::AuthRoleGetRequest => pb::AuthRoleGetResponse;
    role_list: pb::AuthRoleListRequest => pb::AuthRoleListResponse;
    role_delete: pb::AuthRoleDeleteRequest => pb::AuthRoleDeleteResponse;
    role_grant_permission: pb::AuthRoleGrantPermissionRequest => pb::AuthRoleGrantPermissionResponse;
    role_revoke_permission: pb::AuthRoleRevokePermissionRequest => pb::AuthRoleRevokePermissionResponse;
}
