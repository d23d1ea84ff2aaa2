//! Writes: create (all four opcodes), delete, setData, setACL, check, multi.
//!
//! Each is one `Command::Zk` through the log (D7); core decides every tree
//! rule, the TTL range, ACL checks, stats and which op of a multi fails.
//! This file only checks what ZooKeeper checks from the request alone
//! (create flags against the opcode, the TTL gate, the reserved
//! `/zookeeper` subtree) and renders results. Inside a multi such a
//! refusal travels to core as [`ZkOp::Refused`], so an earlier op failing
//! on the tree is still the one reported.

use janus_core::znode::{Acl, CreateMode, ZkOp, ZkOpResult, ZkWriteResult};
use janus_core::ZkError;
use janus_core::{Applied, Command, CommandResult, CoreError, Node};

use super::{error_code, system, Ctx, Reply};
use crate::proto::jute::Writer;
use crate::proto::{code, op, CreateReq, MultiOp};

/// Translates a create request as `opcode` into a core op, or the error
/// ZooKeeper's PrepRequestProcessor answers from the request alone.
fn create_op(ctx: &Ctx<'_>, opcode: i32, req: CreateReq) -> Result<ZkOp, ZkError> {
    let mode = CreateMode::from_flag(req.flags).ok_or(ZkError::BadArguments)?;
    // Plain create requests carry no TTL (ZooKeeper passes -1).
    let ttl = if opcode == op::CREATE_TTL {
        req.ttl
    } else {
        -1
    };
    if mode.is_ttl() {
        if !ctx.cfg.ttl_nodes {
            return Err(ZkError::Unimplemented);
        }
    } else if ttl >= 0 {
        return Err(ZkError::BadArguments);
    }
    if opcode == op::CREATE_CONTAINER && mode != CreateMode::Container {
        return Err(ZkError::BadArguments);
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
fn reserved_check(path: &str, create: bool) -> Result<(), ZkError> {
    if create && system::is_system(path) {
        return Err(ZkError::NodeExists);
    }
    if system::is_reserved(path) {
        return Err(ZkError::NoAuth);
    }
    Ok(())
}

/// A write translated for the log (the propose step's input): the command
/// to propose and the shape of its reply. Building one reads no tree state,
/// so a connection may prepare and submit several before the first is
/// applied.
pub struct WriteProposal {
    pub command: Command,
    pub shape: ReplyShape,
}

/// What a write needs to remember to render its reply once applied (the
/// render step's input besides core's answer).
pub enum ReplyShape {
    /// create/create2/createContainer/createTTL, with the opcode as sent.
    Create {
        opcode: i32,
    },
    Delete,
    SetData,
    SetAcl,
    /// The standalone check opcode: a SetDataResponse with the node's stat,
    /// as FinalRequestProcessor answers it.
    Check,
    /// Opcodes of the ops, as sent.
    Multi {
        opcodes: Vec<i32>,
    },
}

/// The outcome of the prepare step for a write: a command to propose, or a
/// reply decided without the log (validation failures, refused system
/// paths).
pub enum PreparedWrite {
    Propose(WriteProposal),
    Answered(Reply),
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

fn to_propose(ctx: &Ctx<'_>, ops: Vec<ZkOp>, multi: bool, shape: ReplyShape) -> PreparedWrite {
    PreparedWrite::Propose(WriteProposal {
        command: zk_command(ctx, ops, multi),
        shape,
    })
}

impl WriteProposal {
    /// Proposes and renders (the sequential path; a pipelining connection
    /// submits [`WriteProposal::command`] itself and calls
    /// [`ReplyShape::render`]).
    pub async fn propose_and_render(self, node: &Node) -> Result<Reply, CoreError> {
        let applied = node.propose(self.command).await?;
        self.shape.render(applied)
    }
}

impl ReplyShape {
    /// The reply to an applied write.
    pub fn render(self, applied: Applied) -> Result<Reply, CoreError> {
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
        if let ReplyShape::Multi { opcodes } = &self {
            return Ok(Reply::ok(rev, render_multi(opcodes, &r).into_bytes()));
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
            (ReplyShape::Create { opcode }, ZkOpResult::Create { path, stat }) => {
                let mut w = Writer::new();
                w.ustring(&path);
                if opcode != op::CREATE {
                    w.stat(&stat);
                }
                Reply::ok(rev, w.into_bytes())
            }
            (ReplyShape::Delete, _) => Reply::empty(rev),
            (ReplyShape::SetData, ZkOpResult::SetData { stat })
            | (ReplyShape::SetAcl, ZkOpResult::SetAcl { stat })
            | (ReplyShape::Check, ZkOpResult::Check { stat }) => {
                let mut w = Writer::new();
                w.stat(&stat);
                Reply::ok(rev, w.into_bytes())
            }
            _ => Reply::err(rev, code::SYSTEM_ERROR),
        })
    }
}

pub fn create(ctx: &Ctx<'_>, opcode: i32, req: CreateReq) -> PreparedWrite {
    match create_op(ctx, opcode, req) {
        Ok(o) => to_propose(ctx, vec![o], false, ReplyShape::Create { opcode }),
        Err(e) => PreparedWrite::Answered(Reply::err(ctx.node.revision(), error_code(e))),
    }
}

pub fn delete(ctx: &Ctx<'_>, path: String, version: i32) -> PreparedWrite {
    if system::is_reserved(&path) || path == "/" {
        // ZooKeeper refuses to delete its special paths (the root and the
        // system nodes) with BadArguments (DataTree.isSpecialPath).
        let c = if path == "/" || system::is_system(&path) {
            code::BAD_ARGUMENTS
        } else {
            code::NO_AUTH
        };
        return PreparedWrite::Answered(Reply::err(ctx.node.revision(), c));
    }
    to_propose(
        ctx,
        vec![ZkOp::Delete { path, version }],
        false,
        ReplyShape::Delete,
    )
}

pub fn set_data(ctx: &Ctx<'_>, path: String, data: Option<Vec<u8>>, version: i32) -> PreparedWrite {
    if let Err(e) = reserved_check(&path, false) {
        return PreparedWrite::Answered(Reply::err(ctx.node.revision(), error_code(e)));
    }
    let o = ZkOp::SetData {
        path,
        data,
        version,
    };
    to_propose(ctx, vec![o], false, ReplyShape::SetData)
}

pub fn set_acl(ctx: &Ctx<'_>, path: String, acl: Vec<Acl>, version: i32) -> PreparedWrite {
    if let Err(e) = reserved_check(&path, false) {
        return PreparedWrite::Answered(Reply::err(ctx.node.revision(), error_code(e)));
    }
    to_propose(
        ctx,
        vec![ZkOp::SetAcl { path, acl, version }],
        false,
        ReplyShape::SetAcl,
    )
}

/// The standalone check opcode (13): its stat comes back with the applied
/// result, so it needs no read of its own.
pub fn check(ctx: &Ctx<'_>, path: String, version: i32) -> PreparedWrite {
    to_propose(
        ctx,
        vec![ZkOp::Check { path, version }],
        false,
        ReplyShape::Check,
    )
}

/// Renders a `MultiResponse`. `opcodes` are the ops' opcodes as sent (create
/// answers a path only, the other creates path and stat).
pub fn render_multi(opcodes: &[i32], result: &ZkWriteResult) -> Writer {
    let mut w = Writer::new();
    match result {
        ZkWriteResult::Applied(results) => {
            for (i, r) in results.iter().enumerate() {
                let opcode = opcodes.get(i).copied().unwrap_or(op::CREATE2);
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
                                .stat(stat);
                        }
                    }
                    ZkOpResult::Delete => {
                        w.int(op::DELETE).boolean(false).int(0);
                    }
                    ZkOpResult::SetData { stat } => {
                        w.int(op::SET_DATA).boolean(false).int(0).stat(stat);
                    }
                    // setACL is not a multi op in ZooKeeper; render it like
                    // setData should core ever return one.
                    ZkOpResult::SetAcl { stat } => {
                        w.int(op::SET_DATA).boolean(false).int(0).stat(stat);
                    }
                    ZkOpResult::Check { .. } => {
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
/// when an op failed; the per-op results carry the codes. An op refused
/// from the request alone still goes to core, as [`ZkOp::Refused`], which
/// reports the earliest failing op.
pub fn multi(ctx: &Ctx<'_>, ops: Vec<MultiOp>) -> PreparedWrite {
    let mut opcodes = Vec::with_capacity(ops.len());
    let mut zk_ops = Vec::with_capacity(ops.len());
    for o in ops {
        let (opcode, r) = match o {
            MultiOp::Create { op: opc, req } => (opc, create_op(ctx, opc, req)),
            MultiOp::Delete { path, version } => (
                op::DELETE,
                reserved_check(&path, false).map(|_| ZkOp::Delete { path, version }),
            ),
            MultiOp::SetData {
                path,
                data,
                version,
            } => {
                let r = reserved_check(&path, false).map(|_| ZkOp::SetData {
                    path,
                    data,
                    version,
                });
                (op::SET_DATA, r)
            }
            MultiOp::Check { path, version } => (op::CHECK, Ok(ZkOp::Check { path, version })),
            MultiOp::GetChildren { .. } | MultiOp::GetData { .. } => {
                // Reads in a write multi: ZooKeeper fails to decode the record.
                return PreparedWrite::Answered(Reply::err(
                    ctx.node.revision(),
                    code::MARSHALLING_ERROR,
                ));
            }
        };
        opcodes.push(opcode);
        zk_ops.push(r.unwrap_or_else(|error| ZkOp::Refused { error }));
    }
    if zk_ops.is_empty() {
        let mut w = Writer::new();
        w.int(-1).boolean(true).int(-1);
        return PreparedWrite::Answered(Reply::ok(ctx.node.revision(), w.into_bytes()));
    }
    to_propose(ctx, zk_ops, true, ReplyShape::Multi { opcodes })
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
        let w = render_multi(&[op::CREATE, op::DELETE, op::SET_DATA], &r);
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
