//! Cross-protocol suite (D1-D6 of docs/ARCHITECTURE.md): one janus, an
//! etcd client (`etcd-client`) and ZooKeeper clients (`zookeeper-client`)
//! on the same data. Every test checks that one protocol sees exactly what
//! the other wrote: values, revisions/zxids, versions, children, sessions
//! as leases, watches, and the atomicity of multi/txn.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd::{
    Compare, CompareOp, EventType as EtcdEvent, GetOptions, LeaseTimeToLiveOptions, PutOptions,
    Txn, TxnOp, WatchOptions, WatchStream,
};
use etcd_client as etcd;
use janus_conformance::harness::Janus;
use zk::{Acls, CreateMode, EventType, SessionState};
use zookeeper_client as zk;

/// Upper bound for anything that should happen "at once".
const T: Duration = Duration::from_secs(10);

async fn etcd_client(j: &Janus) -> etcd::Client {
    etcd::Client::connect([j.etcd_endpoint()], None)
        .await
        .expect("etcd connect")
}

async fn zk_client(j: &Janus) -> zk::Client {
    zk::Client::connector()
        .session_timeout(Duration::from_secs(10))
        .connect(&j.zk_addr().to_string())
        .await
        .expect("zk connect")
}

fn open(mode: CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

fn persistent() -> zk::CreateOptions<'static> {
    open(CreateMode::Persistent)
}

/// Waits for a one-shot ZooKeeper watch.
async fn fired(w: zk::OneshotWatcher) -> zk::WatchedEvent {
    tokio::time::timeout(T, w.changed())
        .await
        .expect("ZooKeeper watch fired in time")
}

/// Next etcd watch response carrying events (skips progress/created).
async fn next_events(s: &mut WatchStream) -> Vec<etcd::Event> {
    loop {
        let r = tokio::time::timeout(T, s.message())
            .await
            .expect("etcd watch response in time")
            .expect("etcd watch stream ok")
            .expect("etcd watch stream open");
        if !r.events().is_empty() {
            return r.events().to_vec();
        }
    }
}

/// The one key `key` as etcd sees it (None if absent).
async fn etcd_kv(c: &mut etcd::Client, key: &str) -> Option<etcd::KeyValue> {
    let r = c.get(key, None).await.expect("etcd get");
    assert!(r.kvs().len() <= 1);
    r.kvs().first().cloned()
}

/// Current store revision (from a read's header).
async fn etcd_rev(c: &mut etcd::Client) -> i64 {
    c.get("/", None)
        .await
        .expect("etcd get")
        .header()
        .expect("header")
        .revision()
}

fn put_rev(r: &etcd::PutResponse) -> i64 {
    r.header().expect("header").revision()
}

async fn sorted_children(c: &zk::Client, path: &str) -> Vec<String> {
    let mut v = c.list_children(path).await.expect("getChildren");
    v.sort();
    v
}

/// Polls until `f` is true or T passes.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + T;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// D1/D3: writes seen by the other protocol, with the stat mapping.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_writes_are_etcd_keys_with_mapped_revisions() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;

    let (st, _) = z.create("/a", b"v1", &persistent()).await.expect("create");
    let kv = etcd_kv(&mut e, "/a")
        .await
        .expect("ZK create visible to etcd");
    assert_eq!(kv.value(), b"v1");
    assert_eq!(kv.create_revision(), st.czxid, "create_revision = czxid");
    assert_eq!(kv.mod_revision(), st.mzxid, "mod_revision = mzxid");
    assert_eq!(
        kv.version(),
        i64::from(st.version) + 1,
        "version = ZK version + 1"
    );
    assert_eq!(kv.version(), 1);
    assert_eq!(kv.lease(), 0, "persistent znode has no lease");
    assert_eq!(
        etcd_rev(&mut e).await,
        st.mzxid,
        "ZK create took exactly one revision"
    );

    let st2 = z.set_data("/a", b"v2", Some(0)).await.expect("setData");
    assert_eq!(st2.version, 1);
    let kv = etcd_kv(&mut e, "/a").await.expect("still there");
    assert_eq!(kv.value(), b"v2");
    assert_eq!(kv.create_revision(), st.czxid);
    assert_eq!(kv.mod_revision(), st2.mzxid);
    assert!(st2.mzxid > st.mzxid);
    assert_eq!(kv.version(), i64::from(st2.version) + 1);

    // An empty setData is still a write (version moves, value empties).
    let st3 = z.set_data("/a", b"", None).await.expect("setData");
    let kv = etcd_kv(&mut e, "/a").await.expect("still there");
    assert_eq!(kv.value(), b"");
    assert_eq!(kv.version(), 3);
    assert_eq!(kv.mod_revision(), st3.mzxid);

    // Children of a ZK node are etcd keys under it.
    let (cst, _) = z
        .create("/a/b", b"child", &persistent())
        .await
        .expect("create child");
    let r = e
        .get("/a/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("etcd get prefix");
    let keys: Vec<&[u8]> = r.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"/a/b"[..]]);
    assert_eq!(r.kvs()[0].create_revision(), cst.czxid);

    // A failed ZK write consumes no revision.
    let before = etcd_rev(&mut e).await;
    assert!(matches!(
        z.set_data("/a", b"x", Some(7)).await,
        Err(zk::Error::BadVersion)
    ));
    assert!(matches!(
        z.create("/a", b"", &persistent()).await,
        Err(zk::Error::NodeExists)
    ));
    assert_eq!(
        etcd_rev(&mut e).await,
        before,
        "failed ZK writes took a revision"
    );

    z.delete("/a/b", Some(0)).await.expect("delete child");
    assert!(etcd_kv(&mut e, "/a/b").await.is_none(), "ZK delete visible");
    z.delete("/a", Some(2)).await.expect("delete");
    assert!(etcd_kv(&mut e, "/a").await.is_none(), "ZK delete visible");
    assert_eq!(
        etcd_rev(&mut e).await,
        before + 2,
        "one revision per delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_writes_are_znodes_with_mapped_stat() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;

    let r1 = put_rev(&e.put("/e", "x", None).await.expect("put"));
    let (data, st) = z.get_data("/e").await.expect("etcd put visible to ZK");
    assert_eq!(data, b"x");
    assert_eq!((st.czxid, st.mzxid), (r1, r1));
    assert_eq!(st.version, 0, "etcd version 1 = ZK version 0");
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(st.data_length, 1);
    assert_eq!(st.num_children, 0);
    assert_eq!(
        z.check_stat("/e").await.expect("exists"),
        Some(st),
        "exists and getData agree"
    );

    let r2 = put_rev(&e.put("/e", "yy", None).await.expect("put"));
    let (data, st) = z.get_data("/e").await.expect("getData");
    assert_eq!(data, b"yy");
    assert_eq!((st.czxid, st.mzxid, st.version), (r1, r2, 1));
    assert_eq!(st.data_length, 2);
    assert!(st.mtime >= st.ctime);

    // A same-value put is a write too (etcd rule): version and mzxid move.
    let r3 = put_rev(&e.put("/e", "yy", None).await.expect("put"));
    let st = z.check_stat("/e").await.expect("exists").expect("present");
    assert_eq!((st.mzxid, st.version), (r3, 2));

    // ZK conditional writes are compares on the etcd version.
    assert!(matches!(
        z.set_data("/e", b"z", Some(1)).await,
        Err(zk::Error::BadVersion)
    ));
    let st = z.set_data("/e", b"z", Some(2)).await.expect("setData v2");
    let kv = etcd_kv(&mut e, "/e").await.expect("present");
    assert_eq!((kv.version(), kv.mod_revision()), (4, st.mzxid));

    // etcd's own compare sees the ZK write.
    let t = e
        .txn(
            Txn::new()
                .when([Compare::version("/e", CompareOp::Equal, 4)])
                .and_then([TxnOp::put("/e", "from-etcd", None)]),
        )
        .await
        .expect("txn");
    assert!(t.succeeded());
    assert_eq!(z.get_data("/e").await.expect("getData").0, b"from-etcd");

    let d = e.delete("/e", None).await.expect("delete");
    assert_eq!(d.deleted(), 1);
    assert!(matches!(z.get_data("/e").await, Err(zk::Error::NoNode)));
    assert_eq!(z.check_stat("/e").await.expect("exists"), None);
    assert!(matches!(
        z.set_data("/e", b"", None).await,
        Err(zk::Error::NoNode)
    ));
    assert!(matches!(z.delete("/e", None).await, Err(zk::Error::NoNode)));
}

