//! Applying auth commands and permission-checked etcd writes (etcd's
//! `authApplierV3` and `authStore` mutations). Every check reads the state
//! at apply time, so a write proposed before a permission was revoked is
//! refused if it applies after.

use std::time::Duration;

use super::perm::Access;
use super::store::{Permission, Role, User};
use super::{AuthError, AuthOp, AuthReply, Caller, ROOT};
use crate::command::{Command, CommandResult};
use crate::state::{State, Wtx};
use crate::{CoreError, KvError};

impl State {
    /// An auth command from `caller` at raft index `index`.
    pub(crate) fn apply_auth(
        &mut self,
        w: &mut Wtx,
        caller: &Caller,
        op: &AuthOp,
        index: u64,
    ) -> Result<AuthReply, AuthError> {
        if op.needs_admin() {
            self.auth.check_admin(caller)?;
        }
        let a = &mut self.auth;
        let b = &mut w.batch;
        match op {
            AuthOp::Enable => {
                if a.enabled {
                    return Ok(AuthReply::Done);
                }
                let root = a.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.has_root() {
                    return Err(AuthError::RootRoleNotExist);
                }
                a.set_enabled(b, true);
            }
            AuthOp::Disable => {
                if !a.enabled {
                    return Ok(AuthReply::Done);
                }
                a.set_enabled(b, false);
                a.bump_revision(b);
                a.tokens.clear();
            }
            AuthOp::Authenticate {
                name,
                prefix,
                ttl_ms,
            } => {
                if !a.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                let user = a.users.get(name).ok_or(AuthError::AuthFailed)?;
                if user.no_password {
                    return Err(AuthError::AuthFailed);
                }
                // No prefix: a signed-token member issues the token itself.
                if prefix.is_empty() {
                    return Ok(AuthReply::Token(String::new()));
                }
                let token = format!("{prefix}.{index}");
                a.tokens
                    .assign(token.clone(), name, Duration::from_millis(*ttl_ms));
                return Ok(AuthReply::Token(token));
            }
            AuthOp::UserAdd { name, hash } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if a.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let u = User {
                    name: name.clone(),
                    password: hash.clone().unwrap_or_default(),
                    roles: Vec::new(),
                    no_password: hash.is_none(),
                };
                a.put_user(b, u);
                a.bump_revision(b);
            }
            AuthOp::UserDelete { name } => {
                if a.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if !a.users.contains_key(name) {
                    return Err(AuthError::UserNotFound);
                }
                a.del_user(b, name);
                a.bump_revision(b);
                a.tokens.invalidate_user(name);
            }
            AuthOp::UserChangePassword { name, hash } => {
                let mut u = a.users.get(name).cloned().ok_or(AuthError::UserNotFound)?;
                u.password = hash.clone();
                a.put_user(b, u);
                a.bump_revision(b);
                a.tokens.invalidate_user(name);
            }
            AuthOp::UserGrantRole { user, role } => {
                let mut u = a.users.get(user).cloned().ok_or(AuthError::UserNotFound)?;
                if role != ROOT && !a.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
                match u.roles.binary_search(role) {
                    Ok(_) => return Ok(AuthReply::Done),
                    Err(at) => u.roles.insert(at, role.clone()),
                }
                a.put_user(b, u);
                a.bump_revision(b);
            }
            AuthOp::UserRevokeRole { name, role } => {
                if a.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let mut u = a.users.get(name).cloned().ok_or(AuthError::UserNotFound)?;
                let before = u.roles.len();
                u.roles.retain(|r| r != role);
                if u.roles.len() == before {
                    return Err(AuthError::RoleNotGranted);
                }
                a.put_user(b, u);
                a.bump_revision(b);
            }
            AuthOp::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if a.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                a.put_role(
                    b,
                    Role {
                        name: name.clone(),
                        perms: Vec::new(),
                    },
                );
                a.bump_revision(b);
            }
            AuthOp::RoleDelete { name } => {
                if a.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if !a.roles.contains_key(name) {
                    return Err(AuthError::RoleNotFound);
                }
                a.del_role(b, name);
                let holders: Vec<User> = a
                    .users
                    .values()
                    .filter(|u| u.roles.iter().any(|r| r == name))
                    .cloned()
                    .collect();
                for mut u in holders {
                    u.roles.retain(|r| r != name);
                    a.put_user(b, u);
                }
                a.bump_revision(b);
            }
            AuthOp::RoleGrantPermission { name, perm } => {
                let mut r = a.roles.get(name).cloned().ok_or(AuthError::RoleNotFound)?;
                // etcd's sort.Search on the key, then an exact match of key
                // and range end updates the type in place.
                let at = r.perms.partition_point(|p| p.key < perm.key);
                match r.perms.get_mut(at) {
                    Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                        p.perm_type = perm.perm_type;
                    }
                    _ => {
                        r.perms.push(Permission {
                            perm_type: perm.perm_type,
                            key: perm.key.clone(),
                            range_end: perm.range_end.clone(),
                        });
                        // Stable, as Go's sort.Sort is not; equal keys keep
                        // insertion order.
                        r.perms.sort_by(|x, y| x.key.cmp(&y.key));
                    }
                }
                a.put_role(b, r);
                a.bump_revision(b);
            }
            AuthOp::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let mut r = a.roles.get(role).cloned().ok_or(AuthError::RoleNotFound)?;
                let before = r.perms.len();
                r.perms
                    .retain(|p| !(p.key == *key && p.range_end == *range_end));
                if r.perms.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                a.put_role(b, r);
                a.bump_revision(b);
            }
        }
        Ok(AuthReply::Done)
    }

    /// The permission checks of an etcd write sent by `caller` (etcd's
    /// `authApplierV3`): `Err` refuses the whole command.
    pub(crate) fn check_write(&self, caller: &Caller, cmd: &Command) -> Result<(), AuthError> {
        let a = &self.auth;
        match cmd {
            Command::Put(r) => {
                a.check(caller, &r.key, &[], Access::Write)?;
                // A lease already holding a key the caller cannot write
                // could not be revoked by it: attaching to it is refused.
                self.check_lease_keys(caller, r.lease)?;
                if r.prev_kv {
                    a.check(caller, &r.key, &[], Access::Read)?;
                }
                Ok(())
            }
            Command::DeleteRange(r) => {
                a.check(caller, &r.key, &r.range_end, Access::Write)?;
                if r.prev_kv {
                    a.check(caller, &r.key, &r.range_end, Access::Read)?;
                }
                Ok(())
            }
            Command::Txn(t) => a.check_txn(caller, t),
            Command::LeaseRevoke { id } => self.check_lease_keys(caller, *id),
            _ => Ok(()),
        }
    }

    /// Write permission on every key attached to lease `id` (etcd's
    /// `checkLeasePuts`).
    fn check_lease_keys(&self, caller: &Caller, id: i64) -> Result<(), AuthError> {
        if let Some(l) = self.leases.get(&id) {
            for k in &l.keys {
                self.auth.check(caller, k, &[], Access::Write)?;
            }
        }
        Ok(())
    }

    /// An etcd write (`Put`, `DeleteRange`, `Txn`, `LeaseRevoke`) sent by
    /// `caller`: checked, then applied as if unwrapped. A refusal is the
    /// inner command's kind of result with [`KvError::Auth`].
    pub(crate) fn apply_as(
        &mut self,
        w: &mut Wtx,
        caller: &Caller,
        cmd: &Command,
        index: u64,
    ) -> Result<CommandResult, CoreError> {
        if let Err(e) = self.check_write(caller, cmd) {
            let e = KvError::Auth(e);
            return Ok(match cmd {
                Command::Put(_) => CommandResult::Put(Err(e)),
                Command::DeleteRange(_) => CommandResult::DeleteRange(Err(e)),
                Command::Txn(_) => CommandResult::Txn(Err(e)),
                Command::LeaseRevoke { .. } => CommandResult::LeaseRevoke(Err(e)),
                _ => CommandResult::Auth(Err(match e {
                    KvError::Auth(a) => a,
                    _ => AuthError::PermissionDenied,
                })),
            });
        }
        match cmd {
            // One level only: nothing sends a wrapped wrapper or auth op.
            Command::As { .. } | Command::Auth { .. } => {
                Ok(CommandResult::Auth(Err(AuthError::InvalidAuthMgmt)))
            }
            other => self.apply_command(w, other, index),
        }
    }
}
