//! Backups in core's own terms, for file formats that live elsewhere (the
//! etcd frontend writes and reads etcd's bbolt snapshot file): a
//! consistent copy of a member's state ([`Backup`], from
//! [`crate::Node::backup`]) and the writing of a fresh data directory from
//! one ([`restore`]), as `etcdutl snapshot restore` writes a member's.
//!
//! A backup holds every exported keyspace record as is (`raw`), which a
//! janus restore puts back exactly, and decodes the MVCC history, leases
//! and the auth store into format-free values ([`PortableKv`],
//! [`PortableLease`], [`PortableAuth`]) that another store's layout can
//! carry. A restore from another store (etcd) has only those: znodes come
//! back as the implicit znodes an etcd write makes, and the auth store
//! (users, roles, the enabled flag and auth revision) as it was, as
//! etcd's own restore keeps it.
//!
//! A restored directory is a new cluster's member: the member list, the
//! applied index and the duplicate-proposal windows of the old cluster are
//! left out, so the member bootstraps raft afresh from its
//! `--initial-cluster` (every member restored from the same file holds the
//! same state) and revisions continue from the backup's. The whole backup
//! is held in memory.

use std::path::Path;
use std::sync::Arc;

use crate::auth::{AuthStore, Role, User};
use crate::engine::{Engine, Space, View};
use crate::mvcc::{Record, Rev};
use crate::CoreError;

/// One MVCC record: etcd's revision `main`/`sub`, a tombstone or a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortableKv {
    pub main: i64,
    pub sub: i64,
    pub tombstone: bool,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// A lease (ZooKeeper session) with its granted TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortableLease {
    pub id: i64,
    pub ttl_secs: i64,
}

/// etcd's auth store in format-free terms (etcd keeps it in its `auth`,
/// `authUsers` and `authRoles` buckets): the enabled flag, the auth
/// revision, users (with their bcrypt password hashes) and roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortableAuth {
    pub enabled: bool,
    pub revision: u64,
    /// By name.
    pub users: Vec<User>,
    /// By name.
    pub roles: Vec<Role>,
}

/// A consistent copy of a member's state.
#[derive(Clone, Debug, Default)]
pub struct Backup {
    /// Raft index the copy reflects (etcd's consistent index).
    pub applied_index: u64,
    pub revision: i64,
    pub compact_revision: i64,
    /// Every exported record: (keyspace tag, key, value); the tag is the
    /// keyspace's place in [`Space::EXPORTED`].
    pub raw: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

fn is_member_local(space: Space, key: &[u8]) -> bool {
    space == Space::Meta
        && [
            &b"raft_"[..],
            b"member/",
            b"dedup/",
            crate::state::META_APPLIED,
        ]
        .iter()
        .any(|p| key.starts_with(p))
}

impl Backup {
    /// Takes the copy from `view`; the caller took the view and the numbers
    /// under one state lock, so that they agree, and reads the view after
    /// releasing it (writes go on during the copy).
    pub(crate) fn take(
        view: &View,
        applied_index: u64,
        revision: i64,
        compact_revision: i64,
    ) -> Result<Backup, CoreError> {
        let mut raw = Vec::new();
        for (tag, space) in Space::EXPORTED.iter().enumerate() {
            for item in view.scan_all(*space) {
                let (k, v) = item?;
                if !(*space == Space::Meta && k.starts_with(b"raft_")) {
                    raw.push((tag as u8, k, v));
                }
            }
        }
        Ok(Backup {
            applied_index,
            revision,
            compact_revision,
            raw,
        })
    }

    fn space_tag(s: Space) -> u8 {
        Space::EXPORTED.iter().position(|x| *x == s).unwrap_or(0) as u8
    }

    /// The MVCC history, in revision order.
    pub fn kvs(&self) -> Result<Vec<PortableKv>, CoreError> {
        let tag = Self::space_tag(Space::Revs);
        let bad = |what: String| CoreError::Corrupt {
            path: "backup".into(),
            what,
        };
        self.raw
            .iter()
            .filter(|(t, _, _)| *t == tag)
            .map(|(_, k, v)| {
                let rev = Rev::from_bytes(k).ok_or_else(|| bad("bad revision key".into()))?;
                let r = Record::decode(v).map_err(|e| bad(format!("record {rev:?}: {e}")))?;
                Ok(PortableKv {
                    main: rev.main,
                    sub: i64::from(rev.sub),
                    tombstone: r.tombstone,
                    key: r.key,
                    value: r.value,
                    create_revision: r.create_revision,
                    version: r.version,
                    lease: r.lease,
                })
            })
            .collect()
    }

    /// The leases, by id.
    pub fn leases(&self) -> Result<Vec<PortableLease>, CoreError> {
        let tag = Self::space_tag(Space::Leases);
        self.raw
            .iter()
            .filter(|(t, _, _)| *t == tag)
            .map(|(_, k, v)| {
                let bad = |what: String| CoreError::Corrupt {
                    path: "backup".into(),
                    what,
                };
                let id = i64::from_be_bytes(
                    k.as_slice()
                        .try_into()
                        .map_err(|_| bad("bad lease key".into()))?,
                );
                let rec = crate::state::LeaseRecord::decode(v)
                    .map_err(|e| bad(format!("lease {id}: {e}")))?;
                Ok(PortableLease {
                    id,
                    ttl_secs: crate::lease::ttl_secs(rec.ttl_ms),
                })
            })
            .collect()
    }

