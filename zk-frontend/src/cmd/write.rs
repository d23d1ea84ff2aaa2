//! Writes: create (all four opcodes), delete, setData, setACL, check, multi.
//!
//! Each is one `Command::Zk` through the log (D7); core decides every tree
//! rule and ACL check. This file only validates what ZooKeeper validates
//! before it looks at the tree (create flags, the TTL gate and TTL range,
//! the reserved `/zookeeper` subtree) and renders results.

use janus_core::znode::{Acl, CreateMode, ZkOp, ZkOpResult, ZkWriteResult};
use janus_core::ZkError;
use janus_core::{Applied, Command, CommandResult, CoreError, Node};

use super::{error_code, system, Ctx, Reply};
use crate::proto::jute::Writer;
use crate::proto::{code, op, CreateReq, MultiOp};

/// Largest TTL ZooKeeper accepts (EphemeralType.TTL max: 40 bits).
const MAX_TTL_MS: i64 = 0xFF_FFFF_FFFF;

/// Translates a create request as `opcode` into a core op, or the code
/// ZooKeeper's PrepRequestProcessor answers before touching the tree.
fn create_op(ctx: &Ctx<'_>, opcode: i32, req: CreateReq) -> Result<ZkOp, i32> {
    let mode = CreateMode::from_flag(req.flags).ok_or(code::BAD_ARGUMENTS)?;
    // Plain create requests carry no TTL (ZooKeeper passes -1).
    let ttl = if opcode == op::CREATE_TTL {
        req.ttl
    } else {
        -1
    };
    if mode.is_ttl() {
        if !ctx.cfg.ttl_nodes {
            return Err(code::UNIMPLEMENTED);
        }
        if ttl <= 0 || ttl > MAX_TTL_MS {
            return Err(code::BAD_ARGUMENTS);
        }
    } else if ttl >= 0 {
        return Err(code::BAD_ARGUMENTS);
    }
    if opcode == op::CREATE_CONTAINER && mode != CreateMode::Container {
        return Err(code::BAD_ARGUMENTS);
    }
    reserved_check(&req.path, true)?;
    Ok(ZkOp::Create {
        path: req.path,
        data: req.data,
        acl: req.acl,
        mode,
        ttl_ms: ttl.max(0),
    })
}

/// Writes into `/zookeeper` are refused: creating a system node answers
/// NodeExists as ZooKeeper would, anything else NoAuth (janus does not store
/// the subtree; a documented difference).
fn reserved_check(path: &str, create: bool) -> Result<(), i32> {
    if create && system::is_system(path) {
        return Err(code::NODE_EXISTS);
    }
    if system::is_reserved(path) {
        return Err(code::NO_AUTH);
    }
    Ok(())
}

/// A write translated for the log: the command to propose and how to turn
/// its outcome into a reply. Building one reads no tree state, so a
/// connection may prepare and submit several before the first is applied.
pub struct Prepared {
    pub command: Command,
    pub render: Render,
}

/// What a write needs to remember to render its reply once applied.
pub enum Render {
    /// create/create2/createContainer/createTTL, with the opcode as sent.
    Create {
        opcode: i32,
    },
    Delete,
    SetData {
        path: String,
    },
    SetAcl {
        path: String,
    },
    /// Opcodes and paths of the ops, as sent.
    Multi {
        opcodes: Vec<i32>,
        paths: Vec<String>,
    },
}

/// The outcome of preparing a write: a command to propose, or a reply
/// decided without the log (validation failures, refused system paths).
pub enum Prep {
    Propose(Prepared),
    Reply(Reply),
}

/// Every write carries the connection's id and its next number on it, so
/// core never applies it after a lost earlier write of the connection (FIFO
/// order, which pipelining alone cannot guarantee).
fn zk_command(ctx: &Ctx<'_>, ops: Vec<ZkOp>, multi: bool) -> Command {
    // One connection prepares its requests one at a time; the atomic only
    // makes the context Send.
    let seq = ctx.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    Command::Zk {
        session: ctx.session,
        auth: ctx.auth.clone(),
        ops,
        multi,
        conn: ctx.conn,
        seq,
    }
}

