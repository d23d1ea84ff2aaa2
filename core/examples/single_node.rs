//! One janus member in this process: start it on a fresh data directory,
//! write an etcd key and a ZooKeeper node through [`Node::propose`], read
//! both back, stop.
//!
//! Run with `cargo run -p janus-core --example single_node`.
//!
//! Every write is one [`Command`] of the raft log (D7): it returns once the
//! command is applied on this member, with the revision it was applied at.
//! Reads are served from the local state machine; [`Node::read_barrier`]
//! first makes them linearizable (D8).

use std::error::Error;

use janus_core::kv::{PutRequest, RangeRequest};
use janus_core::znode::{Acl, CreateMode, ZkOp, ZkOpResult, ZkWriteResult};
use janus_core::{Command, CommandResult, Node, NodeConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    // One member, no peer listener: a cluster of itself. `Node::start` must
    // run inside a tokio runtime (it serves peers and timers on it).
    let node = Node::start(NodeConfig::single(dir.path().join("data")))?;
    let outcome = run(&node).await;
    // Stop before the data directory is removed: the final sync and
    // checkpoint write into it.
    node.stop();
    outcome
}

async fn run(node: &Node) -> Result<(), Box<dyn Error>> {
    // An etcd put.
    let put = node
        .propose(Command::Put(PutRequest {
            key: b"greeting".to_vec(),
            value: b"hello".to_vec(),
            ..Default::default()
        }))
        .await?;
    match put.result {
        CommandResult::Put(Ok(_)) => println!("put greeting at revision {}", put.revision),
        other => return Err(format!("put refused: {other:?}").into()),
    }

    // A ZooKeeper create: one op, not a multi, from no session.
    let create = node
        .propose(Command::Zk {
            session: 0,
            auth: Vec::new(),
            ops: vec![ZkOp::Create {
                path: "/app".into(),
                data: Some(b"config".to_vec()),
                acl: Acl::open(),
                mode: CreateMode::Persistent,
                ttl_ms: 0,
            }],
            multi: false,
            conn: 0,
            seq: 0,
        })
        .await?;
    match create.result {
        CommandResult::Zk(ZkWriteResult::Applied(results)) => {
            if let Some(ZkOpResult::Create { path, stat }) = results.first() {
                println!("created {path} (czxid {})", stat.czxid);
            }
        }
        other => return Err(format!("create refused: {other:?}").into()),
    }

    // Read both back, linearizably.
    node.read_barrier().await?;
    let range = node.range(&RangeRequest {
        key: b"greeting".to_vec(),
        ..Default::default()
    })?;
    let value = range.kvs.first().map(|kv| kv.value.clone());
    println!(
        "greeting = {:?}",
        value.as_deref().map(String::from_utf8_lossy)
    );
    let (data, stat) = node.zk_get_data("/app", &[])?;
    println!(
        "/app = {:?} (version {})",
        data.as_deref().map(String::from_utf8_lossy),
        stat.version
    );
    if value.as_deref() != Some(b"hello".as_slice())
        || data.as_deref() != Some(b"config".as_slice())
    {
        return Err("read back something else than was written".into());
    }
    Ok(())
}
