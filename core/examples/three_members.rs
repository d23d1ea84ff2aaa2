//! A three-member janus cluster in this process: real raft over TCP between
//! the members on loopback ports chosen at run time, each on its own data
//! directory. Writes an etcd key and a ZooKeeper node through the leader,
//! reads both back from every member, stops.
//!
//! Run with `cargo run -p janus-core --example three_members`.
//!
//! A member's id is derived from its peer URLs and the cluster token, as
//! etcd derives it ([`member_id_for`]); every member starts with the same
//! list of initial members (etcd's `--initial-cluster`).

use std::error::Error;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use janus_core::kv::{PutRequest, RangeRequest};
use janus_core::members::member_id_for;
use janus_core::znode::{Acl, CreateMode, ZkOp, ZkWriteResult};
use janus_core::{Command, CommandResult, Member, Node, NodeConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let root = tempfile::tempdir()?;
    let token = NodeConfig::single(root.path()).cluster_token;
    let mut members = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..3 {
        let addr = free_loopback_addr()?;
        let peer_urls = vec![format!("http://{addr}")];
        members.push(Member {
            id: member_id_for(&peer_urls, &token),
            name: format!("m{i}"),
            peer_urls,
            client_urls: Vec::new(),
            is_learner: false,
        });
        addrs.push(addr);
    }

    let mut nodes = Vec::new();
    for (member, addr) in members.iter().zip(&addrs) {
        let mut cfg = NodeConfig::single(root.path().join(&member.name));
        cfg.name = member.name.clone();
        cfg.member_id = member.id;
        cfg.peer_urls = member.peer_urls.clone();
        cfg.peer_listen = Some(*addr);
        cfg.initial_members = members.clone();
        cfg.tick = Duration::from_millis(20);
        match Node::start(cfg) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                stop_all(&nodes);
                return Err(e.into());
            }
        }
    }
    let outcome = run(&nodes).await;
    stop_all(&nodes);
    outcome
}

async fn run(nodes: &[Node]) -> Result<(), Box<dyn Error>> {
    let leader = wait_for_leader(nodes).await?;
    println!("member {:x} leads", leader.member_id());

    let put = leader
        .propose(Command::Put(PutRequest {
            key: b"greeting".to_vec(),
            value: b"hello".to_vec(),
            ..Default::default()
        }))
        .await?;
    if !matches!(put.result, CommandResult::Put(Ok(_))) {
        return Err(format!("put refused: {:?}", put.result).into());
    }
    let create = leader
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
    if !matches!(create.result, CommandResult::Zk(ZkWriteResult::Applied(_))) {
        return Err(format!("create refused: {:?}", create.result).into());
    }

    // Every member answers from its own copy; the barrier makes a
    // follower catch up with what was committed before it answers.
    for n in nodes {
        n.read_barrier().await?;
        let range = n.range(&RangeRequest {
            key: b"greeting".to_vec(),
            ..Default::default()
        })?;
        let value = range.kvs.first().map(|kv| kv.value.clone());
        let (data, _) = n.zk_get_data("/app", &[])?;
        println!(
            "member {:x}: greeting = {:?}, /app = {:?}, revision {}",
            n.member_id(),
            value.as_deref().map(String::from_utf8_lossy),
            data.as_deref().map(String::from_utf8_lossy),
            n.revision()
        );
        if value.as_deref() != Some(b"hello".as_slice())
            || data.as_deref() != Some(b"config".as_slice())
        {
            return Err(format!("member {:x} missed a write", n.member_id()).into());
        }
    }
    Ok(())
}

/// A loopback address no one listens on right now (the member binds it).
fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The member that leads once all three agree on a leader.
async fn wait_for_leader(nodes: &[Node]) -> Result<&Node, Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = nodes[0].leader();
        if leader != 0 && nodes.iter().all(|n| n.leader() == leader) {
            if let Some(n) = nodes.iter().find(|n| n.member_id() == leader) {
                return Ok(n);
            }
        }
        if Instant::now() > deadline {
            return Err("no leader elected within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop_all(nodes: &[Node]) {
    for n in nodes {
        n.stop();
    }
}