fn prepared(ctx: &Ctx<'_>, ops: Vec<ZkOp>, multi: bool, render: Render) -> Prep {
    Prep::Propose(Prepared {
        command: zk_command(ctx, ops, multi),
        render,
    })
}

impl Prepared {
    /// Proposes and renders (the sequential path; a pipelining connection
    /// submits [`Prepared::command`] itself and calls [`Render::reply`]).
    pub async fn run(self, node: &Node) -> Result<Reply, CoreError> {
        let applied = node.propose(self.command).await?;
        self.render.reply(applied)
    }
}

impl Render {
    /// The reply to an applied write.
    pub fn reply(self, applied: Applied) -> Result<Reply, CoreError> {
        let rev = applied.revision;
        let r = match applied.result {
            CommandResult::Zk(ZkWriteResult::Failed {
                error: ZkError::OutOfOrder,
                ..
            }) => {
                // An earlier write of this session was lost: drop the
                // connection (ConnectionLoss) rather than answer out of order.
                return Err(CoreError::Raft(
                    "a write of this session was lost; later writes refused".into(),
                ));
            }
            CommandResult::Zk(r) => r,
            other => {
                return Err(CoreError::Encoding(format!(
                    "unexpected result to a Zk command: {other:?}"
                )))
            }
        };
        if let Render::Multi { opcodes, paths } = &self {
            return Ok(Reply::ok(
                rev,
                render_multi(opcodes, paths, &r).into_bytes(),
            ));
        }
        let one = match r {
            ZkWriteResult::Failed { error, .. } => return Ok(Reply::err(rev, error_code(error))),
            ZkWriteResult::Applied(mut v) if v.len() == 1 => v.remove(0),
            ZkWriteResult::Applied(v) => {
                return Err(CoreError::Encoding(format!(
                    "expected one result, got {}",
                    v.len()
                )))
            }
        };
        Ok(match (self, one) {
            (Render::Create { opcode }, ZkOpResult::Create { path, stat }) => {
                let mut w = Writer::new();
                w.ustring(&path);
                if opcode != op::CREATE {
                    w.stat(&system::fix_stat(&path, stat));
                }
                Reply::ok(rev, w.into_bytes())
            }
            (Render::Delete, _) => Reply::empty(rev),
            (Render::SetData { path }, ZkOpResult::SetData { stat })
            | (Render::SetAcl { path }, ZkOpResult::SetAcl { stat }) => {
                let mut w = Writer::new();
                w.stat(&system::fix_stat(&path, stat));
                Reply::ok(rev, w.into_bytes())
            }
            _ => Reply::err(rev, code::SYSTEM_ERROR),
        })
    }
}

pub fn create(ctx: &Ctx<'_>, opcode: i32, req: CreateReq) -> Prep {
    match create_op(ctx, opcode, req) {
        Ok(o) => prepared(ctx, vec![o], false, Render::Create { opcode }),
        Err(c) => Prep::Reply(Reply::err(ctx.node.revision(), c)),
    }
}

pub fn delete(ctx: &Ctx<'_>, path: String, version: i32) -> Prep {
    if system::is_reserved(&path) || path == "/" {
        // ZooKeeper refuses to delete its special paths (the root and the
        // system nodes) with BadArguments (DataTree.isSpecialPath).
        let c = if path == "/" || system::is_system(&path) {
            code::BAD_ARGUMENTS
        } else {
            code::NO_AUTH
        };
        return Prep::Reply(Reply::err(ctx.node.revision(), c));
    }
    prepared(
        ctx,
        vec![ZkOp::Delete { path, version }],
        false,
        Render::Delete,
    )
}

