//! One file per group of opcodes: each turns a decoded [`Request`] into core
//! calls and a [`Reply`]. [`error_code`] is the single place where core's
//! outcomes become KeeperException codes.

pub mod read;
pub mod reconfig;
pub mod session;
pub mod system;
pub mod watch;
pub mod write;

use bytes::BytesMut;
use janus_core::znode::Id;
use janus_core::{CoreError, Node, ZkError};

use crate::proto::{code, Request};
use crate::watches::WatchTable;
use crate::ZkConfig;

/// KeeperException code of a core outcome: the one mapping of the crate.
pub fn error_code(e: ZkError) -> i32 {
    match e {
        ZkError::NoNode => code::NO_NODE,
        ZkError::NodeExists => code::NODE_EXISTS,
        ZkError::BadVersion => code::BAD_VERSION,
        ZkError::NotEmpty => code::NOT_EMPTY,
        ZkError::NoChildrenForEphemerals => code::NO_CHILDREN_FOR_EPHEMERALS,
        ZkError::NoAuth => code::NO_AUTH,
        ZkError::InvalidAcl => code::INVALID_ACL,
        ZkError::BadArguments => code::BAD_ARGUMENTS,
        ZkError::RuntimeInconsistency => code::RUNTIME_INCONSISTENCY,
        ZkError::SessionExpired => code::SESSION_EXPIRED,
        ZkError::Unimplemented => code::UNIMPLEMENTED,
        ZkError::OutOfOrder => code::CONNECTION_LOSS,
        // A migration holds janus: refused as a read-only server refuses.
        ZkError::MigrationInProgress => code::NOT_READ_ONLY,
        ZkError::QuotaExceeded => code::QUOTA_EXCEEDED,
        ZkError::SystemError => code::SYSTEM_ERROR,
    }
}

/// What one connection's request handlers may read and change.
pub struct Ctx<'a> {
    pub node: &'a Node,
    pub cfg: &'a ZkConfig,
    /// Session id (= lease id).
    pub session: i64,
    /// Identities of the connection: `ip:<peer>` first, then each digest.
    pub auth: &'a mut Vec<Id>,
    pub watches: &'a mut WatchTable,
    /// Notifications to send before the reply (SetWatches finding changes).
    pub immediate: Vec<(i32, String)>,
    /// This connection's id and its last write number (see
    /// `Command::Zk::seq`: FIFO order is per connection).
    pub conn: u64,
    pub seq: &'a std::sync::atomic::AtomicU64,
    /// This connection's SASL exchange.
    pub sasl: &'a mut crate::sasl::Exchange,
}

/// A reply to one request (the header's xid is added by the connection).
#[derive(Debug)]
pub struct Reply {
    pub zxid: i64,
    pub err: i32,
    pub body: Option<BytesMut>,
    /// Close the connection after sending (closeSession, failed auth,
    /// unimplemented opcode), as ZooKeeper does.
    pub close: bool,
}

impl Reply {
    pub fn ok(zxid: i64, body: BytesMut) -> Reply {
        Reply {
            zxid,
            err: code::OK,
            body: Some(body),
            close: false,
        }
    }
    pub fn empty(zxid: i64) -> Reply {
        Reply {
            zxid,
            err: code::OK,
            body: None,
            close: false,
        }
    }
    pub fn err(zxid: i64, err: i32) -> Reply {
        Reply {
            zxid,
            err,
            body: None,
            close: false,
        }
    }
}

/// How a connection may overlap a request with the ones around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A write whose command is built without reading the tree
    /// ([`prepare`]): it may be submitted while earlier writes are still in
    /// flight, provided it is submitted after them (core applies proposals
    /// in submission order).
    Pipelined,
    /// Everything else (reads, watch and session requests, sync,
    /// closeSession): runs through [`dispatch`] once every earlier request
    /// has been answered, and nothing later starts before it is answered,
    /// so it sees exactly the effects of the requests before it.
    Exclusive,
}

pub fn mode(req: &Request) -> Mode {
    match req {
        Request::Create { .. }
        | Request::Delete { .. }
        | Request::SetData { .. }
        | Request::SetAcl { .. }
        | Request::Check { .. }
        | Request::Multi(_) => Mode::Pipelined,
        _ => Mode::Exclusive,
    }
}

/// What the prepare step ([`prepare`]) made of a decoded request.
pub enum Prepared {
    /// A [`Mode::Pipelined`] write: a command, or a reply decided without
    /// the log.
    Write(write::PreparedWrite),
    /// Any other request, unchanged.
    Other(Request),
}

