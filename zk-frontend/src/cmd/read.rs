//! Reads: exists, getData, getACL, getChildren(2), getAllChildrenNumber,
//! getEphemerals, multiRead, sync. Served from the local member (D8); the
//! reply zxid is the store revision read *before* the read, so it never
//! claims more than the data shows.
//!
//! Watches set by a read use the state the reply shows as threshold (see
//! [`crate::watches`]). As in ZooKeeper: exists on a missing node leaves an
//! exist watch, getData/getChildren on a missing node leave none, and a read
//! refused with NoAuth leaves none.

use janus_core::znode::{Acl, Stat};
use janus_core::ZkError;

use super::{error_code, system, Ctx, Reply};
use crate::proto::jute::Writer;
use crate::proto::{code, op, MultiOp};

/// getData's core, shared with multiRead.
/// `None` is null data.
pub fn data_of(ctx: &Ctx<'_>, path: &str) -> Result<(Option<Vec<u8>>, Stat), ZkError> {
    if system::is_system(path) {
        let (data, stat) = system::read(ctx.node, ctx.cfg, path);
        return Ok((Some(data), stat));
    }
    ctx.node.zk_get_data(path, ctx.auth)
}

/// getChildren's core, shared with multiRead.
pub fn children_of(ctx: &Ctx<'_>, path: &str) -> Result<(Vec<String>, Stat), ZkError> {
    if system::is_system(path) {
        return Ok((
            system::children(path),
            system::stat(ctx.node, ctx.cfg, path),
        ));
    }
    ctx.node.zk_get_children(path, ctx.auth)
}

/// exists: stat or NoNode. READ is checked when the node exists (3.8).
pub fn exists(ctx: &mut Ctx<'_>, path: &str, watch: bool) -> Reply {
    if watch {
        ctx.watches.arm(path);
    }
    let zxid = ctx.node.revision();
    if path.contains('\0') {
        return Reply::err(zxid, code::BAD_ARGUMENTS);
    }
    let stat = if system::is_system(path) {
        Some(system::stat(ctx.node, ctx.cfg, path))
    } else {
        match ctx.node.zk_exists_checked(path, ctx.auth) {
            Ok(s) => s,
            Err(ZkError::NoAuth) => return Reply::err(zxid, code::NO_AUTH),
            Err(_) => None,
        }
    };
    match stat {
        Some(s) => {
            if watch {
                ctx.watches.add_data(path, s.mzxid);
            }
            let mut w = Writer::new();
            w.stat(&s);
            Reply::ok(zxid, w.into_bytes())
        }
        None => {
            if watch {
                ctx.watches.add_data(path, zxid);
            }
            Reply::err(zxid, code::NO_NODE)
        }
    }
}

pub fn get_data(ctx: &mut Ctx<'_>, path: &str, watch: bool) -> Reply {
    if watch {
        ctx.watches.arm(path);
    }
    let zxid = ctx.node.revision();
    match data_of(ctx, path) {
        Ok((d, s)) => {
            if watch {
                ctx.watches.add_data(path, s.mzxid);
            }
            let mut w = Writer::new();
            w.nullable_buffer(d.as_deref()).stat(&s);
            Reply::ok(zxid, w.into_bytes())
        }
        Err(e) => Reply::err(zxid, error_code(e)),
    }
}

pub fn get_acl(ctx: &mut Ctx<'_>, path: &str) -> Reply {
    let zxid = ctx.node.revision();
    let r: Result<(Vec<Acl>, Stat), ZkError> = if system::is_system(path) {
        Ok((system::acl(path), system::stat(ctx.node, ctx.cfg, path)))
    } else {
        ctx.node.zk_get_acl(path, ctx.auth)
    };
    match r {
        Ok((a, s)) => {
            let mut w = Writer::new();
            w.acl_vec(&a).stat(&s);
            Reply::ok(zxid, w.into_bytes())
        }
        Err(e) => Reply::err(zxid, error_code(e)),
    }
}

/// getChildren (names only) and getChildren2 (names and stat).
pub fn get_children(ctx: &mut Ctx<'_>, opcode: i32, path: &str, watch: bool) -> Reply {
    if watch {
        ctx.watches.arm(path);
    }
    let zxid = ctx.node.revision();
    match children_of(ctx, path) {
        Ok((c, s)) => {
            if watch {
                ctx.watches.add_child(path, s.pzxid);
            }
            let mut w = Writer::new();
            w.string_vec(&c);
            if opcode == op::GET_CHILDREN2 {
                w.stat(&s);
            }
            Reply::ok(zxid, w.into_bytes())
        }
        Err(e) => Reply::err(zxid, error_code(e)),
    }
}

pub fn all_children_number(ctx: &mut Ctx<'_>, path: &str) -> Reply {
    let zxid = ctx.node.revision();
    let r = if system::is_system(path) {
        Ok(system::children(path).len() as i32)
    } else {
        ctx.node.zk_all_children_number(path, ctx.auth)
    };
    match r {
        Ok(n) => {
            let mut w = Writer::new();
            w.int(n);
            Reply::ok(zxid, w.into_bytes())
        }
        Err(e) => Reply::err(zxid, error_code(e)),
    }
}

/// getEphemerals: an empty or `/` prefix means all of the session's
/// ephemerals (FinalRequestProcessor trims the prefix the same way).
pub fn ephemerals(ctx: &mut Ctx<'_>, prefix: &str) -> Reply {
    let zxid = ctx.node.revision();
    let p = prefix.trim();
    let p = if p.is_empty() { "/" } else { prefix };
    let list = ctx.node.zk_ephemerals(ctx.session, p);
    let mut w = Writer::new();
    w.string_vec(&list);
    Reply::ok(zxid, w.into_bytes())
}

/// multiRead: each op answered on its own (a failing op gives an
/// ErrorResult, the others still run), as `MultiResponse` records.
pub fn multi_read(ctx: &mut Ctx<'_>, ops: Vec<MultiOp>) -> Reply {
    let zxid = ctx.node.revision();
    let mut w = Writer::new();
    for o in &ops {
        match o {
            MultiOp::GetChildren { path } => match children_of(ctx, path) {
                Ok((c, _)) => {
                    w.int(op::GET_CHILDREN).boolean(false).int(0).string_vec(&c);
                }
                Err(e) => {
                    let c = error_code(e);
                    w.int(op::ERROR).boolean(false).int(c).int(c);
                }
            },
            MultiOp::GetData { path } => match data_of(ctx, path) {
                Ok((d, s)) => {
                    w.int(op::GET_DATA)
                        .boolean(false)
                        .int(0)
                        .nullable_buffer(d.as_deref())
                        .stat(&s);
                }
                Err(e) => {
                    let c = error_code(e);
                    w.int(op::ERROR).boolean(false).int(c).int(c);
                }
            },
            // ZooKeeper refuses to mix reads and writes in one record.
            _ => return Reply::err(zxid, code::MARSHALLING_ERROR),
        }
    }
    w.int(-1).boolean(true).int(-1);
    Reply::ok(zxid, w.into_bytes())
}

/// sync: waits for a ReadIndex (D8) so later reads see every write committed
/// before it; answers with the path it was given.
pub async fn sync(ctx: &mut Ctx<'_>, path: &str) -> Result<Reply, janus_core::CoreError> {
    ctx.node.read_barrier().await?;
    let zxid = ctx.node.revision();
    let mut w = Writer::new();
    w.ustring(path);
    Ok(Reply::ok(zxid, w.into_bytes()))
}