    /// The auth store, decoded from the copy's `meta` records.
    pub fn auth(&self) -> Result<PortableAuth, CoreError> {
        let tag = Self::space_tag(Space::Meta);
        let records = self
            .raw
            .iter()
            .filter(|(t, k, _)| *t == tag && k.starts_with(crate::auth::store::PREFIX))
            .map(|(_, k, v)| (k.clone(), v.clone()));
        let st = AuthStore::from_records(records).map_err(|what| CoreError::Corrupt {
            path: "backup".into(),
            what,
        })?;
        Ok(PortableAuth {
            enabled: st.enabled,
            revision: st.revision,
            users: st.users.into_values().collect(),
            roles: st.roles.into_values().collect(),
        })
    }
}

/// The auth store a restore from another store's file writes: users'
/// roles sorted and without repeats and roles' permissions sorted by key
/// (the orders the permission checks rely on, [`crate::auth::perm`]),
/// revision at least 1 (etcd's `NewAuthStore` starts there).
fn auth_store_of(auth: PortableAuth) -> AuthStore {
    let mut st = AuthStore {
        enabled: auth.enabled,
        revision: auth.revision.max(1),
        ..Default::default()
    };
    for mut u in auth.users {
        u.roles.sort();
        u.roles.dedup();
        st.users.insert(u.name.clone(), u);
    }
    for mut r in auth.roles {
        r.perms.sort_by(|a, b| a.key.cmp(&b.key));
        st.roles.insert(r.name.clone(), r);
    }
    st
}

/// What a restore starts from.
pub enum Source {
    /// A janus backup: every record as it was.
    Janus(Backup),
    /// Another store's MVCC history, leases and auth store (etcd's
    /// snapshot file); `auth: None` leaves a new, disabled auth store.
    Portable {
        kvs: Vec<PortableKv>,
        leases: Vec<PortableLease>,
        compact_revision: i64,
        auth: Option<PortableAuth>,
    },
}

/// What [`restore`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub revision: i64,
    pub keys: usize,
    pub leases: usize,
}

/// Writes a fresh member data directory `dir` from a backup; `dir` must not
/// exist yet (etcdutl refuses an existing data dir too).
pub fn restore(dir: &Path, source: Source) -> Result<Restored, CoreError> {
    if dir.exists() {
        return Err(CoreError::storage(
            dir,
            "data dir already exists; restore writes a new one",
        ));
    }
    let engine = Arc::new(Engine::open(dir)?);
    let mut batch = engine.batch();
    let mut revision = 1i64;
    let (mut keys, mut leases) = (0usize, 0usize);
    match source {
        Source::Janus(b) => {
            for (tag, k, v) in b.raw {
                let space =
                    *Space::EXPORTED
                        .get(tag as usize)
                        .ok_or_else(|| CoreError::Corrupt {
                            path: "backup".into(),
                            what: format!("bad keyspace tag {tag}"),
                        })?;
                if is_member_local(space, &k) {
                    continue;
                }
                match space {
                    Space::Revs => keys += 1,
                    Space::Leases => leases += 1,
                    _ => {}
                }
                batch.put(space, k, v);
            }
            revision = b.revision.max(1);
        }
        Source::Portable {
            kvs,
            leases: ls,
            compact_revision,
            auth,
        } => {
            if let Some(auth) = auth {
                auth_store_of(auth).write_all(&mut batch);
            }
            for kv in kvs {
                revision = revision.max(kv.main);
                let sub = u32::try_from(kv.sub).map_err(|_| CoreError::Corrupt {
                    path: "backup".into(),
                    what: format!("sub revision {} out of range", kv.sub),
                })?;
                let rec = Record {
                    key: kv.key,
                    value: kv.value,
                    create_revision: kv.create_revision,
                    version: kv.version,
                    lease: kv.lease,
                    ctime: 0,
                    mtime: 0,
                    tombstone: kv.tombstone,
                    null_data: false,
                };
                batch.put(Space::Revs, Rev::new(kv.main, sub).to_bytes(), rec.encode());
                keys += 1;
            }
            for l in ls {
                let rec = crate::state::LeaseRecord {
                    ttl_ms: l.ttl_secs.saturating_mul(1000),
                    zk_fifo: Default::default(),
                };
                let v =
                    postcard::to_stdvec(&rec).map_err(|e| CoreError::Encoding(e.to_string()))?;
                batch.put(Space::Leases, l.id.to_be_bytes().to_vec(), v);
                leases += 1;
            }
            revision = revision.max(compact_revision);
            if compact_revision > 0 {
                batch.put(
                    Space::Meta,
                    crate::state::META_COMPACT.to_vec(),
                    (compact_revision as u64).to_be_bytes().to_vec(),
                );
            }
            batch.put(
                Space::Meta,
                crate::state::META_REVISION.to_vec(),
                (revision as u64).to_be_bytes().to_vec(),
            );
        }
    }
    engine.commit(batch)?;
    engine.sync()?;
    // Loading checks what was written decodes as a state machine.
    let st = crate::state::State::load(Arc::clone(&engine))?;
    Ok(Restored {
        revision: st.revision.max(revision),
        keys,
        leases,
    })
}
