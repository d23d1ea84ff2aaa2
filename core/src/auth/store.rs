//! The auth data: users, roles, the enabled flag and the auth revision, as
//! etcd keeps them in its `auth`, `authUsers` and `authRoles` buckets, here
//! in the `meta` keyspace under `auth/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tokens::Tokens;
use super::ROOT;
use crate::engine::{Batch, Engine, Space};
use crate::CoreError;

/// Every key of the store (in the `meta` keyspace) starts with this.
pub(crate) const PREFIX: &[u8] = b"auth/";
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
        let mut end = PREFIX.to_vec();
        end.push(0xff);
        let mut records = Vec::new();
        for item in engine.scan(Space::Meta, PREFIX.to_vec()..end, false) {
            records.push(item?);
        }
        AuthStore::from_records(records).map_err(|what| corrupt(engine, what))
    }

    /// A store from its records in the `meta` keyspace (every key under
    /// `auth/`; other keys are ignored): what [`AuthStore::load`] reads
    /// from the engine and a backup holds ([`crate::backup`]). Without
    /// records it is a new store at revision 1.
    pub fn from_records(
        records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<AuthStore, String> {
        let mut st = AuthStore {
            revision: 1,
            ..Default::default()
        };
        for (k, v) in records {
            let what = || String::from_utf8_lossy(&k).into_owned();
            if k == ENABLED {
                st.enabled = v == [1u8];
            } else if k == REVISION {
                let arr: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| format!("auth revision has {} bytes", v.len()))?;
                st.revision = u64::from_be_bytes(arr);
            } else if k.starts_with(USER) {
                let u: User = postcard::from_bytes(&v).map_err(|e| format!("{}: {e}", what()))?;
                st.users.insert(u.name.clone(), u);
            } else if k.starts_with(ROLE) {
                let r: Role = postcard::from_bytes(&v).map_err(|e| format!("{}: {e}", what()))?;
                st.roles.insert(r.name.clone(), r);
            }
        }
        Ok(st)
    }

    /// Writes the whole persistent store (flag, revision, users, roles)
    /// into `b`, for a data dir that has none yet (a restore). Tokens are
    /// member-local and not written.
    pub(crate) fn write_all(&self, b: &mut Batch) {
        b.put(Space::Meta, ENABLED.to_vec(), vec![u8::from(self.enabled)]);
        b.put(
            Space::Meta,
            REVISION.to_vec(),
            self.revision.to_be_bytes().to_vec(),
        );
        for u in self.users.values() {
            b.put(Space::Meta, prefixed(USER, &u.name), encode(u));
        }
        for r in self.roles.values() {
            b.put(Space::Meta, prefixed(ROLE, &r.name), encode(r));
        }
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
