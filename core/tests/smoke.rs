use janus_core::kv::{PutRequest, RangeRequest};
use janus_core::{Command, CommandResult, Node, NodeConfig};

#[tokio::test]
async fn put_get_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig::single(dir.path().join("d"))).unwrap();
    let a = node
        .propose(Command::Put(PutRequest {
            key: b"/a".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(a.revision, 2);
    assert!(matches!(a.result, CommandResult::Put(Ok(_))));
    node.read_barrier().await.unwrap();
    let r = node
        .range(&RangeRequest {
            key: b"/a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.kvs[0].value, b"1");
    node.stop();
    drop(node);
    let node = Node::start(NodeConfig::single(dir.path().join("d"))).unwrap();
    assert_eq!(node.revision(), 2);
    let r = node
        .range(&RangeRequest {
            key: b"/a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.kvs[0].value, b"1");
    let st = node.zk_exists("/a").unwrap();
    assert_eq!(st.czxid, 2);
    node.stop();
}