pub fn set_data(ctx: &Ctx<'_>, path: String, data: Option<Vec<u8>>, version: i32) -> Prep {
    if let Err(c) = reserved_check(&path, false) {
        return Prep::Reply(Reply::err(ctx.node.revision(), c));
    }
    let render = Render::SetData { path: path.clone() };
    let o = ZkOp::SetData {
        path,
        data,
        version,
    };
    prepared(ctx, vec![o], false, render)
}

pub fn set_acl(ctx: &Ctx<'_>, path: String, acl: Vec<Acl>, version: i32) -> Prep {
    if let Err(c) = reserved_check(&path, false) {
        return Prep::Reply(Reply::err(ctx.node.revision(), c));
    }
    let render = Render::SetAcl { path: path.clone() };
    prepared(
        ctx,
        vec![ZkOp::SetAcl { path, acl, version }],
        false,
        render,
    )
}

/// The standalone check opcode (13) answers a SetDataResponse with the
/// node's stat, as FinalRequestProcessor does. The stat is read after the
/// apply, so a connection runs check alone (see `cmd::Mode::Exclusive`).
pub async fn check(ctx: &mut Ctx<'_>, path: String, version: i32) -> Result<Reply, CoreError> {
    let p = path.clone();
    let applied = ctx
        .node
        .propose(zk_command(ctx, vec![ZkOp::Check { path, version }], false))
        .await?;
    let rev = applied.revision;
    Ok(match applied.result {
        CommandResult::Zk(ZkWriteResult::Failed { error, .. }) => {
            Reply::err(rev, error_code(error))
        }
        CommandResult::Zk(ZkWriteResult::Applied(_)) => {
            let stat = ctx.node.zk_exists(&p).unwrap_or_default();
            let mut w = Writer::new();
            w.stat(&system::fix_stat(&p, stat));
            Reply::ok(rev, w.into_bytes())
        }
        other => {
            return Err(CoreError::Encoding(format!(
                "unexpected result to a Zk command: {other:?}"
            )))
        }
    })
}

/// Renders a `MultiResponse`. `opcodes` are the ops' opcodes as sent (create
/// answers a path only, the other creates path and stat).
pub fn render_multi(opcodes: &[i32], paths: &[String], result: &ZkWriteResult) -> Writer {
    let mut w = Writer::new();
    match result {
        ZkWriteResult::Applied(results) => {
            for (i, r) in results.iter().enumerate() {
                let opcode = opcodes.get(i).copied().unwrap_or(op::CREATE2);
                let path = paths.get(i).map(String::as_str).unwrap_or("");
                match r {
                    ZkOpResult::Create {
                        path: created,
                        stat,
                    } => {
                        // Inside a multi, ZooKeeper 3.8 turns create2 into a
                        // plain create txn, so both answer a path only;
                        // container and TTL creates answer path and stat.
                        if opcode == op::CREATE || opcode == op::CREATE2 {
                            w.int(op::CREATE).boolean(false).int(0).ustring(created);
                        } else {
                            w.int(op::CREATE2)
                                .boolean(false)
                                .int(0)
                                .ustring(created)
                                .stat(&system::fix_stat(created, *stat));
                        }
                    }
                    ZkOpResult::Delete => {
                        w.int(op::DELETE).boolean(false).int(0);
                    }
                    ZkOpResult::SetData { stat } => {
                        w.int(op::SET_DATA)
                            .boolean(false)
                            .int(0)
                            .stat(&system::fix_stat(path, *stat));
                    }
                    // setACL is not a multi op in ZooKeeper; render it like
                    // setData should core ever return one.
                    ZkOpResult::SetAcl { stat } => {
                        w.int(op::SET_DATA).boolean(false).int(0).stat(stat);
                    }
                    ZkOpResult::Check => {
                        w.int(op::CHECK).boolean(false).int(0);
                    }
                }
            }
        }
        ZkWriteResult::Failed { index, error } => {
            render_failed(&mut w, opcodes.len(), *index, error_code(*error));
        }
    }
    w.int(-1).boolean(true).int(-1);
    w
}

