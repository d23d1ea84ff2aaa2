//! etcd auth in core: commands through the log, checks at apply, and the
//! store surviving a restart (tokens, member-local memory, do not).

mod common;

use common::*;
use janus_core::auth::{Access, AuthError, AuthOp, AuthReply, Caller, PermType, Permission};
use janus_core::kv::PutRequest;
use janus_core::{Command, CommandResult, KvError, Node};

async fn auth(node: &Node, caller: &Caller, op: AuthOp) -> Result<AuthReply, AuthError> {
    let cmd = Command::Auth {
        caller: caller.clone(),
        op,
    };
    match propose(node, cmd).await.result {
        CommandResult::Auth(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

async fn put_as(node: &Node, caller: &Caller, key: &str) -> Result<(), KvError> {
    let cmd = Command::As {
        caller: caller.clone(),
        command: Box::new(Command::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    match propose(node, cmd).await.result {
        CommandResult::Put(r) => r.map(|_| ()),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn rbac_is_applied_from_the_log_and_survives_restart() {
    let t = start();
    let none = Caller::default();
    let hash = janus_core::auth::hash_password("pw").expect("hash");
    assert_eq!(
        auth(&t, &none, AuthOp::Enable).await,
        Err(AuthError::RootUserNotExist)
    );
    for op in [
        AuthOp::UserAdd {
            name: "root".into(),
            hash: Some(hash.clone()),
        },
        AuthOp::UserAdd {
            name: "u".into(),
            hash: Some(hash.clone()),
        },
        AuthOp::RoleAdd { name: "r".into() },
        AuthOp::RoleGrantPermission {
            name: "r".into(),
            perm: Permission {
                perm_type: PermType::Write,
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
            },
        },
        AuthOp::UserGrantRole {
            user: "u".into(),
            role: "r".into(),
        },
    ] {
        auth(&t, &none, op).await.expect("auth change");
    }
    assert_eq!(
        auth(&t, &none, AuthOp::Enable).await,
        Err(AuthError::RootRoleNotExist)
    );
    let grant_root = AuthOp::UserGrantRole {
        user: "root".into(),
        role: "root".into(),
    };
    auth(&t, &none, grant_root).await.expect("grant root");
    auth(&t, &none, AuthOp::Enable).await.expect("enable");
    // 1 at creation, +1 per change (enable does not count).
    assert_eq!(t.auth_revision(), 7);

    assert_eq!(
        put_as(&t, &none, "a").await,
        Err(KvError::Auth(AuthError::UserEmpty))
    );
    let u = t.auth_caller_named("u");
    put_as(&t, &u, "b").await.expect("u writes [a,c)");
    assert_eq!(
        put_as(&t, &u, "c").await,
        Err(KvError::Auth(AuthError::PermissionDenied))
    );
    assert_eq!(
        auth(&t, &u, AuthOp::RoleAdd { name: "x".into() }).await,
        Err(AuthError::PermissionDenied)
    );
    let root = t.auth_caller_named("root");
    let stale = u.clone();
    auth(&t, &root, AuthOp::RoleAdd { name: "x".into() })
        .await
        .expect("root administers");
    assert_eq!(
        put_as(&t, &stale, "b").await,
        Err(KvError::Auth(AuthError::AuthOldRevision))
    );
    assert_eq!(t.auth_check_password("u", "pw"), Ok(8));
    assert_eq!(
        t.auth_check_password("u", "nope"),
        Err(AuthError::AuthFailed)
    );
    let token = match auth(
        &t,
        &none,
        AuthOp::Authenticate {
            name: "u".into(),
            prefix: "abcdefghijklmnop".into(),
            ttl_ms: 60_000,
        },
    )
    .await
    {
        Ok(AuthReply::Token(tok)) => tok,
        other => panic!("no token: {other:?}"),
    };
    assert_eq!(t.auth_caller(&token).map(|c| c.user), Ok("u".to_string()));

    let t = restart(t);
    assert!(t.auth_enabled());
    assert_eq!(t.auth_revision(), 8);
    assert_eq!(t.auth_caller(&token), Err(AuthError::InvalidAuthToken));
    let u = t.auth_caller_named("u");
    assert_eq!(t.auth_check(&u, b"a", b"c", Access::Write), Ok(()));
    assert_eq!(
        t.auth_check(&u, b"a", b"c", Access::Read),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        t.auth_user_list(&t.auth_caller_named("root")),
        Ok(vec!["root".to_string(), "u".to_string()])
    );
    assert_eq!(t.auth_check_password("u", "pw"), Ok(8));
}
