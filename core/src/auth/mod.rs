//! etcd's authentication store (D14): users, roles, key-range permissions,
//! the enabled flag and the auth revision, replicated through the log like
//! every other mutation (D7) and kept in the `meta` keyspace under `auth/`
//! (so snapshots and restarts carry it).
//!
//! The rules are etcd 3.4's `auth/store.go`, `range_perm_cache.go` and
//! `etcdserver/apply_auth.go`:
//! - [`store`]: the data and its lookups (what `UserGet` … answer);
//! - [`perm`]: the permission checks every etcd request passes (who may
//!   read or write which keys, who is an administrator);
//! - `apply`: the auth commands and the checked etcd writes, applied by
//!   the state machine;
//! - [`tokens`]: simple tokens, which — as in etcd — every member learns
//!   when it applies the `Authenticate` command, and forgets after their
//!   TTL of disuse.
//!
//! Passwords arrive at the state machine already bcrypt-hashed: hashing is
//! slow and salted (random), so the proposer does it and apply stays
//! deterministic.

mod apply;
pub mod node;
pub mod perm;
pub mod store;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use node::hash_password;
pub use perm::Access;
pub use store::{AuthStore, PermType, Permission, Role, User};

/// The name of etcd's superuser and of its role.
pub const ROOT: &str = "root";

/// Who sent an etcd request, as etcd's raft request header carries it
/// (`Username`, `AuthRevision`). The default (empty name, revision 0) is
/// a request without credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user: String,
    /// The auth revision the credentials were checked at (0: none).
    pub revision: u64,
}

/// etcd's auth errors (`auth/store.go`), mapped to gRPC statuses by the
/// etcd frontend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AuthError {
    #[error("auth: root user does not exist")]
    RootUserNotExist,
    #[error("auth: root user does not have root role")]
    RootRoleNotExist,
    #[error("auth: user already exists")]
    UserAlreadyExist,
    #[error("auth: user name is empty")]
    UserEmpty,
    #[error("auth: user not found")]
    UserNotFound,
    #[error("auth: role already exists")]
    RoleAlreadyExist,
    #[error("auth: role not found")]
    RoleNotFound,
    #[error("auth: role name is empty")]
    RoleEmpty,
    #[error("auth: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("auth: permission denied")]
    PermissionDenied,
    #[error("auth: role is not granted to the user")]
    RoleNotGranted,
    #[error("auth: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("auth: authentication is not enabled")]
    AuthNotEnabled,
    #[error("auth: revision in header is old")]
    AuthOldRevision,
    #[error("auth: invalid auth token")]
    InvalidAuthToken,
    #[error("auth: invalid auth management")]
    InvalidAuthMgmt,
}

/// One change of the auth store (etcd's `InternalRaftRequest.Auth*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    Enable,
    Disable,
    /// Issues a simple token `<prefix>.<raft index>` to `name` (the
    /// proposer checked the password); an empty prefix only checks the
    /// user (the proposer signs a JWT). `ttl_ms`: how long the token lives
    /// unused (`--auth-token-ttl` of the proposer).
    Authenticate {
        name: String,
        prefix: String,
        ttl_ms: u64,
    },
    /// `hash`: bcrypt hash of the password, `None` for a no-password user.
    UserAdd {
        name: String,
        hash: Option<String>,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        hash: String,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    RoleGrantPermission {
        name: String,
        perm: Permission,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
}

impl AuthOp {
    /// etcd's `needAdminPermission`: every change but Authenticate needs
    /// the root role (once auth is enabled).
    pub fn needs_admin(&self) -> bool {
        !matches!(self, AuthOp::Authenticate { .. })
    }
}

/// What an applied [`AuthOp`] answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthReply {
    Done,
    /// Authenticate: the token issued.
    Token(String),
}
