//! The auth data: users, roles, the enabled flag and the auth revision, as
//! etcd keeps them in its `auth`, `authUsers` and `authRoles` buckets, here
//! in the `meta` keyspace under `auth/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tokens::Tokens;
use super::ROOT;
use crate::engine::{Batch, Engine, Space};
use crate::CoreError;

const ENABLED: &[u8] = b"auth/enabled";
const REVISION: &[u8] = b"auth/revision";
const USER: &[u8] = b"auth/user/";
const ROLE: &[u8] = b"auth/role/";

/// etcd's `authpb.Permission.Type` (same numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermType {
    Read = 0,
    Write = 1,
    ReadWrite = 2,
}

impl PermType {
    pub fn from_i32(v: i32) -> Option<PermType> {
        match v {
            0 => Some(PermType::Read),
            1 => Some(PermType::Write),
            2 => Some(PermType::ReadWrite),
            _ => None,
        }
    }
    pub fn reads(self) -> bool {
        matches!(self, PermType::Read | PermType::ReadWrite)
    }
    pub fn writes(self) -> bool {
        matches!(self, PermType::Write | PermType::ReadWrite)
    }
}

/// One key permission of a role: `range_end` empty is the single `key`,
/// `[0]` every key from `key` on, otherwise `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub perm_type: PermType,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// bcrypt hash; empty for a no-password user.
    pub password: String,
    /// Sorted, as etcd keeps them (so `root` is found by binary search).
    pub roles: Vec<String>,
    pub no_password: bool,
}

impl User {
    pub fn has_root(&self) -> bool {
        self.roles
            .binary_search_by(|r| r.as_str().cmp(ROOT))
            .is_ok()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// Sorted by key, as etcd's `permSlice`.
    pub perms: Vec<Permission>,
}

/// The auth store of the state machine.
#[derive(Debug, Default)]
pub struct AuthStore {
    pub enabled: bool,
    /// etcd's auth revision: 1 for a new store, +1 on every change of
    /// users, roles or permissions and on AuthDisable.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    /// Simple tokens issued (member-local, never persisted, as in etcd).
    pub tokens: Tokens,
}

fn corrupt(engine: &Engine, what: String) -> CoreError {
    CoreError::Corrupt {
        path: engine.dir().join("meta"),
        what,
    }
}

fn prefixed(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap_or_default()
}

impl AuthStore {
    /// Reads the store back; a data dir without one gets a new store at
    /// revision 1 (etcd's `NewAuthStore`).
    pub fn load(engine: &Engine) -> Result<AuthStore, CoreError> {
        let mut st = AuthStore {
            enabled: engine.get(Space::Meta, ENABLED)?.as_deref() == Some(&[1u8][..]),
            revision: 1,
            ..Default::default()
        };
        if let Some(v) = engine.get(Space::Meta, REVISION)? {
            let arr: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(engine, format!("auth revision has {} bytes", v.len())))?;
            st.revision = u64::from_be_bytes(arr);
        }
        for (prefix, is_user) in [(USER, true), (ROLE, false)] {
            let mut end = prefix.to_vec();
            end.push(0xff);
            for item in engine.scan(Space::Meta, prefix.to_vec()..end, false) {
                let (k, v) = item?;
                let what = || String::from_utf8_lossy(&k).into_owned();
                if is_user {
                    let u: User = postcard::from_bytes(&v)
                        .map_err(|e| corrupt(engine, format!("{}: {e}", what())))?;
                    st.users.insert(u.name.clone(), u);
                } else {
                    let r: Role = postcard::from_bytes(&v)
                        .map_err(|e| corrupt(engine, format!("{}: {e}", what())))?;
                    st.roles.insert(r.name.clone(), r);
                }
            }
        }
        Ok(st)
    }

    pub(crate) fn put_user(&mut self, b: &mut Batch, u: User) {
        b.put(Space::Meta, prefixed(USER, &u.name), encode(&u));
        self.users.insert(u.name.clone(), u);
    }

    pub(crate) fn del_user(&mut self, b: &mut Batch, name: &str) {
        b.remove(Space::Meta, prefixed(USER, name));
        self.users.remove(name);
    }

    pub(crate) fn put_role(&mut self, b: &mut Batch, r: Role) {
        b.put(Space::Meta, prefixed(ROLE, &r.name), encode(&r));
        self.roles.insert(r.name.clone(), r);
    }

    pub(crate) fn del_role(&mut self, b: &mut Batch, name: &str) {
        b.remove(Space::Meta, prefixed(ROLE, name));
        self.roles.remove(name);
    }

    pub(crate) fn set_enabled(&mut self, b: &mut Batch, on: bool) {
        b.put(Space::Meta, ENABLED.to_vec(), vec![u8::from(on)]);
        self.enabled = on;
    }

    /// etcd's `commitRevision`.
    pub(crate) fn bump_revision(&mut self, b: &mut Batch) {
        self.revision += 1;
        b.put(
            Space::Meta,
            REVISION.to_vec(),
            self.revision.to_be_bytes().to_vec(),
        );
    }

    /// Whether `user` has `role` (etcd's `HasRole`).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}
