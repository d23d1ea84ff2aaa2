//! What frontends ask the auth store of a running member: credentials,
//! permission checks before local reads, and the lookups of
//! `UserGet`/`RoleGet`/`UserList`/`RoleList`.

use super::perm::Access;
use super::store::{Role, User};
use super::{AuthError, Caller};
use crate::kv::TxnRequest;
use crate::Node;

/// bcrypt cost of new password hashes (etcd's `--bcrypt-cost` default).
pub const BCRYPT_COST: u32 = 10;

/// Hashes a password for `UserAdd`/`UserChangePassword`. Slow (by design
/// of bcrypt): call it off the async executor, before proposing.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|_| AuthError::AuthFailed)
}

impl Node {
    pub fn auth_enabled(&self) -> bool {
        self.state().auth.enabled
    }

    pub fn auth_revision(&self) -> u64 {
        self.state().auth.revision
    }

    /// The caller a simple token stands for, at the current auth revision
    /// (etcd's `tokenSimple.info`); `InvalidAuthToken` if the token is
    /// unknown, expired or revoked.
    pub fn auth_caller(&self, token: &str) -> Result<Caller, AuthError> {
        let st = self.state();
        let user = st
            .auth
            .tokens
            .user(token)
            .ok_or(AuthError::InvalidAuthToken)?;
        Ok(Caller {
            user,
            revision: st.auth.revision,
        })
    }

    /// The caller a verified client certificate's common name stands for
    /// (etcd's `AuthInfoFromTLS`).
    pub fn auth_caller_named(&self, user: &str) -> Caller {
        Caller {
            user: user.to_string(),
            revision: self.state().auth.revision,
        }
    }

    /// Checks a password (etcd's `CheckPassword`); returns the auth
    /// revision it was checked at. Slow (bcrypt): call it off the executor.
    pub fn auth_check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let (hash, revision) = {
            let st = self.state();
            if !st.auth.enabled {
                return Err(AuthError::AuthNotEnabled);
            }
            let u = st.auth.users.get(name).ok_or(AuthError::AuthFailed)?;
            if u.no_password {
                return Err(AuthError::NoPasswordUser);
            }
            (u.password.clone(), st.auth.revision)
        };
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(revision),
            _ => Err(AuthError::AuthFailed),
        }
    }

    /// Whether `caller` may read or write `[key, range_end)` (see
    /// [`crate::auth::perm`]).
    pub fn auth_check(
        &self,
        caller: &Caller,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), AuthError> {
        self.state().auth.check(caller, key, range_end, access)
    }

    pub fn auth_check_txn(&self, caller: &Caller, t: &TxnRequest) -> Result<(), AuthError> {
        self.state().auth.check_txn(caller, t)
    }

    pub fn auth_check_admin(&self, caller: &Caller) -> Result<(), AuthError> {
        self.state().auth.check_admin(caller)
    }

    /// etcd's `UserGet` rules: an administrator, or the user itself.
    pub fn auth_user_get(&self, caller: &Caller, name: &str) -> Result<User, AuthError> {
        let st = self.state();
        if let Err(e) = st.auth.check_admin(caller) {
            if caller.user != name {
                return Err(e);
            }
        }
        st.auth
            .users
            .get(name)
            .cloned()
            .ok_or(AuthError::UserNotFound)
    }

    /// etcd's `RoleGet` rules: an administrator, or a holder of the role.
    pub fn auth_role_get(&self, caller: &Caller, name: &str) -> Result<Role, AuthError> {
        let st = self.state();
        if let Err(e) = st.auth.check_admin(caller) {
            if !st.auth.has_role(&caller.user, name) {
                return Err(e);
            }
        }
        st.auth
            .roles
            .get(name)
            .cloned()
            .ok_or(AuthError::RoleNotFound)
    }

    /// User names in byte order (administrators only).
    pub fn auth_user_list(&self, caller: &Caller) -> Result<Vec<String>, AuthError> {
        let st = self.state();
        st.auth.check_admin(caller)?;
        Ok(st.auth.users.keys().cloned().collect())
    }

    /// Role names in byte order (administrators only).
    pub fn auth_role_list(&self, caller: &Caller) -> Result<Vec<String>, AuthError> {
        let st = self.state();
        st.auth.check_admin(caller)?;
        Ok(st.auth.roles.keys().cloned().collect())
    }
}