// ---------------------------------------------------------------------------
// D1/D2: hierarchy: etcd keys as children, implicit parents, invalid paths.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keys_are_children_and_make_implicit_parents() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;

    e.put("/svc/web/1", "10.0.0.1", None).await.expect("put");
    let svc = z
        .check_stat("/svc")
        .await
        .expect("exists")
        .expect("implicit parent /svc exists for ZK");
    assert_eq!(svc.num_children, 1);
    assert_eq!(svc.ephemeral_owner, 0);
    assert_eq!(svc.data_length, 0);
    let (data, web) = z.get_data("/svc/web").await.expect("implicit /svc/web");
    assert!(data.is_empty(), "implicit znode is empty");
    assert_eq!(web.num_children, 1);
    assert!(sorted_children(&z, "/").await.contains(&"svc".to_string()));
    assert_eq!(sorted_children(&z, "/svc").await, vec!["web"]);
    assert_eq!(sorted_children(&z, "/svc/web").await, vec!["1"]);
    assert_eq!(z.get_data("/svc/web/1").await.expect("leaf").0, b"10.0.0.1");

    e.put("/svc/web/2", "b", None).await.expect("put");
    e.put("/svc/db/1", "c", None).await.expect("put");
    let (kids, st) = z.get_children("/svc/web").await.expect("getChildren2");
    let kids: BTreeSet<String> = kids.into_iter().collect();
    assert_eq!(kids, ["1", "2"].map(String::from).into());
    assert_eq!(st.num_children, 2);
    assert_eq!(sorted_children(&z, "/svc").await, vec!["db", "web"]);

    // ZooKeeper rules still hold for ZK requests on implicit znodes.
    assert!(matches!(
        z.delete("/svc/web", None).await,
        Err(zk::Error::NotEmpty)
    ));
    z.create("/svc/web/3", b"zk", &persistent())
        .await
        .expect("ZK create under implicit parent");
    assert_eq!(
        etcd_kv(&mut e, "/svc/web/3")
            .await
            .map(|kv| kv.value().to_vec()),
        Some(b"zk".to_vec())
    );
    assert_eq!(sorted_children(&z, "/svc/web").await, vec!["1", "2", "3"]);

    // Deleting the last descendant makes implicit parents vanish.
    e.delete("/svc/db/1", None).await.expect("delete");
    assert_eq!(z.check_stat("/svc/db").await.expect("exists"), None);
    assert_eq!(sorted_children(&z, "/svc").await, vec!["web"]);
    e.delete("/svc/", Some(etcd::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete prefix");
    assert_eq!(z.check_stat("/svc/web").await.expect("exists"), None);
    assert_eq!(z.check_stat("/svc").await.expect("exists"), None);
    assert!(matches!(
        z.list_children("/svc").await,
        Err(zk::Error::NoNode)
    ));
    assert!(!sorted_children(&z, "/").await.contains(&"svc".to_string()));

    // A deep single key, deleted: every implicit ancestor goes with it.
    e.put("/x/y/z/w", "", None).await.expect("put");
    assert!(z.check_stat("/x/y/z").await.expect("exists").is_some());
    e.delete("/x/y/z/w", None).await.expect("delete");
    for p in ["/x/y/z/w", "/x/y/z", "/x/y", "/x"] {
        assert_eq!(z.check_stat(p).await.expect("exists"), None, "{p} vanished");
    }

    // An explicit (ZK-created) parent stays when its last child goes.
    z.create("/keep", b"", &persistent()).await.expect("create");
    e.put("/keep/k", "", None).await.expect("put");
    e.delete("/keep/k", None).await.expect("delete");
    let st = z
        .check_stat("/keep")
        .await
        .expect("exists")
        .expect("explicit parent stays");
    assert_eq!(st.num_children, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_are_not_zk_paths_are_invisible_to_zk() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;

    for k in [
        "foo", "/a/", "/a//b", "/a/./b", "/a/../b", "/a/.", "a/b", "//",
    ] {
        e.put(k, "x", None).await.expect("put");
    }
    let root = sorted_children(&z, "/").await;
    assert_eq!(
        root,
        vec!["zookeeper"],
        "only the system node is visible at the root"
    );
    let (_, st) = z.get_children("/").await.expect("getChildren2 /");
    assert_eq!(st.num_children, 1, "root numChildren counts only ZK paths");
    assert_eq!(
        z.check_stat("/a").await.expect("exists"),
        None,
        "invalid keys under /a must not make /a an implicit znode"
    );
    assert!(matches!(z.get_data("/foo").await, Err(zk::Error::NoNode)));

    // A valid key next to them is visible, and only it.
    e.put("/a/b", "ok", None).await.expect("put");
    assert_eq!(sorted_children(&z, "/a").await, vec!["b"]);
    assert_eq!(sorted_children(&z, "/").await, vec!["a", "zookeeper"]);
    // All the etcd keys are still etcd keys.
    let all = e
        .get("\0", Some(GetOptions::new().with_from_key()))
        .await
        .expect("get all");
    assert_eq!(all.kvs().len(), 9);

    // ZooKeeper's system nodes are not etcd keys.
    assert!(z.check_stat("/zookeeper").await.expect("exists").is_some());
    let sys = e
        .get("/zookeeper", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    assert_eq!(sys.kvs().len(), 0, "/zookeeper is not an etcd key");
}

// ---------------------------------------------------------------------------
// D4: sessions are leases, both ways.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_session_is_an_etcd_lease_and_revoking_it_expires_the_session() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let observer = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    let sid = z.session_id().0;
    assert!(sid > 0, "session ids are positive lease ids");

    let leases: Vec<i64> = e
        .leases()
        .await
        .expect("leases")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert!(leases.contains(&sid), "session {sid:#x} in {leases:?}");
    assert!(leases.contains(&observer.session_id().0));

    z.create("/p", b"", &persistent()).await.expect("create");
    z.create("/eph", b"1", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    let (est, _) = z
        .create("/p/e", b"2", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    assert_eq!(est.ephemeral_owner, sid);
    assert_eq!(etcd_kv(&mut e, "/eph").await.expect("key").lease(), sid);
    assert_eq!(etcd_kv(&mut e, "/p").await.expect("key").lease(), 0);

    let ttl = e
        .lease_time_to_live(sid, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("TimeToLive");
    assert_eq!(ttl.id(), sid);
    assert_eq!(ttl.granted_ttl(), 10, "granted TTL = session timeout");
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 10, "ttl {}", ttl.ttl());
    let keys: BTreeSet<&[u8]> = ttl.keys().iter().map(|k| k.as_slice()).collect();
    assert_eq!(keys, [&b"/eph"[..], &b"/p/e"[..]].into());

    let (_, eph_watch) = observer
        .check_and_watch_stat("/eph")
        .await
        .expect("exists watch");
    let (_, pst, child_watch) = observer
        .get_and_watch_children("/p")
        .await
        .expect("child watch");
    let mut state = z.state_watcher();

    let rv = e
        .lease_revoke(sid)
        .await
        .expect("revoke the session's lease");
    let revoke_rev = rv.header().expect("header").revision();

    let ev = fired(eph_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, "/eph")
    );
    let ev = fired(child_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/p")
    );
    // The owning client learns its session is gone.
    tokio::time::timeout(T, async {
        loop {
            if state.changed().await == SessionState::Expired {
                break;
            }
        }
    })
    .await
    .expect("ZK client sees session expiry after its lease is revoked");
    assert!(matches!(
        z.get_data("/p").await,
        Err(zk::Error::SessionExpired)
    ));

    assert!(etcd_kv(&mut e, "/eph").await.is_none());
    assert!(etcd_kv(&mut e, "/p/e").await.is_none());
    assert_eq!(observer.check_stat("/eph").await.expect("exists"), None);
    let (kids, pst2) = observer.get_children("/p").await.expect("getChildren2");
    assert!(kids.is_empty());
    assert_eq!(
        pst2.cversion,
        pst.cversion + 1,
        "ephemeral delete bumps cversion"
    );
    assert_eq!(pst2.pzxid, revoke_rev, "pzxid = revision of the revoke");
    assert_eq!(pst2.num_children, 0);
    let leases: Vec<i64> = e
        .leases()
        .await
        .expect("leases")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert!(!leases.contains(&sid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leased_keys_are_ephemeral_znodes() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;

    z.create("/reg", b"", &persistent()).await.expect("create");
    let lease = e.lease_grant(30, None).await.expect("grant").id();
    e.put("/reg/me", "addr", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put with lease");
    let st = z
        .check_stat("/reg/me")
        .await
        .expect("exists")
        .expect("present");
    assert_eq!(st.ephemeral_owner, lease, "ephemeralOwner = lease id");
    // ZooKeeper rules for ZK requests: no children under an ephemeral.
    assert!(matches!(
        z.create("/reg/me/x", b"", &persistent()).await,
        Err(zk::Error::NoChildrenForEphemerals)
    ));
    // A ZK write to the node keeps its lease.
    z.set_data("/reg/me", b"addr2", Some(0))
        .await
        .expect("setData");
    assert_eq!(
        etcd_kv(&mut e, "/reg/me").await.expect("key").lease(),
        lease
    );

    let (_, me_watch) = z.check_and_watch_stat("/reg/me").await.expect("watch");
    let (_, pst, kids_watch) = z.get_and_watch_children("/reg").await.expect("watch");
    assert_eq!(pst.num_children, 1);
    let rv = e.lease_revoke(lease).await.expect("revoke");
    let revoke_rev = rv.header().expect("header").revision();
    let ev = fired(me_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, "/reg/me")
    );
    let ev = fired(kids_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/reg")
    );
    assert_eq!(z.check_stat("/reg/me").await.expect("exists"), None);
    let (kids, pst2) = z.get_children("/reg").await.expect("getChildren2");
    assert!(kids.is_empty());
    assert_eq!(pst2.cversion, pst.cversion + 1);
    assert_eq!(pst2.pzxid, revoke_rev);
    assert_eq!(pst2.num_children, 0);
}

/// zetcd's worst bug: ephemerals that expire (no revoke call, the lease
/// just runs out) must update the parent and fire its child watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_sessions_and_leases_update_parent_and_fire_child_watches() {
    let j = Janus::start_with(&["--zk-min-session-timeout-ms", "1000"]);
    let observer = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    observer
        .create("/grp", b"", &persistent())
        .await
        .expect("create");

    // A ZK session that goes silent (detached: dropped without closeSession).
    let doomed = zk::Client::connector()
        .session_timeout(Duration::from_millis(1000))
        .detached()
        .connect(&j.zk_addr().to_string())
        .await
        .expect("connect");
    let sid = doomed.session_id().0;
    doomed
        .create("/grp/zk", b"", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    let (_, st0, w) = observer
        .get_and_watch_children("/grp")
        .await
        .expect("child watch");
    assert_eq!(st0.num_children, 1);
    let (_ew, mut es) = e
        .watch(
            "/grp/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("etcd watch");
    drop(doomed);
    let evs = next_events(&mut es).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event_type(), EtcdEvent::Delete);
    let prev = evs[0].prev_kv().expect("prev_kv of the expired ephemeral");
    assert_eq!((prev.key(), prev.lease()), (&b"/grp/zk"[..], sid));
    let expired_at = evs[0].kv().expect("kv").mod_revision();
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/grp")
    );
    let (kids, st1) = observer.get_children("/grp").await.expect("getChildren2");
    assert!(
        kids.is_empty(),
        "expired session's ephemeral gone: {kids:?}"
    );
    assert_eq!(st1.cversion, st0.cversion + 1);
    assert_eq!(st1.num_children, 0);
    assert_eq!(st1.pzxid, expired_at, "pzxid = expiry revision");
    assert!(st1.pzxid > st0.pzxid);
    let leases = e.leases().await.expect("leases");
    assert!(!leases.leases().iter().any(|l| l.id() == sid));

    // An etcd lease that runs out, same parent.
    let lease = e.lease_grant(1, None).await.expect("grant").id();
    e.put("/grp/etcd", "", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put");
    let (kids, st2, w) = observer
        .get_and_watch_children("/grp")
        .await
        .expect("child watch");
    assert_eq!(kids, vec!["etcd"]);
    assert_eq!(st2.cversion, st1.cversion + 1);
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/grp")
    );
    let (kids, st3) = observer.get_children("/grp").await.expect("getChildren2");
    assert!(kids.is_empty());
    assert_eq!(st3.cversion, st2.cversion + 1);
    assert_eq!(st3.pzxid, etcd_rev(&mut e).await);
    assert!(etcd_kv(&mut e, "/grp/etcd").await.is_none());
}

// ---------------------------------------------------------------------------
// D6: watches across protocols.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_watches_fire_on_etcd_writes() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;

    // exists watch on a missing node, fired by an etcd create.
    let (none, w) = z.check_and_watch_stat("/w").await.expect("exists watch");
    assert!(none.is_none());
    let r = put_rev(&e.put("/w", "0", None).await.expect("put"));
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/w")
    );
    // (ZooKeeper 3.8 sends notifications with zxid -1, so the revision
    // is checked through the reads that follow instead.)
    assert_eq!(z.get_data("/w").await.expect("getData").1.czxid, r);

    // data watch, fired by an etcd put.
    let (_, _, w) = z.get_and_watch_data("/w").await.expect("data watch");
    let r = put_rev(&e.put("/w", "1", None).await.expect("put"));
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/w")
    );
    // The read after the notification reflects the write.
    let (data, st) = z.get_data("/w").await.expect("getData");
    assert_eq!((data.as_slice(), st.mzxid), (&b"1"[..], r));

    // child watch, fired by an etcd put of a new child...
    let (kids, _, w) = z.get_and_watch_children("/w").await.expect("child watch");
    assert!(kids.is_empty());
    // (an update of the parent's value is not a child change)
    let (_, _, dw) = z.get_and_watch_data("/w").await.expect("data watch");
    e.put("/w/c1", "", None).await.expect("put child");
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/w")
    );
    // ...and by an etcd delete of it.
    let (kids, _, w) = z.get_and_watch_children("/w").await.expect("child watch");
    assert_eq!(kids, vec!["c1"]);
    // An update of an existing child does not fire a child watch: once a
    // read on the same connection reflects the update (D6 ordering: any
    // notification for it would precede that reply), the watch is pending.
    let mut w = Box::pin(w.changed());
    let r = put_rev(&e.put("/w/c1", "changed", None).await.expect("put"));
    assert_eq!(z.get_data("/w/c1").await.expect("getData").1.mzxid, r);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut w)
            .await
            .is_err(),
        "updating a child fired the parent's child watch"
    );
    e.delete("/w/c1", None).await.expect("delete child");
    let ev = tokio::time::timeout(T, w).await.expect("child watch fired");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/w")
    );
    assert!(z.list_children("/w").await.expect("ls").is_empty());

    // data watch, fired by an etcd delete; the earlier data watch on /w
    // (armed before the child put) is still pending and fires too.
    let (_, _, w) = z.get_and_watch_data("/w").await.expect("data watch");
    e.delete("/w", None).await.expect("delete");
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, "/w")
    );
    let ev = fired(dw).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, "/w"),
        "child puts must not fire a data watch on the parent"
    );

    // A persistent recursive watch sees etcd writes below it, including
    // through implicit parents.
    let mut rw = z
        .watch("/tree", zk::AddWatchMode::PersistentRecursive)
        .await
        .expect("addWatch");
    e.put("/tree/a/b", "", None).await.expect("put");
    // (Implicit ancestors may be announced first; the key itself must come.)
    loop {
        let ev = tokio::time::timeout(T, rw.changed()).await.expect("event");
        assert_eq!(ev.event_type, EventType::NodeCreated, "{ev:?}");
        if ev.path == "/tree/a/b" {
            break;
        }
        assert!(
            ["/tree", "/tree/a"].contains(&ev.path.as_str()),
            "unexpected {ev:?}"
        );
    }
    // A key getChildren hides (a control character makes it no ZooKeeper
    // path, D1) fires nothing, not even the recursive watch above it: the
    // next event is the valid key written after it.
    e.put("/tree/bad\u{1}", "", None).await.expect("put");
    e.put("/tree/good", "", None).await.expect("put");
    let ev = tokio::time::timeout(T, rw.changed()).await.expect("event");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/tree/good"),
        "{ev:?}"
    );
    assert_eq!(sorted_children(&z, "/tree").await, vec!["a", "good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_sees_zk_writes_with_revisions_and_prev_kv() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    let (_w, mut s) = e
        .watch(
            "/z",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("watch");

    let (st, _) = z.create("/z", b"a", &persistent()).await.expect("create");
    let evs = next_events(&mut s).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event_type(), EtcdEvent::Put);
    let kv = evs[0].kv().expect("kv");
    assert_eq!((kv.key(), kv.value()), (&b"/z"[..], &b"a"[..]));
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (st.czxid, st.mzxid, 1)
    );
    assert!(evs[0].prev_kv().is_none(), "a create has no prev_kv");

    let st2 = z.set_data("/z", b"b", None).await.expect("setData");
    let evs = next_events(&mut s).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event_type(), EtcdEvent::Put);
    let kv = evs[0].kv().expect("kv");
    assert_eq!(kv.value(), b"b");
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (st.czxid, st2.mzxid, 2)
    );
    let prev = evs[0].prev_kv().expect("prev_kv");
    assert_eq!((prev.value(), prev.mod_revision()), (&b"a"[..], st.mzxid));

    let (eph, _) = z
        .create("/z/e", b"eph", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    let evs = next_events(&mut s).await;
    let kv = evs[0].kv().expect("kv");
    assert_eq!(kv.key(), b"/z/e");
    assert_eq!(kv.lease(), z.session_id().0);
    assert_eq!(kv.mod_revision(), eph.mzxid);

    z.delete("/z/e", None).await.expect("delete");
    z.delete("/z", Some(1)).await.expect("delete");
    let del_rev = etcd_rev(&mut e).await;
    let mut evs = next_events(&mut s).await;
    if evs.len() < 2 {
        evs.extend(next_events(&mut s).await);
    }
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].event_type(), EtcdEvent::Delete);
    assert_eq!(evs[0].kv().expect("kv").key(), b"/z/e");
    assert_eq!(evs[0].kv().expect("kv").mod_revision(), del_rev - 1);
    assert_eq!(evs[1].event_type(), EtcdEvent::Delete);
    let kv = evs[1].kv().expect("kv");
    assert_eq!(kv.key(), b"/z");
    assert_eq!(kv.mod_revision(), del_rev, "delete event at its revision");
    let prev = evs[1].prev_kv().expect("prev_kv on delete");
    assert_eq!((prev.value(), prev.version()), (&b"b"[..], 2));

    // History replay from an older revision covers the ZK writes too.
    let (_w2, mut s2) = e
        .watch(
            "/z",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(st.czxid),
            ),
        )
        .await
        .expect("watch from revision");
    let mut seen = Vec::new();
    while seen.len() < 5 {
        for ev in next_events(&mut s2).await {
            seen.push((ev.event_type(), ev.kv().expect("kv").mod_revision()));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EtcdEvent::Put, st.czxid),
            (EtcdEvent::Put, st2.mzxid),
            (EtcdEvent::Put, eph.czxid),
            (EtcdEvent::Delete, del_rev - 1),
            (EtcdEvent::Delete, del_rev),
        ]
    );
}