/// Translates a [`Mode::Pipelined`] write into a command (or a reply
/// decided without the log); any other request comes back unchanged.
pub fn prepare(ctx: &Ctx<'_>, req: Request) -> Prepared {
    Prepared::Write(match req {
        Request::Create { op, req } => write::create(ctx, op, req),
        Request::Delete { path, version, .. } => write::delete(ctx, path, version),
        Request::SetData {
            path,
            data,
            version,
        } => write::set_data(ctx, path, data, version),
        Request::SetAcl { path, acl, version } => write::set_acl(ctx, path, acl, version),
        Request::Check { path, version } => write::check(ctx, path, version),
        Request::Multi(ops) => write::multi(ctx, ops),
        other => return Prepared::Other(other),
    })
}

/// Runs one request to completion. `Err` means core failed (stopped, timed
/// out): the request may or may not have been applied, so the connection is
/// closed and the client sees ConnectionLoss, which is exactly ZooKeeper's
/// contract for that situation.
pub async fn dispatch(ctx: &mut Ctx<'_>, req: Request) -> Result<Reply, CoreError> {
    let req = match prepare(ctx, req) {
        Prepared::Write(write::PreparedWrite::Answered(r)) => return Ok(r),
        Prepared::Write(write::PreparedWrite::Propose(p)) => {
            return p.propose_and_render(ctx.node).await
        }
        Prepared::Other(req) => req,
    };
    match req {
        Request::Exists { path, watch } => Ok(read::exists(ctx, &path, watch)),
        Request::GetData { path, watch } => Ok(read::get_data(ctx, &path, watch)),
        Request::GetAcl { path } => Ok(read::get_acl(ctx, &path)),
        Request::GetChildren { op, path, watch } => Ok(read::get_children(ctx, op, &path, watch)),
        Request::GetAllChildrenNumber { path } => Ok(read::all_children_number(ctx, &path)),
        Request::GetEphemerals { prefix } => Ok(read::ephemerals(ctx, &prefix)),
        Request::MultiRead(ops) => Ok(read::multi_read(ctx, ops)),
        Request::Sync { path } => read::sync(ctx, &path).await,
        Request::Ping => Ok(session::ping(ctx)),
        Request::Auth { scheme, auth } => Ok(session::auth(ctx, &scheme, &auth)),
        Request::WhoAmI => Ok(session::who_am_i(ctx)),
        Request::Sasl { token } if !ctx.cfg.sasl_users.is_empty() => Ok(session::sasl(ctx, &token)),
        Request::Sasl { .. } => Ok(unsupported(ctx, crate::proto::op::SASL)),
        Request::CloseSession => session::close(ctx).await,
        Request::SetWatches(sw) => Ok(watch::set_watches(ctx, sw)),
        Request::AddWatch { path, mode } => Ok(watch::add_watch(ctx, &path, mode)),
        Request::CheckWatches { path, kind } => Ok(watch::check_watches(ctx, &path, kind)),
        Request::RemoveWatches { path, kind } => Ok(watch::remove_watches(ctx, &path, kind)),
        Request::Reconfig {
            joining,
            leaving,
            new_members,
            cur_config_id,
        } => {
            reconfig::reconfig(
                ctx,
                joining.as_deref(),
                leaving.as_deref(),
                new_members.as_deref(),
                cur_config_id,
            )
            .await
        }
        Request::Unsupported(opcode) => Ok(unsupported(ctx, opcode)),
        Request::Create { .. }
        | Request::Delete { .. }
        | Request::SetData { .. }
        | Request::SetAcl { .. }
        | Request::Check { .. }
        // Handled by `prepare` above.
        | Request::Multi(_) => Ok(Reply::err(ctx.node.revision(), code::SYSTEM_ERROR)),
    }
}

/// An opcode janus does not serve gets Unimplemented and the connection is
/// closed (ZooKeeper's UnimplementedRequestProcessor).
fn unsupported(ctx: &Ctx<'_>, opcode: i32) -> Reply {
    let zxid = ctx.node.revision();
    tracing::warn!(opcode, "unknown or unsupported ZooKeeper opcode");
    Reply {
        zxid,
        err: code::UNIMPLEMENTED,
        body: None,
        close: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_keeper_exception_codes() {
        assert_eq!(error_code(ZkError::NoNode), -101);
        assert_eq!(error_code(ZkError::NodeExists), -110);
        assert_eq!(error_code(ZkError::BadVersion), -103);
        assert_eq!(error_code(ZkError::NotEmpty), -111);
        assert_eq!(error_code(ZkError::NoChildrenForEphemerals), -108);
        assert_eq!(error_code(ZkError::NoAuth), -102);
        assert_eq!(error_code(ZkError::InvalidAcl), -114);
        assert_eq!(error_code(ZkError::BadArguments), -8);
        assert_eq!(error_code(ZkError::RuntimeInconsistency), -2);
        assert_eq!(error_code(ZkError::SessionExpired), -112);
        assert_eq!(error_code(ZkError::Unimplemented), -6);
    }
}
