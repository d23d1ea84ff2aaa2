//! Shared helpers for janus-core's integration tests: a node in a temp dir
//! and short-hands for the commands the tests propose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use janus_core::kv::{
    DeleteRangeRequest, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use janus_core::znode::{Acl, CreateMode, Id, Stat, ZkOp, ZkOpResult, ZkWriteResult};
use janus_core::{Applied, Command, CommandResult, Node, NodeConfig, ZkError};

/// A running node on a fresh data dir that is removed on drop.
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.node.stop();
    }
}

pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// Test defaults: fast tick and reaper.
pub fn config(dir: &Path) -> NodeConfig {
    let mut cfg = NodeConfig::single(data_dir(dir));
    cfg.tick = Duration::from_millis(20);
    cfg.reap_interval = Duration::from_millis(50);
    cfg
}

pub fn start() -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(config(dir.path())).expect("node starts");
    TestNode { node, dir }
}

pub fn start_with(f: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    f(&mut cfg);
    let node = Node::start(cfg).expect("node starts");
    TestNode { node, dir }
}

/// Stops the node, releases its data dir and starts a new node on it.
/// (fjall keeps the directory locked until every handle of the old node,
/// watchers included, is dropped.)
pub fn restart(mut t: TestNode) -> TestNode {
    t.node.stop();
    let dir = std::mem::replace(&mut t.dir, tempfile::tempdir().expect("tempdir"));
    drop(t);
    let node = Node::start(config(dir.path())).expect("node restarts");
    TestNode { node, dir }
}

pub async fn propose(node: &Node, cmd: Command) -> Applied {
    node.propose(cmd).await.expect("proposal applied")
}

pub async fn put(node: &Node, key: &str, value: &str) -> (i64, PutResponse) {
    put_lease(node, key, value, 0).await
}

pub async fn put_lease(node: &Node, key: &str, value: &str, lease: i64) -> (i64, PutResponse) {
    let a = propose(
        node,
        Command::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease,
            prev_kv: true,
            ..Default::default()
        }),
    )
    .await;
    match a.result {
        CommandResult::Put(Ok(r)) => (a.revision, r),
        other => panic!("put {key}: {other:?}"),
    }
}

pub async fn delete(node: &Node, key: &str) -> i64 {
    let a = propose(
        node,
        Command::DeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }),
    )
    .await;
    match a.result {
        CommandResult::DeleteRange(Ok(r)) => r.deleted,
        other => panic!("delete {key}: {other:?}"),
    }
}

pub fn get(node: &Node, key: &str) -> Option<KeyValue> {
    let r = node
        .range(&RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
        .expect("range");
    r.kvs.into_iter().next()
}

pub fn range_all(node: &Node) -> RangeResponse {
    node.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })
    .expect("range all")
}

pub async fn grant(node: &Node, id: i64, ttl_ms: i64) {
    let a = propose(node, Command::LeaseGrant { id, ttl_ms }).await;
    assert!(
        matches!(a.result, CommandResult::LeaseGrant(Ok(_))),
        "grant {id}: {:?}",
        a.result
    );
}

// ---- ZooKeeper ----

pub fn create_op(path: &str, data: &str, mode: CreateMode) -> ZkOp {
    ZkOp::Create {
        path: path.into(),
        data: Some(data.as_bytes().to_vec()),
        acl: Acl::open(),
        mode,
        ttl_ms: 0,
    }
}

/// Runs ZooKeeper ops as one command (a multi when `multi`).
pub async fn zk(
    node: &Node,
    session: i64,
    auth: &[Id],
    ops: Vec<ZkOp>,
    multi: bool,
) -> (i64, ZkWriteResult) {
    let a = propose(
        node,
        Command::Zk {
            session,
            auth: auth.to_vec(),
            ops,
            multi,
            conn: 0,
            seq: 0,
        },
    )
    .await;
    match a.result {
        CommandResult::Zk(r) => (a.revision, r),
        other => panic!("zk: {other:?}"),
    }
}

/// One op; its result or its error.
pub async fn zk1(node: &Node, op: ZkOp) -> Result<ZkOpResult, ZkError> {
    zk1_as(node, 0, &[], op).await
}

pub async fn zk1_as(
    node: &Node,
    session: i64,
    auth: &[Id],
    op: ZkOp,
) -> Result<ZkOpResult, ZkError> {
    match zk(node, session, auth, vec![op], false).await.1 {
        ZkWriteResult::Applied(mut v) => {
            assert_eq!(v.len(), 1);
            Ok(v.remove(0))
        }
        ZkWriteResult::Failed { index, error } => {
            assert_eq!(index, 0);
            Err(error)
        }
    }
}

/// Creates a node and returns (created path, stat).
pub async fn create(node: &Node, path: &str, data: &str, mode: CreateMode) -> (String, Stat) {
    match zk1(node, create_op(path, data, mode)).await {
        Ok(ZkOpResult::Create { path, stat }) => (path, stat),
        other => panic!("create {path}: {other:?}"),
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