// ---------------------------------------------------------------------------
// Atomicity across protocols: ZK multi and etcd txn.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_multi_is_one_etcd_revision() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    z.create("/m", b"0", &persistent()).await.expect("create");
    z.create("/m/old", b"", &persistent())
        .await
        .expect("create");
    let before = etcd_rev(&mut e).await;
    let (_w, mut s) = e
        .watch(
            "/m",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("watch");

    let mut m = z.new_multi_writer();
    m.add_create("/m/a", b"A", &persistent()).expect("op");
    m.add_create("/m/b", b"B", &persistent()).expect("op");
    m.add_set_data("/m", b"1", Some(0)).expect("op");
    m.add_delete("/m/old", Some(0)).expect("op");
    m.add_check_version("/m", 1).expect("op");
    let res = m.commit().await.expect("multi");
    assert_eq!(res.len(), 5);

    // All four writes arrive in one watch response, at one revision.
    let evs = next_events(&mut s).await;
    assert_eq!(evs.len(), 4, "a multi's events never split: {evs:?}");
    let revs: BTreeSet<i64> = evs
        .iter()
        .map(|ev| ev.kv().expect("kv").mod_revision())
        .collect();
    assert_eq!(revs.len(), 1, "one revision for the whole multi: {revs:?}");
    let rev = *revs.iter().next().expect("rev");
    assert_eq!(rev, before + 1, "a multi takes exactly one revision");
    assert_eq!(etcd_rev(&mut e).await, rev);
    let kinds: Vec<(EtcdEvent, Vec<u8>)> = evs
        .iter()
        .map(|ev| (ev.event_type(), ev.kv().expect("kv").key().to_vec()))
        .collect();
    for want in [
        (EtcdEvent::Put, b"/m/a".to_vec()),
        (EtcdEvent::Put, b"/m/b".to_vec()),
        (EtcdEvent::Put, b"/m".to_vec()),
        (EtcdEvent::Delete, b"/m/old".to_vec()),
    ] {
        assert!(kinds.contains(&want), "{want:?} missing from {kinds:?}");
    }

    // MVCC: the revision before the multi has none of it, the multi's has all.
    let at = |r: i64| GetOptions::new().with_prefix().with_revision(r);
    let old = e.get("/m", Some(at(rev - 1))).await.expect("get old rev");
    let old_keys: Vec<&[u8]> = old.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(old_keys, vec![&b"/m"[..], &b"/m/old"[..]]);
    assert_eq!(old.kvs()[0].value(), b"0");
    let new = e.get("/m", Some(at(rev))).await.expect("get new rev");
    let new_keys: Vec<&[u8]> = new.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(new_keys, vec![&b"/m"[..], &b"/m/a"[..], &b"/m/b"[..]]);
    assert_eq!(new.kvs()[0].value(), b"1");
    for kv in new.kvs() {
        assert_eq!(kv.mod_revision(), rev);
    }

    // A failed multi changes nothing and consumes no revision.
    let mut m = z.new_multi_writer();
    m.add_create("/m/c", b"", &persistent()).expect("op");
    m.add_set_data("/m", b"2", Some(0)).expect("op"); // stale version
    assert!(m.commit().await.is_err());
    assert_eq!(etcd_rev(&mut e).await, rev, "failed multi took a revision");
    assert!(etcd_kv(&mut e, "/m/c").await.is_none());
    assert_eq!(etcd_kv(&mut e, "/m").await.expect("key").value(), b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_txn_is_atomic_for_zk_readers() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let reader = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    z.create("/t", b"", &persistent()).await.expect("create");

    // One child watch: the first txn fires it once; the read after the
    // notification already shows the whole txn.
    let (_, _, w) = z.get_and_watch_children("/t").await.expect("watch");
    let t = e
        .txn(Txn::new().and_then([
            TxnOp::put("/t/g0-a", "", None),
            TxnOp::put("/t/g0-b", "", None),
            TxnOp::put("/t/g0-c", "", None),
        ]))
        .await
        .expect("txn");
    let txn_rev = t.header().expect("header").revision();
    let ev = fired(w).await;
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
    let (kids, st) = z.get_children("/t").await.expect("getChildren2");
    assert_eq!(kids.len(), 3, "{kids:?}");
    assert_eq!(st.pzxid, txn_rev);
    assert_eq!(st.cversion, 3, "three child creates in one txn");
    for k in ["/t/g0-a", "/t/g0-b", "/t/g0-c"] {
        let st = z.check_stat(k).await.expect("exists").expect("present");
        assert_eq!((st.czxid, st.mzxid), (txn_rev, txn_rev));
    }

    // A ZK reader polling getChildren while etcd txns add and remove
    // groups of three never sees a partial group.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let poll = tokio::spawn(async move {
        let mut reads = 0u32;
        let mut last_cversion = 0;
        while !stop2.load(Ordering::Relaxed) {
            let (kids, st) = reader.get_children("/t").await.expect("getChildren2");
            assert_eq!(st.num_children as usize, kids.len(), "numChildren vs list");
            assert!(st.cversion >= last_cversion, "cversion went backwards");
            last_cversion = st.cversion;
            let mut groups = std::collections::BTreeMap::<String, usize>::new();
            for k in &kids {
                let g = k.split('-').next().expect("group").to_string();
                *groups.entry(g).or_default() += 1;
            }
            for (g, n) in groups {
                assert_eq!(n, 3, "ZK saw half of txn group {g}: {kids:?}");
            }
            reads += 1;
        }
        reads
    });
    for i in 1..=40 {
        let g = format!("/t/g{i}");
        e.txn(Txn::new().and_then([
            TxnOp::put(format!("{g}-a"), "", None),
            TxnOp::put(format!("{g}-b"), "", None),
            TxnOp::put(format!("{g}-c"), "", None),
        ]))
        .await
        .expect("txn put group");
        if i % 2 == 0 {
            let prev = format!("/t/g{}", i - 1);
            e.txn(Txn::new().and_then([
                TxnOp::delete(format!("{prev}-a"), None),
                TxnOp::delete(format!("{prev}-b"), None),
                TxnOp::delete(format!("{prev}-c"), None),
            ]))
            .await
            .expect("txn delete group");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = poll.await.expect("reader task");
    assert!(reads > 5, "reader made only {reads} reads");
    assert_eq!(reader_children_count(&z, "/t").await, 3 * 21);

    // A txn whose compare fails changes nothing and takes no revision.
    let before = etcd_rev(&mut e).await;
    let t = e
        .txn(
            Txn::new()
                .when([Compare::version("/t/g0-a", CompareOp::Equal, 5)])
                .and_then([TxnOp::put("/t/never", "", None)]),
        )
        .await
        .expect("txn");
    assert!(!t.succeeded());
    assert_eq!(etcd_rev(&mut e).await, before);
    assert_eq!(z.check_stat("/t/never").await.expect("exists"), None);
}

async fn reader_children_count(z: &zk::Client, path: &str) -> usize {
    z.list_children(path).await.expect("getChildren").len()
}

// ---------------------------------------------------------------------------
// D5: sequential names are etcd keys; etcd writes move the sequence.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_names_are_etcd_keys_and_etcd_writes_move_cversion() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    z.create("/q", b"", &persistent()).await.expect("create");

    let seq = open(CreateMode::PersistentSequential);
    let mut made = Vec::new();
    for _ in 0..3 {
        let (_, s) = z.create("/q/n-", b"job", &seq).await.expect("sequential");
        made.push(format!("/q/n-{s}"));
    }
    assert_eq!(
        made,
        ["/q/n-0000000000", "/q/n-0000000001", "/q/n-0000000002"]
    );
    let r = e
        .get("/q/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get prefix");
    let keys: Vec<String> = r
        .kvs()
        .iter()
        .map(|kv| String::from_utf8(kv.key().to_vec()).expect("utf8"))
        .collect();
    assert_eq!(keys, made, "sequential znodes are etcd keys, in order");
    let revs: Vec<i64> = r.kvs().iter().map(|kv| kv.create_revision()).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    assert!(r.kvs().iter().all(|kv| kv.value() == b"job"));

    // An etcd create under /q is a child create: cversion 3 -> 4, so the
    // next sequential suffix is 4.
    let put = put_rev(&e.put("/q/from-etcd", "", None).await.expect("put"));
    let (_, st) = z.get_children("/q").await.expect("getChildren2");
    assert_eq!((st.cversion, st.pzxid, st.num_children), (4, put, 4));
    let (_, s) = z.create("/q/n-", b"", &seq).await.expect("sequential");
    assert_eq!(s.to_string(), "0000000004");

    // Updating an existing child is not a child change.
    e.put("/q/from-etcd", "v2", None).await.expect("put");
    let (_, st) = z.get_children("/q").await.expect("getChildren2");
    assert_eq!(st.cversion, 5);

    // An etcd delete is a child delete: cversion 5 -> 6, while the suffix
    // counts creates only (D5), as ZooKeeper 3.8 names them.
    let del = e
        .delete("/q/from-etcd", None)
        .await
        .expect("delete")
        .header()
        .expect("header")
        .revision();
    let (_, st) = z.get_children("/q").await.expect("getChildren2");
    assert_eq!((st.cversion, st.pzxid), (6, del));
    let (_, s) = z.create("/q/n-", b"", &seq).await.expect("sequential");
    assert_eq!(s.to_string(), "0000000005");

    // An etcd txn creating two children counts two creates.
    e.txn(Txn::new().and_then([TxnOp::put("/q/x", "", None), TxnOp::put("/q/y", "", None)]))
        .await
        .expect("txn");
    let (_, s) = z.create("/q/n-", b"", &seq).await.expect("sequential");
    assert_eq!(s.to_string(), "0000000008");

    // Ephemeral sequentials are leased etcd keys with the same names.
    let (st, s) = z
        .create("/q/e-", b"", &open(CreateMode::EphemeralSequential))
        .await
        .expect("ephemeral sequential");
    assert_eq!(s.to_string(), "0000000009");
    let kv = etcd_kv(&mut e, "/q/e-0000000009")
        .await
        .expect("ephemeral sequential is an etcd key");
    assert_eq!(kv.lease(), z.session_id().0);
    assert_eq!(kv.create_revision(), st.czxid);
}