/// A failed multi: 0 for the ops before the failing one, its code, then
/// RuntimeInconsistency for the rest (each as an ErrorResult).
fn render_failed(w: &mut Writer, n: usize, index: usize, err: i32) {
    for i in 0..n {
        let c = match i.cmp(&index) {
            std::cmp::Ordering::Less => code::OK,
            std::cmp::Ordering::Equal => err,
            std::cmp::Ordering::Greater => code::RUNTIME_INCONSISTENCY,
        };
        w.int(op::ERROR).boolean(false).int(c).int(c);
    }
}

/// multi: all or nothing, one revision. The reply header's err is 0 even
/// when an op failed; the per-op results carry the codes.
pub fn multi(ctx: &Ctx<'_>, ops: Vec<MultiOp>) -> Prep {
    let mut opcodes = Vec::with_capacity(ops.len());
    let mut paths = Vec::with_capacity(ops.len());
    let mut zk_ops = Vec::with_capacity(ops.len());
    let mut local_failure = None;
    for (i, o) in ops.into_iter().enumerate() {
        let (opcode, r) = match o {
            MultiOp::Create { op: opc, req } => {
                paths.push(req.path.clone());
                (opc, create_op(ctx, opc, req))
            }
            MultiOp::Delete { path, version } => {
                paths.push(path.clone());
                (
                    op::DELETE,
                    reserved_check(&path, false).map(|_| ZkOp::Delete { path, version }),
                )
            }
            MultiOp::SetData {
                path,
                data,
                version,
            } => {
                paths.push(path.clone());
                let r = reserved_check(&path, false).map(|_| ZkOp::SetData {
                    path,
                    data,
                    version,
                });
                (op::SET_DATA, r)
            }
            MultiOp::Check { path, version } => {
                paths.push(path.clone());
                (op::CHECK, Ok(ZkOp::Check { path, version }))
            }
            MultiOp::GetChildren { .. } | MultiOp::GetData { .. } => {
                // Reads in a write multi: ZooKeeper fails to decode the record.
                return Prep::Reply(Reply::err(ctx.node.revision(), code::MARSHALLING_ERROR));
            }
        };
        opcodes.push(opcode);
        match r {
            Ok(z) => zk_ops.push(z),
            Err(c) => {
                if local_failure.is_none() {
                    local_failure = Some((i, c));
                }
            }
        }
    }
    if let Some((index, c)) = local_failure {
        let mut w = Writer::new();
        render_failed(&mut w, opcodes.len(), index, c);
        w.int(-1).boolean(true).int(-1);
        return Prep::Reply(Reply::ok(ctx.node.revision(), w.into_bytes()));
    }
    if zk_ops.is_empty() {
        let mut w = Writer::new();
        w.int(-1).boolean(true).int(-1);
        return Prep::Reply(Reply::ok(ctx.node.revision(), w.into_bytes()));
    }
    prepared(ctx, zk_ops, true, Render::Multi { opcodes, paths })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jute;
    use janus_core::ZkError;

    #[test]
    fn failed_multi_renders_zero_code_then_runtime_inconsistency() {
        let r = ZkWriteResult::Failed {
            index: 1,
            error: ZkError::NoNode,
        };
        let w = render_multi(&[op::CREATE, op::DELETE, op::SET_DATA], &[], &r);
        let b = w.into_bytes();
        let mut i: &[u8] = &b;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (r, t) = jute::int(i).unwrap();
            let (r, done) = jute::boolean(r).unwrap();
            let (r, err) = jute::int(r).unwrap();
            let (r, body) = jute::int(r).unwrap();
            assert_eq!((t, done, err), (op::ERROR, false, body));
            seen.push(err);
            i = r;
        }
        assert_eq!(seen, vec![0, -101, -2]);
        let (r, t) = jute::int(i).unwrap();
        let (r, done) = jute::boolean(r).unwrap();
        let (r, err) = jute::int(r).unwrap();
        assert_eq!((t, done, err, r.len()), (-1, true, -1, 0));
    }
}
