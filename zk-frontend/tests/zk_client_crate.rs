//! janus driven by the `zookeeper-client` crate (3.6+ features): persistent
//! and recursive watches, TTL and container nodes, multiRead, multi,
//! whoAmI, getEphemerals, getAllChildrenNumber, /zookeeper/config.

use std::time::Duration;

use janus_conformance::harness::Janus;
use zk::{Acls, AddWatchMode, AuthUser, Client, CreateMode, EventType, MultiReadResult};
use zookeeper_client as zk;

async fn next(w: &mut zk::PersistentWatcher) -> zk::WatchedEvent {
    tokio::time::timeout(Duration::from_secs(5), w.changed())
        .await
        .expect("event in time")
}

async fn client(j: &Janus) -> Client {
    Client::connect(&j.zk_addr().to_string())
        .await
        .expect("connect")
}

fn open(mode: CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_and_recursive_watches() {
    let j = Janus::start();
    let c = client(&j).await;
    let other = client(&j).await;
    c.create("/pw", b"", &open(CreateMode::Persistent))
        .await
        .expect("create");
    let mut pw = c
        .watch("/pw", AddWatchMode::Persistent)
        .await
        .expect("addWatch");
    let mut rw = c
        .watch("/rw", AddWatchMode::PersistentRecursive)
        .await
        .expect("addWatch");
    other.set_data("/pw", b"1", None).await.expect("set");
    other
        .create("/pw/child", b"", &open(CreateMode::Persistent))
        .await
        .expect("create");
    other
        .create("/rw", b"", &open(CreateMode::Persistent))
        .await
        .expect("create");
    other
        .create("/rw/a", b"", &open(CreateMode::Persistent))
        .await
        .expect("create");
    other.set_data("/rw/a", b"x", None).await.expect("set");
    other.delete("/rw/a", None).await.expect("delete");
    other.set_data("/pw", b"2", None).await.expect("set");
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next(&mut pw).await;
        got.push((e.event_type, e.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeDataChanged, "/pw".to_string()),
            (EventType::NodeChildrenChanged, "/pw".to_string()),
            (EventType::NodeDataChanged, "/pw".to_string()),
        ]
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = next(&mut rw).await;
        got.push((e.event_type, e.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeCreated, "/rw".to_string()),
            (EventType::NodeCreated, "/rw/a".to_string()),
            (EventType::NodeDataChanged, "/rw/a".to_string()),
            (EventType::NodeDeleted, "/rw/a".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_container_nodes_are_reaped() {
    let j = Janus::start();
    let c = client(&j).await;
    let (stat, _) = c
        .create(
            "/ttl",
            b"",
            &open(CreateMode::Persistent).with_ttl(Duration::from_millis(500)),
        )
        .await
        .expect("createTTL");
    assert_eq!(
        stat.ephemeral_owner, 0,
        "TTL nodes report owner 0 as ZooKeeper does"
    );
    c.create("/ctr", b"", &open(CreateMode::Container))
        .await
        .expect("createContainer");
    c.create("/ctr/x", b"", &open(CreateMode::Persistent))
        .await
        .expect("child");
    c.delete("/ctr/x", None).await.expect("delete child");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ttl = c.check_stat("/ttl").await.expect("exists");
        let ctr = c.check_stat("/ctr").await.expect("exists");
        if ttl.is_none() && ctr.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ttl={ttl:?} ctr={ctr:?} not reaped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_read_multi_write_who_am_i_and_friends() {
    let j = Janus::start();
    let c = client(&j).await;
    c.create("/m", b"d", &open(CreateMode::Persistent))
        .await
        .expect("create");
    let mut w = c.new_multi_writer();
    w.add_create("/m/a", b"", &open(CreateMode::Persistent))
        .expect("op");
    w.add_set_data("/m", b"e", Some(0)).expect("op");
    w.add_check_version("/m", 1).expect("op");
    let r = w.commit().await.expect("multi");
    assert_eq!(r.len(), 3);
    let mut w = c.new_multi_writer();
    w.add_create("/m/b", b"", &open(CreateMode::Persistent))
        .expect("op");
    w.add_delete("/missing", None).expect("op");
    assert!(w.commit().await.is_err(), "failing multi must fail");
    assert!(
        c.check_stat("/m/b").await.expect("exists").is_none(),
        "failed multi changed nothing"
    );

    let mut r = c.new_multi_reader();
    r.add_get_data("/m").expect("op");
    r.add_get_children("/m").expect("op");
    r.add_get_data("/missing").expect("op");
    let res = r.commit().await.expect("multiRead");
    match &res[0] {
        MultiReadResult::Data { data, stat } => {
            assert_eq!(data, b"e");
            assert_eq!(stat.version, 1);
        }
        other => panic!("{other:?}"),
    }
    match &res[1] {
        MultiReadResult::Children { children } => assert_eq!(children, &vec!["a".to_string()]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(res[2], MultiReadResult::Error { .. }));

    c.auth("digest".to_string(), b"bob:pw".to_vec())
        .await
        .expect("auth");
    let users = c.list_auth_users().await.expect("whoAmI");
    assert!(users.contains(&AuthUser::new("digest", "bob")), "{users:?}");
    assert!(
        users.contains(&AuthUser::new("ip", "127.0.0.1")),
        "{users:?}"
    );

    c.create("/m/e", b"", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    assert_eq!(
        c.list_ephemerals("/").await.expect("getEphemerals"),
        vec!["/m/e".to_string()]
    );
    assert_eq!(c.count_descendants_number("/m").await.expect("count"), 2);
    let (cfg, _) = c.get_config().await.expect("/zookeeper/config");
    assert!(cfg.is_empty());
    c.sync("/").await.expect("sync");
}