// ---------------------------------------------------------------------------
// More of D2/D4/D6 at the seams.
// ---------------------------------------------------------------------------

/// Implicit parents and child watches: the explicit grandparent's child
/// watch fires when an etcd write makes an implicit znode appear and when
/// the last key below it goes; a child watch set on an implicit znode fires
/// on etcd child writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_parents_fire_child_watches() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    z.create("/top", b"", &persistent()).await.expect("create");

    let (_, st0, top_w) = z.get_and_watch_children("/top").await.expect("watch");
    let r = put_rev(&e.put("/top/svc/web/1", "", None).await.expect("put"));
    let ev = fired(top_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/top"),
        "an implicit child appearing is a child change"
    );
    let (kids, st1) = z.get_children("/top").await.expect("ls");
    assert_eq!(kids, vec!["svc"]);
    assert_eq!((st1.cversion, st1.pzxid), (st0.cversion + 1, r));

    let (_, _, web_w) = z
        .get_and_watch_children("/top/svc/web")
        .await
        .expect("watch implicit");
    e.put("/top/svc/web/2", "", None).await.expect("put");
    let ev = fired(web_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/top/svc/web")
    );

    let (_, _, top_w) = z.get_and_watch_children("/top").await.expect("watch");
    let (_, _, svc_w) = z.get_and_watch_children("/top/svc").await.expect("watch");
    let d = e
        .delete("/top/svc/", Some(etcd::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete prefix");
    let ev = fired(svc_w).await;
    assert_eq!(ev.path, "/top/svc");
    let ev = fired(top_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/top")
    );
    let (kids, st2) = z.get_children("/top").await.expect("ls");
    assert!(kids.is_empty());
    assert_eq!(
        (st2.cversion, st2.pzxid),
        (st1.cversion + 1, d.header().expect("header").revision())
    );
}

/// ZooKeeper's exists watch contract on implicit znodes: `exists(p, watch)`
/// answered "no node", then p became visible (an etcd write below it), so
/// the watch must fire NodeCreated — otherwise a client waiting for p
/// (Curator NodeCache, "wait for parent" loops) never wakes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn implicit_znode_appearing_fires_exists_watch() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    z.create("/top", b"", &persistent()).await.expect("create");
    let (none, w) = z.check_and_watch_stat("/top/svc").await.expect("exists");
    assert!(none.is_none());
    e.put("/top/svc/web/1", "", None).await.expect("put");
    assert!(z.check_stat("/top/svc").await.expect("exists").is_some());
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/top/svc")
    );
}

