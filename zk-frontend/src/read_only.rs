//! Read-only mode (ZooKeeper's `readonlymode.enabled`, `--zk-read-only`):
//! a member cut off from the majority keeps serving reads to clients whose
//! ConnectRequest said `canBeReadOnly`, from its local state, as
//! ZooKeeper's ReadOnlyZooKeeperServer does.
//!
//! - The session is local: a fake id (no lease, so nothing it does reaches
//!   the log), the ConnectResponse's readOnly flag set, pings answered
//!   without a keepalive.
//! - What ZooKeeper's ReadOnlyRequestProcessor refuses is refused here
//!   with NotReadOnly: every write, `sync` and `reconfig`; closeSession only
//!   closes the connection.
//! - When the member can reach a quorum again the connection closes (the
//!   client reconnects read-write), and `isro` answers `rw` again.

use std::time::Duration;

use janus_core::{CoreError, Node};

use crate::cmd::Reply;
use crate::proto::{code, ConnectRequest, Request};
use crate::ZkConfig;

/// Longest a read-only-capable client's connect waits to learn whether
/// the member reaches a quorum (a client's connect timeout is its session
/// timeout divided among its servers, a few seconds).
const QUORUM_CHECK: Duration = Duration::from_secs(1);

/// Whether this connection may get a read-only session.
pub fn allowed(cfg: &ZkConfig, creq: &ConnectRequest) -> bool {
    cfg.read_only && creq.read_only == Some(true)
}

/// The connect-time barrier: a full one, or for a client that may go
/// read-only one that fails fast without a leader.
pub async fn barrier(node: &Node, may_be_read_only: bool) -> Result<(), CoreError> {
    if !may_be_read_only {
        return node.read_barrier().await;
    }
    if node.leader() == 0 {
        return Err(CoreError::NotLeader);
    }
    match tokio::time::timeout(QUORUM_CHECK, node.read_barrier()).await {
        Ok(r) => r,
        Err(_) => Err(CoreError::Timeout),
    }
}

/// A fresh local session id: positive, as session ids are (D4).
pub fn session_id() -> i64 {
    (rand::random::<i64>() & i64::MAX).max(1)
}

/// The answer a read-only session gets without running the request, or
/// `None` for a request it may run (reads, watches, pings, auth).
pub fn answer(node: &Node, req: &Request) -> Option<Reply> {
    match req {
        Request::Create { .. }
        | Request::Delete { .. }
        | Request::SetData { .. }
        | Request::SetAcl { .. }
        | Request::Check { .. }
        | Request::Multi(_)
        | Request::Sync { .. }
        | Request::Reconfig { .. } => Some(Reply::err(node.revision(), code::NOT_READ_ONLY)),
        Request::CloseSession => Some(Reply {
            zxid: node.revision(),
            err: code::OK,
            body: None,
            close: true,
        }),
        _ => None,
    }
}

/// `isro`: `ro` while serving read-only, `rw` while serving read-write,
/// `null` when not serving at all.
pub fn isro(node: &Node, cfg: &ZkConfig) -> &'static str {
    if janus_core::health::serving(node) {
        "rw"
    } else if cfg.read_only {
        "ro"
    } else {
        "null"
    }
}
