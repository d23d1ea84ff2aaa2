//! etcd's auth buckets in a snapshot file, as etcd 3.4's `auth/store.go`
//! writes them (and `etcdctl snapshot restore` keeps them as they are):
//!
//! - `auth`: `authEnabled` = `[1]` (enabled) or `[0]`, absent until auth
//!   was first enabled; `authRevision` = the auth revision, 8 bytes big
//!   endian (written from the store's creation on, at 1);
//! - `authUsers`: user name → `authpb.User` (name, password = the bcrypt
//!   hash, roles sorted, options with `no_password`);
//! - `authRoles`: role name → `authpb.Role` (name, `keyPermission`: the
//!   `authpb.Permission`s — type, key, range end — sorted by key).
//!
//! Written from and read into core's [`PortableAuth`], so a janus snapshot
//! restored into etcd keeps auth on with the same users, passwords and
//! permissions, and an etcd snapshot restored into janus does too.

use janus_core::auth::{PermType, Permission, Role, User};
use janus_core::backup::PortableAuth;
use prost::Message;

use crate::pb::authpb;

pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";

const ENABLED: &[u8] = b"authEnabled";
const REVISION: &[u8] = b"authRevision";

/// A bucket's entries: (key, value).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The `auth`, `authUsers` and `authRoles` entries of `auth`.
pub fn entries(auth: &PortableAuth) -> [(&'static [u8], Entries); 3] {
    let meta = vec![
        (ENABLED.to_vec(), vec![u8::from(auth.enabled)]),
        (REVISION.to_vec(), auth.revision.to_be_bytes().to_vec()),
    ];
    let users = auth
        .users
        .iter()
        .map(|u| (u.name.as_bytes().to_vec(), user_pb(u).encode_to_vec()))
        .collect();
    let roles = auth
        .roles
        .iter()
        .map(|r| (r.name.as_bytes().to_vec(), role_pb(r).encode_to_vec()))
        .collect();
    [(AUTH, meta), (AUTH_USERS, users), (AUTH_ROLES, roles)]
}

fn user_pb(u: &User) -> authpb::User {
    authpb::User {
        name: u.name.as_bytes().to_vec(),
        password: u.password.as_bytes().to_vec(),
        roles: u.roles.clone(),
        // etcd's UserAdd always stores the options.
        options: Some(authpb::UserAddOptions {
            no_password: u.no_password,
        }),
    }
}

fn role_pb(r: &Role) -> authpb::Role {
    authpb::Role {
        name: r.name.as_bytes().to_vec(),
        key_permission: r
            .perms
            .iter()
            .map(|p| authpb::Permission {
                perm_type: p.perm_type as i32,
                key: p.key.clone(),
                range_end: p.range_end.clone(),
            })
            .collect(),
    }
}

fn text(what: &str, b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|_| format!("{what} is not UTF-8"))
}

/// The auth store held by a file's `auth`, `authUsers` and `authRoles`
/// buckets; `None` when all three are empty (a file with no auth store).
pub fn read(
    meta: &Entries,
    users: &Entries,
    roles: &Entries,
) -> Result<Option<PortableAuth>, String> {
    if meta.is_empty() && users.is_empty() && roles.is_empty() {
        return Ok(None);
    }
    let mut out = PortableAuth::default();
    for (k, v) in meta {
        if k == ENABLED {
            out.enabled = v.as_slice() == [1u8];
        } else if k == REVISION {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| format!("authRevision has {} bytes", v.len()))?;
            out.revision = u64::from_be_bytes(b);
        }
    }
    for (k, v) in users {
        let key = String::from_utf8_lossy(k);
        let u = authpb::User::decode(v.as_slice()).map_err(|e| format!("user {key:?}: {e}"))?;
        let name = text("a user name", u.name)?;
        out.users.push(User {
            password: text(&format!("user {name:?}'s password hash"), u.password)?,
            roles: u.roles,
            no_password: u.options.is_some_and(|o| o.no_password),
            name,
        });
    }
    for (k, v) in roles {
        let key = String::from_utf8_lossy(k);
        let r = authpb::Role::decode(v.as_slice()).map_err(|e| format!("role {key:?}: {e}"))?;
        let name = text("a role name", r.name)?;
        let mut perms = Vec::with_capacity(r.key_permission.len());
        for p in r.key_permission {
            let perm_type = PermType::from_i32(p.perm_type)
                .ok_or_else(|| format!("role {name:?}: unknown permission type {}", p.perm_type))?;
            perms.push(Permission {
                perm_type,
                key: p.key,
                range_end: p.range_end,
            });
        }
        out.roles.push(Role { name, perms });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PortableAuth {
        PortableAuth {
            enabled: true,
            revision: 7,
            users: vec![
                User {
                    name: "alice".into(),
                    password: "$2b$10$abcdefghijklmnopqrstuv".into(),
                    roles: vec!["reader".into(), "root".into()],
                    no_password: false,
                },
                User {
                    name: "svc".into(),
                    password: String::new(),
                    roles: Vec::new(),
                    no_password: true,
                },
            ],
            roles: vec![Role {
                name: "reader".into(),
                perms: vec![
                    Permission {
                        perm_type: PermType::Read,
                        key: b"/app/".to_vec(),
                        range_end: b"/app0".to_vec(),
                    },
                    Permission {
                        perm_type: PermType::ReadWrite,
                        key: b"/tmp".to_vec(),
                        range_end: Vec::new(),
                    },
                ],
            }],
        }
    }

    #[test]
    fn entries_read_back() {
        let a = sample();
        let [(_, meta), (_, users), (_, roles)] = entries(&a);
        assert_eq!(read(&meta, &users, &roles), Ok(Some(a)));
        assert_eq!(read(&vec![], &vec![], &vec![]), Ok(None));
    }

    #[test]
    fn flag_and_revision_are_etcds_bytes() {
        let [(name, meta), _, _] = entries(&sample());
        assert_eq!(name, b"auth");
        assert_eq!(
            meta,
            vec![
                (b"authEnabled".to_vec(), vec![1]),
                (b"authRevision".to_vec(), vec![0, 0, 0, 0, 0, 0, 0, 7]),
            ]
        );
    }

    #[test]
    fn bad_records_are_errors() {
        let bad_rev = vec![(b"authRevision".to_vec(), vec![1, 2])];
        assert!(read(&bad_rev, &vec![], &vec![]).is_err());
        let bad_user = vec![(b"u".to_vec(), vec![0xff, 0xff])];
        assert!(read(&vec![], &bad_user, &vec![]).is_err());
        let bad_type = authpb::Role {
            name: b"r".to_vec(),
            key_permission: vec![authpb::Permission {
                perm_type: 9,
                key: b"k".to_vec(),
                range_end: Vec::new(),
            }],
        };
        let roles = vec![(b"r".to_vec(), bad_type.encode_to_vec())];
        assert!(read(&vec![], &vec![], &roles).is_err());
    }
}