/// The other half: a data watch on an implicit znode must fire NodeDeleted
/// when the last key below it is deleted and the znode vanishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn implicit_znode_vanishing_fires_data_watch() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    e.put("/svc/web/1", "", None).await.expect("put");
    let (_, _, w) = z.get_and_watch_data("/svc/web").await.expect("getData");
    e.delete("/svc/web/1", None).await.expect("delete");
    assert_eq!(z.check_stat("/svc/web").await.expect("exists"), None);
    let ev = fired(w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDeleted, "/svc/web")
    );
}

/// etcd keeps pure etcd semantics on ZK-created data (D2): it may delete a
/// znode that has children (the znode becomes implicit) and write below an
/// ephemeral.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_semantics_on_zk_trees() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    z.create("/p", b"data", &persistent())
        .await
        .expect("create");
    z.create("/p/c", b"", &persistent()).await.expect("create");

    let (_, _, pw) = z.get_and_watch_data("/p").await.expect("watch");
    let d = e.delete("/p", None).await.expect("etcd delete of a parent");
    assert_eq!(d.deleted(), 1);
    assert!(etcd_kv(&mut e, "/p/c").await.is_some(), "children stay");
    let (data, st) = z
        .get_data("/p")
        .await
        .expect("parent with children survives as an implicit znode");
    assert!(data.is_empty());
    assert_eq!(st.num_children, 1);
    assert_eq!(sorted_children(&z, "/p").await, vec!["c"]);
    // Its stored value is gone: the data watch saw a change.
    let ev = fired(pw).await;
    assert_eq!(ev.path, "/p");
    assert!(
        matches!(
            ev.event_type,
            EventType::NodeDataChanged | EventType::NodeDeleted
        ),
        "{ev:?}"
    );

    // etcd may write under an ephemeral; ZK may not.
    z.create("/eph", b"", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    e.put("/eph/by-etcd", "", None)
        .await
        .expect("etcd ignores ZK's no-children-for-ephemerals");
    assert_eq!(sorted_children(&z, "/eph").await, vec!["by-etcd"]);
    assert!(matches!(
        z.create("/eph/by-zk", b"", &persistent()).await,
        Err(zk::Error::NoChildrenForEphemerals)
    ));
}

