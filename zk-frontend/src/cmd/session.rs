//! Session-level requests: ping, auth, whoAmI, closeSession.

use janus_core::znode::Id;
use janus_core::{Command, CoreError};

use super::{Ctx, Reply};
use crate::proto::code;
use crate::proto::jute::Writer;

/// ping: the connection already refreshed the lease for this request.
pub fn ping(ctx: &mut Ctx<'_>) -> Reply {
    Reply::empty(ctx.node.revision())
}

/// Adds an identity once (ServerCnxn.addAuthInfo ignores duplicates).
fn add_id(auth: &mut Vec<Id>, id: Id) {
    if !auth.contains(&id) {
        auth.push(id);
    }
}

/// auth: `digest` adds `user:base64(sha1(user:password))`, `ip` re-adds the
/// peer's address; any other scheme fails with AuthFailed and the
/// connection is closed, as ZooKeeper does. The reply's zxid is 0.
pub fn auth(ctx: &mut Ctx<'_>, scheme: &str, data: &[u8]) -> Reply {
    match scheme {
        "digest" => {
            add_id(
                ctx.auth,
                Id {
                    scheme: "digest".into(),
                    id: crate::session::digest_id(data),
                },
            );
            Reply::empty(0)
        }
        "ip" => {
            // The ip id is added at connect time; nothing new to learn.
            Reply::empty(0)
        }
        _ => Reply {
            zxid: 0,
            err: code::AUTH_FAILED,
            body: None,
            close: true,
        },
    }
}

/// whoAmI: one ClientInfo (scheme, user) per identity; a digest's user is
/// the part before `:` (DigestAuthenticationProvider.getUserName).
pub fn who_am_i(ctx: &mut Ctx<'_>) -> Reply {
    let mut w = Writer::new();
    w.int(ctx.auth.len() as i32);
    for id in ctx.auth.iter() {
        let user = if id.scheme == "digest" {
            id.id.split(':').next().unwrap_or_default()
        } else {
            id.id.as_str()
        };
        w.ustring(&id.scheme).ustring(user);
    }
    Reply::ok(ctx.node.revision(), w.into_bytes())
}

/// closeSession: revoke the lease (deleting the session's ephemerals in one
/// revision), answer, then close.
pub async fn close(ctx: &mut Ctx<'_>) -> Result<Reply, CoreError> {
    let applied = ctx
        .node
        .propose(Command::LeaseRevoke { id: ctx.session })
        .await?;
    // An already expired lease is fine: the session is gone either way.
    Ok(Reply {
        zxid: applied.revision,
        err: code::OK,
        body: None,
        close: true,
    })
}
