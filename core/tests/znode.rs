//! ZooKeeper tree semantics as core decides them at apply time, checked
//! against ZooKeeper's documented behaviour (programmer's guide: znodes,
//! stat structure, sequential/ephemeral/container/TTL nodes, multi; and
//! PrepRequestProcessor's order of checks).

mod common;

use std::time::Duration;

use common::{create, create_op, delete, eventually, put, put_lease, zk, zk1, zk1_as};
use janus_core::kv::PutRequest;
use janus_core::znode::acl::digest_id;
use janus_core::znode::{perms, Acl, CreateMode, Id, ZkOp, ZkOpResult, ZkWriteResult};
use janus_core::{Command, EventKind, WatchRequest, ZkError};

fn set_data(path: &str, data: &str, version: i32) -> ZkOp {
    ZkOp::SetData {
        path: path.into(),
        data: Some(data.as_bytes().to_vec()),
        version,
    }
}

fn del(path: &str, version: i32) -> ZkOp {
    ZkOp::Delete {
        path: path.into(),
        version,
    }
}

fn children(n: &janus_core::Node, p: &str) -> Vec<String> {
    n.zk_get_children(p, &[]).expect("getChildren").0
}

#[tokio::test]
async fn create_rules_and_stat() {
    let n = common::start();
    // Parent must exist.
    assert_eq!(
        zk1(&n, create_op("/a/b", "", CreateMode::Persistent)).await,
        Err(ZkError::NoNode)
    );
    // Invalid paths. ZooKeeper looks the parent up before validating the
    // full name, so a bad name under a missing parent is NoNode (as the
    // differential test against ZooKeeper 3.8 shows).
    for bad in ["a", "//a", "/a\u{1}"] {
        assert_eq!(
            zk1(&n, create_op(bad, "", CreateMode::Persistent)).await,
            Err(ZkError::BadArguments),
            "{bad:?}"
        );
    }
    for bad in ["/a/", "/a/./b", "/a/../b"] {
        assert_eq!(
            zk1(&n, create_op(bad, "", CreateMode::Persistent)).await,
            Err(ZkError::NoNode),
            "{bad:?}"
        );
    }
    let rev0 = n.revision();
    let (p, st) = create(&n, "/a", "hello", CreateMode::Persistent).await;
    assert_eq!(p, "/a");
    assert_eq!(n.revision(), rev0 + 1);
    assert_eq!(st.czxid, n.revision());
    assert_eq!(st.mzxid, st.czxid);
    assert_eq!(st.pzxid, st.czxid, "a new node's pzxid is its czxid");
    assert_eq!(st.version, 0);
    assert_eq!(st.cversion, 0);
    assert_eq!(st.aversion, 0);
    assert_eq!(st.num_children, 0);
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(st.data_length, 5);
    assert_eq!(st.ctime, st.mtime);
    assert!(st.ctime > 1_600_000_000_000, "ctime is wall-clock ms");
    assert_eq!(n.zk_exists("/a"), Some(st));
    // Exists again.
    let rev = n.revision();
    assert_eq!(
        zk1(&n, create_op("/a", "", CreateMode::Persistent)).await,
        Err(ZkError::NodeExists)
    );
    assert_eq!(n.revision(), rev, "a failed write takes no revision");
    // Parent bookkeeping.
    let root_before = n.zk_exists("/").unwrap();
    let (_, c) = create(&n, "/a/b", "", CreateMode::Persistent).await;
    let a = n.zk_exists("/a").unwrap();
    assert_eq!(a.cversion, 1);
    assert_eq!(a.num_children, 1);
    assert_eq!(a.pzxid, c.czxid);
    assert_eq!(
        a.mzxid, st.mzxid,
        "a child create does not modify the parent"
    );
    assert_eq!(a.version, 0);
    assert_eq!(n.zk_exists("/").unwrap().cversion, root_before.cversion);
    assert_eq!(children(&n, "/a"), vec!["b"]);
    let (data, _) = n.zk_get_data("/a", &[]).unwrap();
    assert_eq!(data.as_deref(), Some(&b"hello"[..]));
    // Root.
    assert!(children(&n, "/").contains(&"a".to_string()));
    assert_eq!(n.zk_exists("/nope"), None);
    assert_eq!(n.zk_get_data("/nope", &[]), Err(ZkError::NoNode));
    assert_eq!(n.zk_get_children("/nope", &[]), Err(ZkError::NoNode));
}