/// An etcd key attached to a ZooKeeper session's lease is that session's
/// ephemeral; closing the session (closeSession = revoke) deletes it, and
/// etcd sees the session's lease and keys go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keys_on_a_zk_session_and_close_session() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let observer = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    let sid = z.session_id().0;

    z.create("/s", b"", &persistent()).await.expect("create");
    z.create("/s/zk", b"", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    e.put("/s/etcd", "", Some(PutOptions::new().with_lease(sid)))
        .await
        .expect("etcd put on the session's lease");
    let st = observer
        .check_stat("/s/etcd")
        .await
        .expect("exists")
        .expect("present");
    assert_eq!(st.ephemeral_owner, sid);
    let mut mine = z.list_ephemerals("/").await.expect("getEphemerals");
    mine.sort();
    assert_eq!(mine, vec!["/s/etcd", "/s/zk"]);
    let ttl = e
        .lease_time_to_live(sid, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("TimeToLive");
    assert_eq!(ttl.keys().len(), 2);

    let (_, st0, w) = observer.get_and_watch_children("/s").await.expect("watch");
    let (_, mut s) = e
        .watch("/s/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("etcd watch");
    drop(z); // last handle: the client sends closeSession
    let ev = fired(w).await;
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
    let mut deleted = BTreeSet::new();
    let mut revs = BTreeSet::new();
    while deleted.len() < 2 {
        for ev in next_events(&mut s).await {
            assert_eq!(ev.event_type(), EtcdEvent::Delete);
            let kv = ev.kv().expect("kv");
            deleted.insert(kv.key().to_vec());
            revs.insert(kv.mod_revision());
        }
    }
    assert_eq!(deleted, [b"/s/etcd".to_vec(), b"/s/zk".to_vec()].into());
    assert_eq!(revs.len(), 1, "a session's ephemerals go at one revision");
    let (kids, st1) = observer.get_children("/s").await.expect("ls");
    assert!(kids.is_empty());
    assert_eq!(st1.cversion, st0.cversion + 2);
    assert_eq!(Some(&st1.pzxid), revs.iter().next());
    eventually("lease of the closed session gone", || {
        let mut e = e.clone();
        async move {
            !e.leases()
                .await
                .expect("leases")
                .leases()
                .iter()
                .any(|l| l.id() == sid)
        }
    })
    .await;
}

/// ZK multis seen by a concurrent etcd reader: a range read never shows
/// half of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_multis_are_atomic_for_etcd_readers() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let e = etcd_client(&j).await;
    z.create("/mm", b"", &persistent()).await.expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let mut reader = e.clone();
    let poll = tokio::spawn(async move {
        let mut reads = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            let r = reader
                .get("/mm/", Some(GetOptions::new().with_prefix()))
                .await
                .expect("get");
            let mut groups = std::collections::BTreeMap::<Vec<u8>, Vec<i64>>::new();
            for kv in r.kvs() {
                let g = kv.key().split(|b| *b == b'-').next().expect("g").to_vec();
                groups.entry(g).or_default().push(kv.mod_revision());
            }
            for (g, revs) in groups {
                assert_eq!(
                    revs.len(),
                    3,
                    "etcd saw half of multi {}",
                    String::from_utf8_lossy(&g)
                );
                assert!(revs.iter().all(|r| *r == revs[0]), "{revs:?}");
            }
            reads += 1;
        }
        reads
    });
    for i in 0..30 {
        let mut m = z.new_multi_writer();
        for s in ["a", "b", "c"] {
            m.add_create(&format!("/mm/g{i}-{s}"), b"", &persistent())
                .expect("op");
        }
        if i % 2 == 1 {
            for s in ["a", "b", "c"] {
                m.add_delete(&format!("/mm/g{}-{s}", i - 1), None)
                    .expect("op");
            }
        }
        m.commit().await.expect("multi");
    }
    stop.store(true, Ordering::Relaxed);
    let reads = poll.await.expect("reader");
    assert!(reads > 5, "reader made only {reads} reads");
    assert_eq!(
        z.list_children("/mm").await.expect("ls").len(),
        3 * 15,
        "odd multis deleted the previous group"
    );
}

