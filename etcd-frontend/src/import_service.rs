//! janus's own Import service (`proto/janus/import.proto`): the target side
//! of `janus migrate`. It only translates: core's import commands
//! ([`janus_core::import`]) decide every rule (lock, empty store, revisions,
//! ACLs) and apply through the raft log; this service adds the one check
//! etcd's API layer makes on any write, the request size, per item, so an
//! oversized node is named before anything of its batch is written. With
//! etcd auth enabled only the root role may import, as for Maintenance.

use janus_core::import::{ImportBatch, ImportError, ImportItem, ImportKey, ImportOp};
use janus_core::znode::{Acl, Id, NodeKind, ZMeta};
use janus_core::{Command, CommandResult};
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::pb::migration as pb;
use crate::status::ApiError;

#[derive(Clone)]
pub struct ImportService(pub Shared);

impl ImportService {
    async fn run(&self, op: ImportOp) -> Result<pb::ImportResponse, Status> {
        crate::caller::require_admin(&self.0).await?;
        let applied = self
            .0
            .node
            .propose(Command::Import(op))
            .await
            .map_err(ApiError::from)?;
        match applied.result {
            CommandResult::Import(Ok(r)) => Ok(pb::ImportResponse {
                revision: r.revision,
                applied: r.applied,
                skipped: r.skipped,
            }),
            CommandResult::Import(Err(e)) => Err(import_status(&e)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    /// The core batch of a request; `Err` names the bad item.
    fn batch(&self, b: pb::Batch) -> Result<ImportBatch, String> {
        let limit = self.0.cfg.max_request_bytes;
        let mut items = Vec::with_capacity(b.items.len());
        for item in b.items {
            items.push(match item.kind {
                Some(pb::item::Kind::Put(k)) => {
                    let size = k.key.len() + k.value.len();
                    if size > limit {
                        return Err(format!(
                            "{}: {size} bytes, above the target's limit of {limit} bytes (--max-request-bytes)",
                            String::from_utf8_lossy(&k.key)
                        ));
                    }
                    ImportItem::Put(key(k)?)
                }
                Some(pb::item::Kind::Delete(d)) => ImportItem::Delete {
                    key: d.key,
                    revision: d.revision,
                },
                Some(pb::item::Kind::Tree(c)) => ImportItem::Tree {
                    path: c.path,
                    creates: c.creates,
                    pzxid: c.pzxid,
                },
                None => return Err("import item without a kind".into()),
            });
        }
        Ok(ImportBatch {
            revision: b.revision,
            explicit_tree: b.explicit_tree,
            items,
        })
    }
}

fn key(k: pb::Key) -> Result<ImportKey, String> {
    let znode = match k.znode {
        None => None,
        Some(z) => Some(ZMeta {
            acl: z
                .acl
                .into_iter()
                .map(|a| Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: a.scheme,
                        id: a.id,
                    },
                })
                .collect(),
            aversion: z.aversion,
            kind: match pb::znode::Kind::try_from(z.kind) {
                Ok(pb::znode::Kind::Normal) => NodeKind::Normal,
                Ok(pb::znode::Kind::Container) => NodeKind::Container,
                Ok(pb::znode::Kind::Ttl) => NodeKind::Ttl(z.ttl_ms),
                Err(_) => {
                    return Err(format!(
                        "{}: unknown znode kind {}",
                        String::from_utf8_lossy(&k.key),
                        z.kind
                    ))
                }
            },
        }),
    };
    Ok(ImportKey {
        value: (!k.null_value).then_some(k.value),
        key: k.key,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        lease: k.lease,
        ctime: k.ctime,
        mtime: k.mtime,
        znode,
        tree: k.tree.map(|c| (c.creates, c.pzxid)),
    })
}

/// The gRPC status of a refused import op: the core's text, a code saying
/// whether retrying can help.
fn import_status(e: &ImportError) -> Status {
    match e {
        ImportError::NotEmpty { .. } | ImportError::Locked { .. } | ImportError::NotLocked => {
            Status::failed_precondition(e.to_string())
        }
        ImportError::BadItem { .. } => Status::invalid_argument(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::import_server::Import for ImportService {
    async fn status(
        &self,
        _r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        crate::caller::require_admin(&self.0).await?;
        self.0.node.read_barrier().await.map_err(ApiError::from)?;
        let st = self.0.node.import_status();
        Ok(Response::new(pb::StatusResponse {
            revision: st.revision,
            live_keys: st.live_keys,
            locked: st.lock.is_some(),
            source: st
                .lock
                .as_ref()
                .map(|l| l.source.clone())
                .unwrap_or_default(),
            base_revision: st.lock.as_ref().map_or(0, |l| l.base),
            max_item_bytes: self.0.cfg.max_request_bytes as u64,
        }))
    }

    async fn begin(
        &self,
        r: Request<pb::BeginRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.run(ImportOp::Begin {
                source: r.source,
                force: r.force,
            })
            .await?,
        ))
    }

    async fn apply(&self, r: Request<pb::Batch>) -> Result<Response<pb::ImportResponse>, Status> {
        let b = self
            .batch(r.into_inner())
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(self.run(ImportOp::Batch(b)).await?))
    }

    async fn end(
        &self,
        _r: Request<pb::EndRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        Ok(Response::new(self.run(ImportOp::End).await?))
    }

    async fn kinds(
        &self,
        r: Request<pb::KindsRequest>,
    ) -> Result<Response<pb::KindsResponse>, Status> {
        crate::caller::require_admin(&self.0).await?;
        self.0.node.read_barrier().await.map_err(ApiError::from)?;
        let nodes = self
            .0
            .node
            .special_kinds(&r.into_inner().prefix)
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(path, kind)| {
                let (kind, ttl_ms) = match kind {
                    NodeKind::Normal => (pb::znode::Kind::Normal, 0),
                    NodeKind::Container => (pb::znode::Kind::Container, 0),
                    NodeKind::Ttl(t) => (pb::znode::Kind::Ttl, t),
                };
                pb::NodeKind {
                    path,
                    kind: kind as i32,
                    ttl_ms,
                }
            })
            .collect();
        Ok(Response::new(pb::KindsResponse { nodes }))
    }
}
