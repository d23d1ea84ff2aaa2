//! Who sent a request: the credentials a request carries, resolved into a
//! core [`Caller`] where etcd resolves them (`AuthInfoFromCtx`): before a
//! proposal, before a local read, when a watcher is created. A request
//! that never needs its caller is never refused for a bad token, as in
//! etcd (LeaseKeepAlive, Status, ...).
//!
//! The credentials travel with the request's task as a tokio task-local
//! (the counterpart of etcd's gRPC context), set once per request by the
//! listener from the `token` metadata (gRPC) or `Authorization` header
//! (JSON gateway), so no handler signature carries them.

use janus_core::auth::{tokens, AuthError, Caller};

use crate::context::Shared;
use crate::status::ApiError;

/// The credentials of one request, unresolved.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// `token` metadata (gRPC) or `Authorization` header (gateway).
    pub token: Option<String>,
    /// Common name of the verified client certificate, when the listener
    /// requires client certificates (`--client-cert-auth`).
    pub common_name: Option<String>,
}

tokio::task_local! {
    static CREDENTIALS: Credentials;
}

impl Credentials {
    /// etcd's `rpctypes.TokenFieldNameGRPC` and `TokenFieldNameSwagger`.
    pub fn from_headers(h: &http::HeaderMap) -> Credentials {
        let token = h
            .get("token")
            .or_else(|| h.get(http::header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Credentials {
            token,
            common_name: None,
        }
    }
}

/// Runs `f` with `c` as its request's credentials.
pub async fn within<F: std::future::Future>(c: Credentials, f: F) -> F::Output {
    CREDENTIALS.scope(c, f).await
}

/// The credentials of the current request (to hand to a spawned task).
pub fn captured() -> Credentials {
    CREDENTIALS.try_with(Clone::clone).unwrap_or_default()
}

/// The current request's caller: none (the default caller) without
/// credentials; with JWTs, the token's claims (see [`crate::jwt`]);
/// otherwise `invalid auth token` for a token no member issued, that
/// expired or was revoked. A token issued by an entry this member has not
/// applied yet is looked up again after catching up (etcd's
/// `indexWaiter`).
pub async fn current(s: &Shared) -> Result<Caller, ApiError> {
    let c = captured();
    let Some(token) = c.token else {
        return Ok(match c.common_name {
            Some(cn) => s.node.auth_caller_named(&cn),
            None => Caller::default(),
        });
    };
    if let Some(jwt) = &s.cfg.jwt {
        return Ok(jwt.verify(&token)?);
    }
    match s.node.auth_caller(&token) {
        Ok(caller) => Ok(caller),
        Err(e) => {
            let Some(index) = tokens::token_index(&token) else {
                return Err(e.into());
            };
            if index <= s.node.status().applied_index {
                return Err(e.into());
            }
            s.node.read_barrier().await?;
            s.node
                .auth_caller(&token)
                .map_err(|_| AuthError::InvalidAuthToken.into())
        }
    }
}

/// etcd's `authMaintenanceServer.isAuthenticated`: with auth enabled, only
/// the root role may defragment, snapshot, hash or move the leader.
pub async fn require_admin(s: &Shared) -> Result<(), ApiError> {
    let caller = current(s).await?;
    Ok(s.node.auth_check_admin(&caller)?)
}