/// etcd's lease rules apply to ZK ephemerals: a put without a lease
/// detaches the key from the session (it becomes persistent for ZK and
/// survives the session), a put with `ignore_lease` keeps it attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_puts_can_detach_and_keep_a_zk_ephemeral() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let observer = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    let sid = z.session_id().0;
    for p in ["/d1", "/d2"] {
        z.create(p, b"", &open(CreateMode::Ephemeral))
            .await
            .expect("ephemeral");
    }
    e.put("/d1", "detached", None).await.expect("put");
    e.put("/d2", "kept", Some(PutOptions::new().with_ignore_lease()))
        .await
        .expect("put ignore_lease");
    let st1 = observer
        .check_stat("/d1")
        .await
        .expect("exists")
        .expect("d1");
    let st2 = observer
        .check_stat("/d2")
        .await
        .expect("exists")
        .expect("d2");
    assert_eq!(
        st1.ephemeral_owner, 0,
        "a leaseless put makes it persistent"
    );
    assert_eq!(st2.ephemeral_owner, sid, "ignore_lease keeps the owner");
    assert_eq!(
        z.list_ephemerals("/").await.expect("getEphemerals"),
        vec!["/d2"]
    );
    let ttl = e
        .lease_time_to_live(sid, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("TimeToLive");
    assert_eq!(ttl.keys(), &[b"/d2".to_vec()]);

    let (_, w) = observer.check_and_watch_stat("/d2").await.expect("watch");
    drop(z);
    let ev = fired(w).await;
    assert_eq!(ev.event_type, EventType::NodeDeleted);
    assert_eq!(
        observer.get_data("/d1").await.expect("d1 survives").0,
        b"detached"
    );
    assert_eq!(observer.check_stat("/d2").await.expect("exists"), None);
}

/// D6 across protocols: a ZK connection with a watch on a node never gets
/// a read reply reflecting an etcd write before the notification for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_notification_precedes_reads_of_etcd_writes() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    e.put("/o", "0", None).await.expect("put");
    for i in 1..=40 {
        let (_, _, w) = z.get_and_watch_data("/o").await.expect("watch");
        let mut w = Box::pin(w.changed());
        let r = put_rev(&e.put("/o", i.to_string(), None).await.expect("put"));
        // Poll reads until one reflects the write; the watch must have
        // fired by the time that reply was received.
        loop {
            let (data, st) = z.get_data("/o").await.expect("getData");
            if st.mzxid >= r {
                assert_eq!(data, i.to_string().as_bytes());
                break;
            }
        }
        let ev = futures::FutureExt::now_or_never(&mut w)
            .unwrap_or_else(|| panic!("round {i}: read reflected rev {r} before its notification"));
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeDataChanged, "/o")
        );
    }
}

