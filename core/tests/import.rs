//! The import commands of a migration: revisions and stats exactly as the
//! source reported them, the migration lock refusing client writes of both
//! protocols, a non-empty store refused, a bad batch writing nothing.

mod common;

use janus_core::import::{ImportBatch, ImportError, ImportItem, ImportKey, ImportOp};
use janus_core::kv::PutRequest;
use janus_core::znode::{Acl, CreateMode, Id, NodeKind, ZMeta, ZkOp, ZkWriteResult};
use janus_core::{Command, CommandResult, KvError, Node, ZkError};

async fn import(node: &Node, op: ImportOp) -> Result<janus_core::import::ImportReply, ImportError> {
    match common::propose(node, Command::Import(op)).await.result {
        CommandResult::Import(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn znode(key: &str, czxid: i64, mzxid: i64, version: i64, tree: (i32, i64)) -> ImportItem {
    ImportItem::Put(ImportKey {
        key: key.as_bytes().to_vec(),
        value: Some(key.as_bytes().to_vec()),
        create_revision: czxid,
        mod_revision: mzxid,
        version,
        lease: 0,
        ctime: 1000,
        mtime: 2000,
        znode: Some(ZMeta {
            acl: vec![Acl {
                perms: 1,
                id: Id::new("ip", "10.0.0.1"),
            }],
            aversion: 3,
            kind: NodeKind::Normal,
        }),
        tree: Some(tree),
    })
}

const EPOCH: i64 = 5 << 32;

#[tokio::test]
async fn zookeeper_stats_and_revisions_are_kept_and_writes_refused() {
    let t = common::start();
    let node = &t.node;
    import(
        node,
        ImportOp::Begin {
            source: "zk".into(),
            force: false,
        },
    )
    .await
    .unwrap();
    // Two nodes written by one multi share mzxid EPOCH+7.
    let batch = ImportBatch {
        revision: EPOCH + 20,
        explicit_tree: true,
        items: vec![
            znode("/a", EPOCH + 1, EPOCH + 7, 5, (9, EPOCH + 12)),
            znode("/a/x", EPOCH + 2, EPOCH + 7, 1, (0, EPOCH + 2)),
            znode("/a/y", EPOCH + 3, EPOCH + 3, 1, (0, EPOCH + 3)),
        ],
    };
    let r = import(node, ImportOp::Batch(batch.clone())).await.unwrap();
    assert_eq!((r.revision, r.applied), (EPOCH + 20, 3));
    assert_eq!(node.revision(), EPOCH + 20);
    let st = node.zk_exists("/a").unwrap();
    assert_eq!(
        (st.czxid, st.mzxid, st.pzxid, st.version, st.aversion),
        (EPOCH + 1, EPOCH + 7, EPOCH + 12, 4, 3)
    );
    assert_eq!((st.ctime, st.mtime, st.num_children), (1000, 2000, 2));
    // ZooKeeper's cversion = 2 * creates - numChildren.
    assert_eq!(st.cversion, 16);
    let x = node.zk_exists("/a/x").unwrap();
    assert_eq!(
        (x.czxid, x.mzxid, x.pzxid),
        (EPOCH + 2, EPOCH + 7, EPOCH + 2)
    );
    // Sent again (a resumed import): nothing changes.
    let again = import(node, ImportOp::Batch(batch)).await.unwrap();
    assert_eq!((again.applied, again.skipped), (0, 3));
    assert_eq!(node.zk_exists("/a").unwrap(), st);

    // Client writes of both protocols are refused while the lock is held.
    let put = common::propose(
        node,
        Command::Put(PutRequest {
            key: b"/b".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        put.result,
        CommandResult::Put(Err(KvError::MigrationInProgress))
    );
    let zk = common::propose(
        node,
        Command::Zk {
            session: 0,
            auth: vec![],
            ops: vec![ZkOp::Create {
                path: "/a/seq-".into(),
                data: Some(vec![]),
                acl: Acl::open(),
                mode: CreateMode::PersistentSequential,
                ttl_ms: 0,
            }],
            multi: false,
            conn: 0,
            seq: 0,
        },
    )
    .await;
    assert_eq!(
        zk.result,
        CommandResult::Zk(ZkWriteResult::Failed {
            index: 0,
            error: ZkError::MigrationInProgress
        })
    );
    assert_eq!(node.revision(), EPOCH + 20);

    // A bad batch (a key below the revision the migration began at) writes
    // nothing, not even its good items.
    let bad = import(
        node,
        ImportOp::Batch(ImportBatch {
            revision: EPOCH + 30,
            explicit_tree: true,
            items: vec![
                znode("/c", EPOCH + 25, EPOCH + 25, 1, (0, 0)),
                znode("/d", 1, 1, 1, (0, 0)),
            ],
        }),
    )
    .await;
    assert!(
        matches!(bad, Err(ImportError::BadItem { ref key, .. }) if key == "/d"),
        "{bad:?}"
    );
    assert!(node.zk_exists("/c").is_none());
    assert_eq!(node.revision(), EPOCH + 20);

    import(node, ImportOp::End).await.unwrap();
    // After the lock: the next write continues above the source's zxids,
    // and the sequential counter where the source's was.
    let zk = common::propose(
        node,
        Command::Zk {
            session: 0,
            auth: vec![Id::new("super", "")],
            ops: vec![ZkOp::Create {
                path: "/a/seq-".into(),
                data: Some(vec![]),
                acl: Acl::open(),
                mode: CreateMode::PersistentSequential,
                ttl_ms: 0,
            }],
            multi: false,
            conn: 0,
            seq: 0,
        },
    )
    .await;
    match zk.result {
        CommandResult::Zk(ZkWriteResult::Applied(r)) => {
            assert!(format!("{r:?}").contains("/a/seq-0000000009"), "{r:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(zk.revision, EPOCH + 21);
    // The imported store survives a restart.
    let t = common::restart(t);
    let st2 = t.node.zk_exists("/a/x").unwrap();
    assert_eq!((st2.czxid, st2.mzxid), (EPOCH + 2, EPOCH + 7));
}

#[tokio::test]
async fn a_non_empty_store_is_refused_unless_forced() {
    let t = common::start();
    let node = &t.node;
    common::put(node, "/old", "v").await;
    let r = import(
        node,
        ImportOp::Begin {
            source: "etcd".into(),
            force: false,
        },
    )
    .await;
    assert_eq!(r, Err(ImportError::NotEmpty { keys: 1 }));
    let r = import(
        node,
        ImportOp::Begin {
            source: "etcd".into(),
            force: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(r.revision, 3);
    assert!(common::get(node, "/old").is_none());
    let again = import(
        node,
        ImportOp::Begin {
            source: "other".into(),
            force: true,
        },
    )
    .await;
    assert_eq!(
        again,
        Err(ImportError::Locked {
            from: "etcd".into()
        })
    );
    // etcd keys: revisions kept, tombstones at the source's revision.
    let key = |k: &str, c: i64, m: i64, v: i64| {
        ImportItem::Put(ImportKey {
            key: k.as_bytes().to_vec(),
            value: Some(b"x".to_vec()),
            create_revision: c,
            mod_revision: m,
            version: v,
            ..Default::default()
        })
    };
    import(
        node,
        ImportOp::Batch(ImportBatch {
            revision: 40,
            explicit_tree: false,
            items: vec![
                key("/k1", 10, 30, 4),
                key("/k2", 30, 30, 1),
                ImportItem::Delete {
                    key: b"/k1".to_vec(),
                    revision: 35,
                },
            ],
        }),
    )
    .await
    .unwrap();
    assert!(common::get(node, "/k1").is_none());
    // Deleted and created again between two reads of the source: the old
    // incarnation ends at the new create revision.
    import(
        node,
        ImportOp::Batch(ImportBatch {
            revision: 45,
            explicit_tree: false,
            items: vec![key("/k2", 42, 44, 2)],
        }),
    )
    .await
    .unwrap();
    let k2 = common::get(node, "/k2").unwrap();
    assert_eq!(
        (k2.create_revision, k2.mod_revision, k2.version),
        (42, 44, 2)
    );
    import(
        node,
        ImportOp::Batch(ImportBatch {
            revision: 50,
            explicit_tree: false,
            items: vec![key("/k2", 30, 30, 1)],
        }),
    )
    .await
    .unwrap();
    // An older copy sent again is skipped.
    let k2 = common::get(node, "/k2").unwrap();
    assert_eq!(
        (k2.create_revision, k2.mod_revision, k2.version),
        (42, 44, 2)
    );
    assert_eq!(node.revision(), 50);
    import(node, ImportOp::End).await.unwrap();
}
