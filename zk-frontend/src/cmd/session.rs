//! Session-level requests: ping, auth, whoAmI, closeSession.

use janus_core::znode::Id;
use janus_core::{Command, CoreError};

use super::{Ctx, Reply};
use crate::proto::code;
use crate::proto::jute::Writer;

/// ping: the connection has had the leader renew the session first.
pub fn ping(ctx: &mut Ctx<'_>) -> Reply {
    Reply::empty(ctx.node.revision())
}

/// Adds an identity once (ServerCnxn.addAuthInfo ignores duplicates).
fn add_id(auth: &mut Vec<Id>, id: Id) {
    if !auth.contains(&id) {
        auth.push(id);
    }
}

/// auth: `digest` adds `user:base64(sha1(user:password))` (and the
/// superuser identity for `--zk-super-digest`), `ip` re-adds the
/// peer's address; any other scheme fails with AuthFailed and the
/// connection is closed, as ZooKeeper does. The reply's zxid is 0.
pub fn auth(ctx: &mut Ctx<'_>, scheme: &str, data: &[u8]) -> Reply {
    match scheme {
        "digest" => {
            let id = crate::session::digest_id(data);
            // DigestAuthenticationProvider: the super digest adds the
            // superuser identity before the digest one.
            if ctx.cfg.super_digest.as_deref() == Some(id.as_str()) {
                add_id(ctx.auth, Id::new(janus_core::znode::acl::SUPER, ""));
            }
            add_id(
                ctx.auth,
                Id {
                    scheme: "digest".into(),
                    id,
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

/// sasl: one step of the DIGEST-MD5 exchange (`crate::sasl`); the reply
/// (`SetSASLResponse`, zxid 0) carries the server's token. Success adds
/// `sasl:<user>`; failure is AuthFailed with a null token, then close.
pub fn sasl(ctx: &mut Ctx<'_>, token: &[u8]) -> Reply {
    match ctx.sasl.step(&ctx.cfg.sasl_users, token) {
        crate::sasl::Step::Continue(t) => {
            let mut w = Writer::new();
            w.nullable_buffer(Some(&t));
            Reply::ok(0, w.into_bytes())
        }
        crate::sasl::Step::Authenticated { user, token } => {
            add_id(ctx.auth, Id::new("sasl", &user));
            let mut w = Writer::new();
            w.nullable_buffer(Some(&token));
            Reply::ok(0, w.into_bytes())
        }
        crate::sasl::Step::Failed => {
            let mut w = Writer::new();
            w.nullable_buffer(None);
            Reply {
                zxid: 0,
                err: code::AUTH_FAILED,
                body: Some(w.into_bytes()),
                close: true,
            }
        }
    }
}

/// whoAmI: one ClientInfo (scheme, user) per identity; a digest's user is
/// the part before `:` (DigestAuthenticationProvider.getUserName), the
/// superuser's is empty. The
/// order is ZooKeeper's: its connection keeps identities in a
/// `ConcurrentHashMap`-backed set, so they come out by hash bucket.
pub fn who_am_i(ctx: &mut Ctx<'_>) -> Reply {
    let mut ids: Vec<&Id> = ctx.auth.iter().collect();
    ids.sort_by_key(|id| java_bucket(id, ctx.auth.len()));
    let mut w = Writer::new();
    w.int(ids.len() as i32);
    for id in ids {
        let user = if id.scheme == "digest" {
            id.id.split(':').next().unwrap_or_default()
        } else if id.scheme == janus_core::znode::acl::SUPER {
            // No provider is named `super`: ZooKeeper lists the x509
            // superuser's `super:<subject>` with an empty user.
            ""
        } else {
            id.id.as_str()
        };
        w.ustring(&id.scheme).ustring(user);
    }
    Reply::ok(ctx.node.revision(), w.into_bytes())
}

/// Java's `String.hashCode`.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `ConcurrentHashMap` bucket of a jute `Id` among `count` entries
/// (table of 16, doubled while more than 3/4 full); a stable sort by it
/// keeps insertion order within a bucket, as the map's bins do.
fn java_bucket(id: &Id, count: usize) -> u32 {
    let h = 37i32
        .wrapping_mul(
            37i32
                .wrapping_mul(17)
                .wrapping_add(java_string_hash(&id.scheme)),
        )
        .wrapping_add(java_string_hash(&id.id));
    let spread = ((h ^ ((h as u32) >> 16) as i32) & 0x7fff_ffff) as u32;
    let mut n = 16u32;
    while count * 4 > (n as usize) * 3 {
        n *= 2;
    }
    spread & (n - 1)
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