/// ZK pings keep the session's lease alive: etcd sees it renewed, and the
/// ephemeral outlives several session timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_pings_renew_the_session_lease() {
    let j = Janus::start_with(&["--zk-min-session-timeout-ms", "1000"]);
    let z = zk::Client::connector()
        .session_timeout(Duration::from_millis(1500))
        .connect(&j.zk_addr().to_string())
        .await
        .expect("connect");
    let mut e = etcd_client(&j).await;
    let sid = z.session_id().0;
    z.create("/alive", b"", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let ttl = e
        .lease_time_to_live(sid, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("TimeToLive");
    assert!(ttl.ttl() > 0, "lease of a live session expired: {ttl:?}");
    assert_eq!(ttl.keys(), &[b"/alive".to_vec()]);
    assert_eq!(etcd_kv(&mut e, "/alive").await.expect("key").lease(), sid);
    assert_eq!(z.state(), SessionState::SyncConnected);
}

/// Sequential creates under an implicit parent number from the count of
/// child creates that etcd's writes gave it (deletes do not advance it, D5),
/// while its cversion counts the delete too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_under_an_implicit_parent() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    e.put("/iq/a", "", None).await.expect("put");
    e.put("/iq/b", "", None).await.expect("put");
    e.delete("/iq/a", None).await.expect("delete");
    let (_, st) = z.get_children("/iq").await.expect("implicit /iq");
    assert_eq!((st.cversion, st.num_children), (3, 1));
    let (_, s) = z
        .create("/iq/n-", b"", &open(CreateMode::PersistentSequential))
        .await
        .expect("sequential under implicit parent");
    assert_eq!(s.to_string(), "0000000002");
    assert!(etcd_kv(&mut e, "/iq/n-0000000002").await.is_some());
}

/// An etcd client may keep a ZooKeeper session alive (sessions are leases,
/// D4): with the ZooKeeper client gone, etcd keepalives on the session's
/// lease keep its ephemerals; when they stop, the session expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keepalive_holds_a_detached_zk_session() {
    let j = Janus::start_with(&["--zk-min-session-timeout-ms", "1000"]);
    let observer = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    let gone = zk::Client::connector()
        .session_timeout(Duration::from_millis(2000))
        .detached()
        .connect(&j.zk_addr().to_string())
        .await
        .expect("connect");
    let sid = gone.session_id().0;
    gone.create("/held", b"", &open(CreateMode::Ephemeral))
        .await
        .expect("ephemeral");
    drop(gone);
    let (mut keeper, mut acks) = e.lease_keep_alive(sid).await.expect("keepalive");
    for _ in 0..8 {
        keeper.keep_alive().await.expect("keepalive");
        let ack = tokio::time::timeout(T, acks.message())
            .await
            .expect("ack in time")
            .expect("ack ok")
            .expect("stream open");
        assert_eq!(ack.id(), sid);
        assert!(ack.ttl() > 0, "keepalive of a live session lease: {ack:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        observer
            .check_stat("/held")
            .await
            .expect("exists")
            .is_some(),
        "etcd keepalives did not hold the session"
    );
    drop(keeper);
    drop(acks);
    let (st, w) = observer.check_and_watch_stat("/held").await.expect("watch");
    assert!(st.is_some());
    let ev = fired(w).await;
    assert_eq!(ev.event_type, EventType::NodeDeleted);
}

/// ZooKeeper's conditional-write contract on an implicit znode: it reports
/// version 0, so `setData(version 0)` may succeed once and must return
/// version 1; a second writer that also read version 0 must get BadVersion.
/// Otherwise two compare-and-set clients both "win" (a lost update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn set_data_on_an_implicit_znode_is_a_compare_and_set() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    let other = zk_client(&j).await;
    let mut e = etcd_client(&j).await;
    e.put("/j/a", "", None).await.expect("put");
    let st = z.check_stat("/j").await.expect("exists").expect("implicit");
    assert_eq!(st.version, 0);
    let won = z
        .set_data("/j", b"first", Some(0))
        .await
        .expect("setData v0");
    assert_eq!(won.version, 1, "setData increments the version");
    assert!(
        matches!(
            other.set_data("/j", b"second", Some(0)).await,
            Err(zk::Error::BadVersion)
        ),
        "a second setData(version 0) must lose"
    );
    assert_eq!(z.get_data("/j").await.expect("getData").0, b"first");
}

/// D14: etcd RBAC governs etcd clients, znode ACLs govern ZooKeeper
/// clients, and an etcd write to a znode's key keeps its ACL.
#[tokio::test]
async fn etcd_rbac_and_znode_acls_each_govern_their_own_protocol() {
    let j = Janus::start();
    let z = zk_client(&j).await;
    z.auth("digest".into(), b"u:p".to_vec())
        .await
        .expect("zk auth");
    let guarded = CreateMode::Persistent.with_acls(Acls::creator_all());
    z.create("/guarded", b"zk", &guarded).await.expect("create");

    let mut c = etcd_client(&j).await;
    c.user_add("root", "rootpw", None).await.expect("root");
    c.user_grant_role("root", "root").await.expect("root role");
    c.user_add("reader", "pw", None).await.expect("reader");
    c.role_add("r").await.expect("role");
    c.role_grant_permission("r", etcd::Permission::read("/guarded"))
        .await
        .expect("grant");
    c.user_grant_role("reader", "r").await.expect("grant role");
    c.auth_enable().await.expect("auth enable");
    let as_user = |u: &'static str, p: &'static str| {
        let ep = j.etcd_endpoint();
        async move {
            etcd::Client::connect([ep], Some(etcd::ConnectOptions::new().with_user(u, p)))
                .await
                .expect("etcd connect as user")
        }
    };

    // etcd permissions decide for etcd clients; the znode's ACL is not
    // consulted.
    let mut reader = as_user("reader", "pw").await;
    let got = etcd_kv(&mut reader, "/guarded")
        .await
        .expect("reader reads");
    assert_eq!(got.value(), b"zk");
    let denied = reader
        .put("/guarded", "x", None)
        .await
        .expect_err("no write");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let mut anon = etcd_client(&j).await;
    let denied = anon.get("/guarded", None).await.expect_err("no user");
    assert!(
        denied.to_string().contains("user name is empty"),
        "{denied}"
    );

    // An etcd write keeps the ACL: ZooKeeper still refuses strangers.
    let mut root = as_user("root", "rootpw").await;
    root.put("/guarded", "from etcd", None)
        .await
        .expect("root put");
    let stranger = zk_client(&j).await;
    assert!(matches!(
        stranger.get_data("/guarded").await,
        Err(zk::Error::NoAuth)
    ));
    let (data, _) = z.get_data("/guarded").await.expect("owner reads");
    assert_eq!(data, b"from etcd");
    let (acl, _) = z.get_acl("/guarded").await.expect("acl");
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");

    // ZooKeeper writes answer to ACLs only, whatever etcd's auth says.
    stranger
        .create("/free", b"zk", &persistent())
        .await
        .expect("zk create with etcd auth on");
}