#[tokio::test]
async fn set_data_delete_versions() {
    let n = common::start();
    let (_, st0) = create(&n, "/v", "0", CreateMode::Persistent).await;
    assert_eq!(
        zk1(&n, set_data("/missing", "x", -1)).await,
        Err(ZkError::NoNode)
    );
    assert_eq!(
        zk1(&n, set_data("/v", "x", 3)).await,
        Err(ZkError::BadVersion)
    );
    let Ok(ZkOpResult::SetData { stat }) = zk1(&n, set_data("/v", "one", 0)).await else {
        panic!()
    };
    assert_eq!(stat.version, 1);
    assert_eq!(stat.czxid, st0.czxid);
    assert_eq!(stat.mzxid, n.revision());
    assert!(stat.mzxid > st0.mzxid);
    assert_eq!(stat.data_length, 3);
    assert_eq!(stat.ctime, st0.ctime);
    let Ok(ZkOpResult::SetData { stat }) = zk1(&n, set_data("/v", "two", -1)).await else {
        panic!()
    };
    assert_eq!(stat.version, 2);
    // D3: ZooKeeper version = etcd version - 1.
    assert_eq!(common::get(&n, "/v").unwrap().version, 3);
    assert_eq!(n.zk_get_data("/v", &[]).unwrap().0.unwrap(), b"two");

    // Delete: version, NotEmpty, NoNode; parent cversion/pzxid.
    create(&n, "/v/c", "", CreateMode::Persistent).await;
    assert_eq!(zk1(&n, del("/v", 2)).await, Err(ZkError::NotEmpty));
    assert_eq!(zk1(&n, del("/v", 1)).await, Err(ZkError::BadVersion));
    assert_eq!(zk1(&n, del("/v/none", -1)).await, Err(ZkError::NoNode));
    assert_eq!(zk1(&n, del("/x/none", -1)).await, Err(ZkError::NoNode));
    let before = n.zk_exists("/v").unwrap();
    assert_eq!(zk1(&n, del("/v/c", 0)).await, Ok(ZkOpResult::Delete));
    let after = n.zk_exists("/v").unwrap();
    assert_eq!(after.cversion, before.cversion + 1);
    assert_eq!(after.pzxid, n.revision());
    assert_eq!(after.num_children, 0);
    assert_eq!(after.mzxid, before.mzxid);
    assert_eq!(zk1(&n, del("/v", 2)).await, Ok(ZkOpResult::Delete));
    assert_eq!(n.zk_exists("/v"), None);
    // A recreated node starts a fresh cversion (ZooKeeper forgets it).
    let (_, st) = create(&n, "/v", "", CreateMode::Persistent).await;
    assert_eq!(st.cversion, 0);
    assert_eq!(st.version, 0);

    // check op.
    assert_eq!(
        zk1(
            &n,
            ZkOp::Check {
                path: "/v".into(),
                version: 5
            }
        )
        .await,
        Err(ZkError::BadVersion)
    );
    // A check answers the node's stat with its result.
    let checked = zk1(
        &n,
        ZkOp::Check {
            path: "/v".into(),
            version: 0,
        },
    )
    .await;
    assert_eq!(
        checked,
        Ok(ZkOpResult::Check {
            stat: n.zk_exists("/v").expect("/v")
        })
    );
    assert_eq!(
        zk1(
            &n,
            ZkOp::Check {
                path: "/nope".into(),
                version: -1
            }
        )
        .await,
        Err(ZkError::NoNode)
    );
}

/// Two counters per parent (D5), as ZooKeeper 3.8.0: the sequential suffix
/// counts child creates only (no gap after a delete), the stat cversion
/// counts creates and deletes.
#[tokio::test]
async fn sequential_names_count_creates_cversion_counts_deletes_too() {
    let n = common::start();
    create(&n, "/q", "", CreateMode::Persistent).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(
            create(&n, "/q/n-", "", CreateMode::PersistentSequential)
                .await
                .0,
        );
    }
    assert_eq!(
        names,
        ["/q/n-0000000000", "/q/n-0000000001", "/q/n-0000000002"]
    );
    assert_eq!(
        zk1(&n, del("/q/n-0000000001", -1)).await,
        Ok(ZkOpResult::Delete)
    );
    assert_eq!(n.zk_exists("/q").unwrap().cversion, 4);
    let (p, st) = create(&n, "/q/n-", "", CreateMode::PersistentSequential).await;
    assert_eq!(p, "/q/n-0000000003", "no gap after the delete");
    assert_eq!(st.version, 0);
    // Other creates count, whichever protocol made them (D2).
    create(&n, "/q/plain", "", CreateMode::Persistent).await;
    put(&n, "/q/from-etcd", "x").await;
    let (p, _) = create(&n, "/q/", "", CreateMode::PersistentSequential).await;
    assert_eq!(
        p, "/q/0000000006",
        "sequential with a trailing-slash prefix names a child"
    );
    // A delete inside a multi before a sequential create does not count.
    let (_, r) = zk(
        &n,
        0,
        &[],
        vec![
            del("/q/plain", -1),
            create_op("/q/n-", "", CreateMode::PersistentSequential),
        ],
        true,
    )
    .await;
    match r {
        ZkWriteResult::Applied(v) => match &v[1] {
            ZkOpResult::Create { path, .. } => assert_eq!(path, "/q/n-0000000007"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // 8 creates, 2 deletes.
    assert_eq!(n.zk_exists("/q").unwrap().cversion, 10);
    assert_eq!(
        children(&n, "/q"),
        [
            "0000000006",
            "from-etcd",
            "n-0000000000",
            "n-0000000002",
            "n-0000000003",
            "n-0000000007"
        ]
    );
}

#[tokio::test]
async fn ephemerals_belong_to_their_session() {
    let n = common::start();
    create(&n, "/e", "", CreateMode::Persistent).await;
    // No or unknown session.
    assert_eq!(
        zk1(&n, create_op("/e/x", "", CreateMode::Ephemeral)).await,
        Err(ZkError::SessionExpired)
    );
    assert_eq!(
        zk1_as(&n, 4242, &[], create_op("/e/x", "", CreateMode::Ephemeral)).await,
        Err(ZkError::SessionExpired)
    );
    let sid = 777;
    common::grant(&n, sid, 60_000).await;
    let Ok(ZkOpResult::Create { stat, .. }) =
        zk1_as(&n, sid, &[], create_op("/e/x", "d", CreateMode::Ephemeral)).await
    else {
        panic!()
    };
    assert_eq!(stat.ephemeral_owner, sid);
    let Ok(ZkOpResult::Create { path, stat }) = zk1_as(
        &n,
        sid,
        &[],
        create_op("/e/s-", "", CreateMode::EphemeralSequential),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(path, "/e/s-0000000001");
    assert_eq!(stat.ephemeral_owner, sid);
    assert_eq!(
        common::get(&n, "/e/x").unwrap().lease,
        sid,
        "an ephemeral is a leased key"
    );
    assert_eq!(n.zk_ephemerals(sid, "/e"), ["/e/s-0000000001", "/e/x"]);
    // No children under ephemerals (ZooKeeper requests only).
    assert_eq!(
        zk1(&n, create_op("/e/x/c", "", CreateMode::Persistent)).await,
        Err(ZkError::NoChildrenForEphemerals)
    );
    // etcd keeps pure etcd semantics (D2).
    put(&n, "/e/x/etcd-child", "").await;
    assert_eq!(children(&n, "/e/x"), ["etcd-child"]);
    common::delete(&n, "/e/x/etcd-child").await;

    // Revoking the session deletes its ephemerals in one revision; the
    // parent's cversion/pzxid move and child watchers hear of it.
    let mut w = n
        .watch(WatchRequest {
            key: b"/e".to_vec(),
            range_end: b"/e0".to_vec(),
            start_revision: 0,
            tree_events: true,
        })
        .unwrap();
    let before = n.zk_exists("/e").unwrap();
    let a = common::propose(&n, Command::LeaseRevoke { id: sid }).await;
    assert!(matches!(
        a.result,
        janus_core::CommandResult::LeaseRevoke(Ok(()))
    ));
    assert_eq!(n.zk_exists("/e/x"), None);
    assert_eq!(n.zk_exists("/e/s-0000000001"), None);
    let after = n.zk_exists("/e").unwrap();
    assert_eq!(after.cversion, before.cversion + 2);
    assert_eq!(after.pzxid, a.revision);
    assert_eq!(after.num_children, 0);
    let mut got = Vec::new();
    while got.len() < 4 {
        let evs = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("events arrive")
            .unwrap();
        got.extend(evs);
    }
    assert!(got.iter().all(|e| e.kv.mod_revision == a.revision));
    let deletes: Vec<_> = got
        .iter()
        .filter(|e| e.kind == EventKind::Delete)
        .map(|e| e.kv.key.clone())
        .collect();
    assert_eq!(deletes, [b"/e/s-0000000001".to_vec(), b"/e/x".to_vec()]);
    let child_changes = got
        .iter()
        .filter(|e| e.kind == EventKind::ChildrenChanged && e.kv.key == b"/e")
        .count();
    assert_eq!(child_changes, 2);
    // The session is gone: ephemeral creates fail.
    assert_eq!(
        zk1_as(&n, sid, &[], create_op("/e/y", "", CreateMode::Ephemeral)).await,
        Err(ZkError::SessionExpired)
    );
}

#[tokio::test]
async fn multi_is_all_or_nothing() {
    let n = common::start();
    create(&n, "/m", "", CreateMode::Persistent).await;
    let rev = n.revision();
    let (r, res) = zk(
        &n,
        0,
        &[],
        vec![
            create_op("/m/1", "", CreateMode::Persistent),
            set_data("/m", "x", -1),
            create_op("/m/1", "", CreateMode::Persistent),
            create_op("/m/2", "", CreateMode::Persistent),
        ],
        true,
    )
    .await;
    assert_eq!(
        res,
        ZkWriteResult::Failed {
            index: 2,
            error: ZkError::NodeExists
        }
    );
    assert_eq!(r, rev);
    assert_eq!(n.revision(), rev);
    assert_eq!(n.zk_exists("/m/1"), None);
    assert_eq!(n.zk_exists("/m").unwrap().version, 0);
    assert_eq!(n.zk_exists("/m").unwrap().cversion, 0);
    assert!(children(&n, "/m").is_empty());

    // Check failing in a multi.
    let (_, res) = zk(
        &n,
        0,
        &[],
        vec![
            create_op("/m/1", "", CreateMode::Persistent),
            ZkOp::Check {
                path: "/m".into(),
                version: 7,
            },
        ],
        true,
    )
    .await;
    assert_eq!(
        res,
        ZkWriteResult::Failed {
            index: 1,
            error: ZkError::BadVersion
        }
    );
    assert_eq!(n.zk_exists("/m/1"), None);

    // Later ops see earlier ones; all at one revision.
    let (r, res) = zk(
        &n,
        0,
        &[],
        vec![
            create_op("/m/p", "", CreateMode::Persistent),
            create_op("/m/p/c", "", CreateMode::Persistent),
            create_op("/m/p/s-", "", CreateMode::PersistentSequential),
            set_data("/m/p", "pd", 0),
            ZkOp::Check {
                path: "/m/p".into(),
                version: 1,
            },
            create_op("/m/p/s-", "", CreateMode::PersistentSequential),
        ],
        true,
    )
    .await;
    assert_eq!(r, rev + 1);
    let ZkWriteResult::Applied(results) = res else {
        panic!("{res:?}")
    };
    assert_eq!(results.len(), 6);
    let ZkOpResult::Create { path, stat } = &results[2] else {
        panic!()
    };
    assert_eq!(path, "/m/p/s-0000000001");
    assert_eq!(stat.czxid, r);
    let ZkOpResult::Create { path, .. } = &results[5] else {
        panic!()
    };
    assert_eq!(path, "/m/p/s-0000000002");
    // The check sees the multi's earlier setData.
    assert!(
        matches!(&results[4], ZkOpResult::Check { stat } if stat.version == 1),
        "{:?}",
        results[4]
    );
    let p = n.zk_exists("/m/p").unwrap();
    assert_eq!((p.czxid, p.mzxid, p.pzxid, p.version), (r, r, r, 1));
    assert_eq!(p.cversion, 3);
    assert_eq!(p.num_children, 3);

    // Delete order inside a multi matters.
    let (_, res) = zk(&n, 0, &[], vec![del("/m/p", -1), del("/m/p/c", -1)], true).await;
    assert_eq!(
        res,
        ZkWriteResult::Failed {
            index: 0,
            error: ZkError::NotEmpty
        }
    );
    let (_, res) = zk(
        &n,
        0,
        &[],
        vec![
            del("/m/p/c", -1),
            del("/m/p/s-0000000001", -1),
            del("/m/p/s-0000000002", -1),
            del("/m/p", 1),
        ],
        true,
    )
    .await;
    assert!(matches!(res, ZkWriteResult::Applied(_)), "{res:?}");
    assert_eq!(n.zk_exists("/m/p"), None);
    // Creating under a node deleted earlier in the same multi fails.
    let (_, res) = zk(
        &n,
        0,
        &[],
        vec![
            create_op("/m/q", "", CreateMode::Persistent),
            del("/m/q", -1),
            create_op("/m/q/c", "", CreateMode::Persistent),
        ],
        true,
    )
    .await;
    assert_eq!(
        res,
        ZkWriteResult::Failed {
            index: 2,
            error: ZkError::NoNode
        }
    );
    // An op the frontend refused from the request alone fails where it
    // stands: an earlier op failing on the tree is reported first
    // (ZooKeeper's PrepRequestProcessor checks ops in order).
    let refused = ZkOp::Refused {
        error: ZkError::BadArguments,
    };
    let (_, res) = zk(
        &n,
        0,
        &[],
        vec![set_data("/m/missing", "", -1), refused.clone()],
        true,
    )
    .await;
    assert_eq!(
        res,
        ZkWriteResult::Failed {
            index: 0,
            error: ZkError::NoNode
        }
    );
    let (_, res) = zk(
        &n,
        0,
        &[],
        vec![
            create_op("/m/r", "", CreateMode::Persistent),
            refused,
            set_data("/m/missing", "", -1),
        ],
        true,
    )
    .await;
    assert_eq!(
        res,
        ZkWriteResult::Failed {
            index: 1,
            error: ZkError::BadArguments
        }
    );
    assert_eq!(n.zk_exists("/m/r"), None, "a failed multi changes nothing");
}

/// The root as a ZooKeeper client sees it: its system child `zookeeper`
/// (served by the frontend, never stored) is listed and counted, once even
/// when a key of that name was written through etcd.
#[tokio::test]
async fn root_lists_and_counts_its_system_child() {
    let n = common::start();
    assert_eq!(children(&n, "/"), ["zookeeper"]);
    assert_eq!(n.zk_exists("/").expect("root").num_children, 1);
    create(&n, "/a", "", CreateMode::Persistent).await;
    create(&n, "/zz", "", CreateMode::Persistent).await;
    assert_eq!(children(&n, "/"), ["a", "zookeeper", "zz"]);
    assert_eq!(n.zk_exists("/").expect("root").num_children, 3);
    assert_eq!(n.zk_all_children_number("/", &[]), Ok(2 + 3));
    put(&n, "/zookeeper/x", "shadowed").await;
    assert_eq!(children(&n, "/"), ["a", "zookeeper", "zz"]);
    assert_eq!(n.zk_exists("/").expect("root").num_children, 3);
    assert_eq!(n.zk_all_children_number("/", &[]), Ok(2 + 3));
    assert_eq!(n.zk_exists("/a").expect("/a").num_children, 0);
}

#[tokio::test]
async fn implicit_parents_from_etcd_keys() {
    let n = common::start();
    let (r, _) = put(&n, "/svc/web/1", "addr").await;
    let svc = n.zk_exists("/svc").expect("implicit /svc");
    let web = n.zk_exists("/svc/web").expect("implicit /svc/web");
    assert_eq!(children(&n, "/svc"), ["web"]);
    assert_eq!(children(&n, "/svc/web"), ["1"]);
    assert!(children(&n, "/").contains(&"svc".into()));
    assert_eq!(svc.num_children, 1);
    assert_eq!(web.num_children, 1);
    assert_eq!(web.pzxid, r);
    assert_eq!(n.zk_get_data("/svc/web", &[]).unwrap().0.unwrap(), b"");
    assert_eq!(
        n.zk_get_data("/svc/web/1", &[]).unwrap().0.unwrap(),
        b"addr"
    );
    assert_eq!(n.zk_get_data("/svc/web/1", &[]).unwrap().1.czxid, r);
    // Implicit nodes are nodes for ZooKeeper's rules.
    assert_eq!(
        zk1(&n, create_op("/svc", "", CreateMode::Persistent)).await,
        Err(ZkError::NodeExists)
    );
    assert_eq!(zk1(&n, del("/svc/web", -1)).await, Err(ZkError::NotEmpty));
    create(&n, "/svc/web/2", "", CreateMode::Persistent).await;
    assert_eq!(children(&n, "/svc/web"), ["1", "2"]);
    assert_eq!(n.zk_all_children_number("/svc", &[]), Ok(3));
    // Keys that are not valid paths are invisible to ZooKeeper.
    put(&n, "/svc//bad", "").await;
    put(&n, "/svc/web/", "").await;
    put(&n, "plain", "").await;
    assert_eq!(children(&n, "/svc"), ["web"]);
    assert_eq!(children(&n, "/svc/web"), ["1", "2"]);
    // Deleting the last descendants removes the implicit parents.
    delete(&n, "/svc/web/1").await;
    assert_eq!(zk1(&n, del("/svc/web/2", -1)).await, Ok(ZkOpResult::Delete));
    assert_eq!(n.zk_exists("/svc/web"), None);
    assert_eq!(n.zk_exists("/svc"), None);
    assert!(!children(&n, "/").contains(&"svc".into()));
    // etcd delete of a range keeps the tree consistent.
    put(&n, "/r/a/1", "").await;
    put(&n, "/r/a/2", "").await;
    put(&n, "/r/b", "").await;
    let a = common::propose(
        &n,
        Command::DeleteRange(janus_core::kv::DeleteRangeRequest {
            key: b"/r/".to_vec(),
            range_end: b"/r0".to_vec(),
            prev_kv: false,
        }),
    )
    .await;
    assert!(matches!(
        a.result,
        janus_core::CommandResult::DeleteRange(Ok(ref d)) if d.deleted == 3
    ));
    assert_eq!(n.zk_exists("/r"), None);
    assert_eq!(n.zk_exists("/r/a"), None);
}

#[tokio::test]
async fn acls_are_enforced() {
    let n = common::start();
    let me = Id::new("digest", &digest_id("alice:secret"));
    let other = Id::new("digest", &digest_id("bob:pw"));
    let acl = vec![Acl {
        perms: perms::ALL,
        id: me.clone(),
    }];
    let op = ZkOp::Create {
        path: "/sec".into(),
        data: Some(b"s".to_vec()),
        acl: acl.clone(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    };
    assert_eq!(
        zk1(
            &n,
            ZkOp::Create {
                path: "/bad".into(),
                data: Some(vec![]),
                acl: vec![],
                mode: CreateMode::Persistent,
                ttl_ms: 0
            }
        )
        .await,
        Err(ZkError::InvalidAcl)
    );
    assert!(zk1(&n, op).await.is_ok());
    // getACL needs READ or ADMIN (ZooKeeper 3.8); the owner has both.
    assert_eq!(n.zk_get_acl("/sec", &[]), Err(ZkError::NoAuth));
    assert_eq!(
        n.zk_get_acl("/sec", std::slice::from_ref(&me)).unwrap().0,
        acl
    );
    assert_eq!(n.zk_get_data("/sec", &[]), Err(ZkError::NoAuth));
    assert_eq!(
        n.zk_get_data("/sec", std::slice::from_ref(&other)),
        Err(ZkError::NoAuth)
    );
    assert_eq!(
        n.zk_get_data("/sec", std::slice::from_ref(&me))
            .unwrap()
            .0
            .unwrap(),
        b"s"
    );
    assert_eq!(
        zk1(&n, set_data("/sec", "x", -1)).await,
        Err(ZkError::NoAuth)
    );
    assert_eq!(
        zk1(&n, create_op("/sec/c", "", CreateMode::Persistent)).await,
        Err(ZkError::NoAuth)
    );
    assert!(
        zk1_as(&n, 0, std::slice::from_ref(&me), set_data("/sec", "x", -1))
            .await
            .is_ok()
    );
    assert!(zk1_as(
        &n,
        0,
        std::slice::from_ref(&me),
        create_op("/sec/c", "", CreateMode::Persistent)
    )
    .await
    .is_ok());
    // Delete needs DELETE on the parent.
    assert_eq!(zk1(&n, del("/sec/c", -1)).await, Err(ZkError::NoAuth));
    // setACL: ADMIN and aversion.
    let open_read = vec![Acl {
        perms: perms::READ,
        id: Id::new("world", "anyone"),
    }];
    let set_acl = |v| ZkOp::SetAcl {
        path: "/sec".into(),
        acl: open_read.clone(),
        version: v,
    };
    assert_eq!(zk1(&n, set_acl(-1)).await, Err(ZkError::NoAuth));
    assert_eq!(
        zk1_as(&n, 0, std::slice::from_ref(&me), set_acl(3)).await,
        Err(ZkError::BadVersion)
    );
    let Ok(ZkOpResult::SetAcl { stat }) =
        zk1_as(&n, 0, std::slice::from_ref(&me), set_acl(0)).await
    else {
        panic!()
    };
    assert_eq!(stat.aversion, 1);
    assert_eq!(stat.version, 1, "setACL leaves the data version alone");
    assert_eq!(n.zk_get_data("/sec", &[]).unwrap().0.unwrap(), b"x");
    assert_eq!(
        zk1_as(&n, 0, std::slice::from_ref(&me), set_data("/sec", "y", -1)).await,
        Err(ZkError::NoAuth),
        "world:anyone READ only"
    );
    // The `auth` scheme expands to the caller's ids; without any it is invalid.
    let auth_acl = vec![Acl {
        perms: perms::ALL,
        id: Id::new("auth", ""),
    }];
    let mk = |p: &str| ZkOp::Create {
        path: p.into(),
        data: Some(vec![]),
        acl: auth_acl.clone(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    };
    assert_eq!(zk1(&n, mk("/auth1")).await, Err(ZkError::InvalidAcl));
    assert!(zk1_as(&n, 0, std::slice::from_ref(&other), mk("/auth1"))
        .await
        .is_ok());
    assert_eq!(
        n.zk_get_acl("/auth1", std::slice::from_ref(&other))
            .unwrap()
            .0,
        vec![Acl {
            perms: perms::ALL,
            id: other.clone()
        }]
    );
    // ACLs survive a restart.
    let n2 = common::restart(n);
    assert_eq!(n2.zk_get_acl("/sec", &[]).unwrap().0, open_read);
    assert_eq!(n2.zk_get_acl("/sec", &[]).unwrap().1.aversion, 1);
    assert_eq!(n2.zk_get_data("/auth1", &[]), Err(ZkError::NoAuth));
}

#[tokio::test]
async fn containers_are_reaped_after_their_last_child() {
    let n = common::start();
    let (_, st) = create(&n, "/c", "", CreateMode::Container).await;
    // Stored as Long.MIN_VALUE inside ZooKeeper, reported as 0 (3.8).
    assert_eq!(st.ephemeral_owner, 0);
    create(&n, "/never", "", CreateMode::Container).await;
    create(&n, "/c/child", "", CreateMode::Persistent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        n.zk_exists("/c").is_some(),
        "a container with children stays"
    );
    assert!(
        n.zk_exists("/never").is_some(),
        "a container that never had children stays"
    );
    assert_eq!(zk1(&n, del("/c/child", -1)).await, Ok(ZkOpResult::Delete));
    assert!(
        eventually(Duration::from_secs(5), || n.zk_exists("/c").is_none()).await,
        "empty container reaped"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(n.zk_exists("/never").is_some());
    assert!(n.zk_exists("/").is_some());
}

#[tokio::test]
async fn ttl_nodes_are_reaped_when_idle() {
    let n = common::start();
    let mk = |p: &str, ttl_ms: i64, mode| ZkOp::Create {
        path: p.into(),
        data: Some(vec![]),
        acl: Acl::open(),
        mode,
        ttl_ms,
    };
    assert_eq!(
        zk1(&n, mk("/t0", 0, CreateMode::PersistentWithTtl)).await,
        Err(ZkError::BadArguments)
    );
    let Ok(ZkOpResult::Create { stat, .. }) =
        zk1(&n, mk("/t", 400, CreateMode::PersistentWithTtl)).await
    else {
        panic!()
    };
    // Stored as 0xFF00.. | ttl inside ZooKeeper, reported as 0 (3.8).
    assert_eq!(stat.ephemeral_owner, 0);
    let Ok(ZkOpResult::Create { path, .. }) =
        zk1(&n, mk("/ts-", 400, CreateMode::PersistentSequentialWithTtl)).await
    else {
        panic!()
    };
    // A TTL node with a child is not reaped.
    let Ok(ZkOpResult::Create { .. }) =
        zk1(&n, mk("/tp", 200, CreateMode::PersistentWithTtl)).await
    else {
        panic!()
    };
    create(&n, "/tp/kid", "", CreateMode::Persistent).await;
    assert!(n.zk_exists("/t").is_some());
    assert!(
        eventually(Duration::from_secs(5), || n.zk_exists("/t").is_none()
            && n.zk_exists(&path).is_none())
        .await,
        "idle TTL nodes reaped"
    );
    assert!(n.zk_exists("/tp").is_some());
    assert!(n.zk_exists("/tp/kid").is_some());
}

#[tokio::test]
async fn tree_bookkeeping_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cv, pz) = {
        let n = janus_core::Node::start(common::config(dir.path())).unwrap();
        create(&n, "/p", "", CreateMode::Persistent).await;
        for _ in 0..3 {
            create(&n, "/p/s-", "", CreateMode::PersistentSequential).await;
        }
        zk1(&n, del("/p/s-0000000000", -1)).await.unwrap();
        common::grant(&n, 55, 600_000).await;
        zk1_as(&n, 55, &[], create_op("/p/eph", "", CreateMode::Ephemeral))
            .await
            .unwrap();
        // History that derived cversion is compacted away.
        let rev = n.revision();
        common::propose(&n, Command::Compact { revision: rev }).await;
        let st = n.zk_exists("/p").unwrap();
        n.stop();
        (st.cversion, st.pzxid)
    };
    let n = janus_core::Node::start(common::config(dir.path())).unwrap();
    let st = n.zk_exists("/p").unwrap();
    assert_eq!((st.cversion, st.pzxid, st.num_children), (cv, pz, 3));
    assert_eq!(st.cversion, 5);
    assert_eq!(n.zk_exists("/p/eph").unwrap().ephemeral_owner, 55);
    let (p, _) = create(&n, "/p/s-", "", CreateMode::PersistentSequential).await;
    assert_eq!(p, "/p/s-0000000004", "4 creates before it (D5)");
    // The session survives too: revoking it deletes its ephemeral.
    common::propose(&n, Command::LeaseRevoke { id: 55 }).await;
    assert_eq!(n.zk_exists("/p/eph"), None);
    n.stop();
}

#[tokio::test]
async fn etcd_put_with_lease_is_an_ephemeral() {
    let n = common::start();
    common::grant(&n, 91, 60_000).await;
    put_lease(&n, "/lk", "v", 91).await;
    assert_eq!(n.zk_exists("/lk").unwrap().ephemeral_owner, 91);
    assert_eq!(n.zk_ephemerals(91, "/"), ["/lk"]);
    assert_eq!(
        zk1(&n, create_op("/lk/c", "", CreateMode::Persistent)).await,
        Err(ZkError::NoChildrenForEphemerals)
    );
    // A put without the lease detaches it (etcd semantics).
    common::propose(
        &n,
        Command::Put(PutRequest {
            key: b"/lk".to_vec(),
            value: b"w".to_vec(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(n.zk_exists("/lk").unwrap().ephemeral_owner, 0);
    assert!(n.zk_ephemerals(91, "/").is_empty());
    // setData keeps the session owner.
    common::grant(&n, 92, 60_000).await;
    zk1_as(&n, 92, &[], create_op("/e2", "", CreateMode::Ephemeral))
        .await
        .unwrap();
    zk1(&n, set_data("/e2", "new", -1)).await.unwrap();
    assert_eq!(n.zk_exists("/e2").unwrap().ephemeral_owner, 92);
}

/// A session's sequenced writes apply only in order: a write after a gap
/// (an earlier write lost) is refused and changes nothing; a write answered
/// with a ZooKeeper error still moves the sequence on; the sequence
/// survives a restart.
/// FIFO per connection (ZooKeeper's guarantee): a write never applies
/// after a lost earlier write of its connection, while a new connection of
/// the same session (a reconnect resending what it had not seen answered)
/// starts its own order, whatever the old connection still has in flight.
#[tokio::test]
async fn connection_writes_apply_in_sequence() {
    let n = common::start();
    let session = janus_core::new_lease_id();
    common::propose(
        &n,
        Command::LeaseGrant {
            id: session,
            ttl_ms: 60_000,
        },
    )
    .await;
    let write = |path: &str, conn: u64, seq: u64| Command::Zk {
        session,
        auth: vec![],
        ops: vec![create_op(path, "", CreateMode::Persistent)],
        multi: false,
        conn,
        seq,
    };
    let result = |a: janus_core::Applied| match a.result {
        janus_core::CommandResult::Zk(r) => r,
        other => panic!("{other:?}"),
    };
    let refused = ZkWriteResult::Failed {
        index: 0,
        error: ZkError::OutOfOrder,
    };
    let (a, b) = (11, 22);
    assert!(matches!(
        result(common::propose(&n, write("/s1", a, 1)).await),
        ZkWriteResult::Applied(_)
    ));
    let before = n.revision();
    // Write 2 of connection a was lost: its write 3 must not apply.
    assert_eq!(
        result(common::propose(&n, write("/s3", a, 3)).await),
        refused
    );
    assert_eq!(n.revision(), before, "a refused write takes no revision");
    assert_eq!(n.zk_exists("/s3"), None);
    // The client reconnects (connection b) and resends: accepted, from 1.
    assert!(matches!(
        result(common::propose(&n, write("/s2", b, 1)).await),
        ZkWriteResult::Applied(_)
    ));
    assert_eq!(
        result(common::propose(&n, write("/b3", b, 3)).await),
        refused
    );
    // The old connection's pipelined write 2 still follows its own order,
    // and does not disturb the new connection's.
    assert_eq!(
        result(common::propose(&n, write("/s2", a, 2)).await),
        ZkWriteResult::Failed {
            index: 0,
            error: ZkError::NodeExists
        }
    );
    assert!(matches!(
        result(common::propose(&n, write("/b2", b, 2)).await),
        ZkWriteResult::Applied(_)
    ));
    // The order survives a restart.
    let n = common::restart(n);
    assert_eq!(
        result(common::propose(&n, write("/b4", b, 4)).await),
        refused
    );
    assert!(matches!(
        result(common::propose(&n, write("/b3", b, 3)).await),
        ZkWriteResult::Applied(_)
    ));
}

/// ZooKeeper keeps null data apart from empty data: getData answers null,
/// dataLength is 0. Null belongs to the value: a setData with bytes or an
/// etcd put replaces it (etcd sees an empty value meanwhile); an etcd put
/// with `ignore_value` keeps it; it survives a restart.
#[tokio::test]
async fn null_data_is_kept_apart_from_empty() {
    let mut t = common::start();
    let null_create = |p: &str| ZkOp::Create {
        path: p.into(),
        data: None,
        acl: Acl::open(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
    };
    zk1(&t.node, null_create("/null")).await.expect("create");
    create(&t.node, "/empty", "", CreateMode::Persistent).await;
    let (d, st) = t.node.zk_get_data("/null", &[]).unwrap();
    assert_eq!((d, st.data_length), (None, 0));
    assert_eq!(t.node.zk_get_data("/empty", &[]).unwrap().0, Some(vec![]));
    assert_eq!(common::get(&t.node, "/null").unwrap().value, b"");

    // setData with null, then with bytes.
    let set_null = ZkOp::SetData {
        path: "/empty".into(),
        data: None,
        version: -1,
    };
    zk1(&t.node, set_null).await.expect("set null");
    assert_eq!(t.node.zk_get_data("/empty", &[]).unwrap().0, None);
    zk1(&t.node, set_data("/empty", "x", -1))
        .await
        .expect("set");
    assert_eq!(
        t.node.zk_get_data("/empty", &[]).unwrap().0,
        Some(b"x".to_vec())
    );

    // etcd: ignore_value keeps null, a put of a value (even empty) ends it.
    let keep = PutRequest {
        key: b"/null".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    common::propose(&t.node, Command::Put(keep)).await;
    assert_eq!(t.node.zk_get_data("/null", &[]).unwrap().0, None);
    t = common::restart(t);
    assert_eq!(t.node.zk_get_data("/null", &[]).unwrap().0, None);
    put(&t.node, "/null", "").await;
    assert_eq!(t.node.zk_get_data("/null", &[]).unwrap().0, Some(vec![]));
}
