//! janus driven by the `etcd-client` crate, for what etcdctl cannot
//! express: several watchers on one stream, cancel, progress requests and
//! notifications, fragments, compaction of a watch, nested txns, range
//! filters, the keepalive stream, and bad input.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, Error, EventType, GetOptions, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};
use janus_conformance::harness::Janus;

const T: Duration = Duration::from_secs(10);

fn start() -> Janus {
    // Progress notifications every 300 ms instead of etcd's 10 minutes
    // (inherited by the janus process the harness starts).
    std::env::set_var("JANUS_WATCH_PROGRESS_NOTIFY_INTERVAL_MS", "300");
    Janus::start()
}

async fn connect(j: &Janus) -> Client {
    Client::connect([j.etcd_endpoint()], None)
        .await
        .expect("connect to janus")
}

async fn next(s: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(T, s.message())
        .await
        .expect("watch response in time")
        .expect("watch stream ok")
        .expect("stream open")
}

fn grpc_message(e: Error) -> (tonic::Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test]
async fn many_watchers_on_one_stream_cancel_and_progress() {
    let j = start();
    let mut c = connect(&j).await;
    // etcd-client consumes the first created response itself.
    let (mut w, mut s) = c.watch("a", None).await.expect("watch a");
    let id_a = w.watch_id();
    w.watch("b", Some(WatchOptions::new().with_prev_key()))
        .await
        .expect("watch b");
    let rb = next(&mut s).await;
    assert!(rb.created());
    let id_b = rb.watch_id();
    w.watch(
        "c",
        Some(WatchOptions::new().with_prefix().with_watch_id(77)),
    )
    .await
    .expect("watch c");
    let rc = next(&mut s).await;
    assert!(rc.created());
    assert_eq!(rc.watch_id(), 77);
    assert_eq!((id_a, id_b), (0, 1), "ids are assigned from 0 per stream");

    c.put("b", "1", None).await.expect("put b");
    c.put("b", "2", None).await.expect("put b");
    let put_c = c.put("c1", "x", None).await.expect("put c1");
    let r = next(&mut s).await;
    assert_eq!(r.watch_id(), id_b);
    assert!(r.events()[0].prev_kv().is_none());
    let r = next(&mut s).await;
    assert_eq!(r.watch_id(), id_b);
    assert_eq!(
        r.events()[0].prev_kv().map(|kv| kv.value()),
        Some(&b"1"[..])
    );
    let r = next(&mut s).await;
    assert_eq!(r.watch_id(), 77);
    assert_eq!(
        r.header().map(|h| h.revision()),
        put_c.header().map(|h| h.revision())
    );
    assert_eq!(r.events()[0].kv().map(|kv| kv.key()), Some(&b"c1"[..]));

    w.cancel_by_id(id_b).await.expect("cancel b");
    let r = next(&mut s).await;
    assert!(r.canceled());
    assert_eq!(r.watch_id(), id_b);
    c.put("b", "3", None).await.expect("put b");
    c.put("a", "1", None).await.expect("put a");
    let r = next(&mut s).await;
    assert_eq!(r.watch_id(), id_a, "canceled watcher b got an event");

    // Duplicate explicit id: created + canceled, id -1.
    w.watch("d", Some(WatchOptions::new().with_watch_id(77)))
        .await
        .expect("dup id");
    let r = next(&mut s).await;
    assert!(r.created() && r.canceled());
    assert_eq!(r.watch_id(), -1);
    assert_eq!(
        r.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    let rev = c
        .get("a", None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision())
        .unwrap_or(-1);
    w.request_progress().await.expect("progress");
    let r = next(&mut s).await;
    assert_eq!(r.watch_id(), -1);
    assert!(r.events().is_empty());
    assert_eq!(r.header().map(|h| h.revision()), Some(rev));
}

#[tokio::test]
async fn progress_notify_reports_the_revision_when_idle() {
    let j = start();
    let mut c = connect(&j).await;
    let put = c.put("p", "1", None).await.expect("put");
    let rev = put.header().map(|h| h.revision()).unwrap_or(-1);
    let (_w, mut s) = c
        .watch("p", Some(WatchOptions::new().with_progress_notify()))
        .await
        .expect("watch");
    let r = next(&mut s).await;
    assert!(r.events().is_empty() && !r.canceled());
    assert_eq!(r.header().map(|h| h.revision()), Some(rev));
}

#[tokio::test]
async fn history_replay_and_compacted_watch() {
    let j = start();
    let mut c = connect(&j).await;
    for i in 0..5 {
        c.put("h", format!("{i}"), None).await.expect("put");
    }
    // Revisions 2..=6. History from 3: one response, four events.
    let (_w, mut s) = c
        .watch("h", Some(WatchOptions::new().with_start_revision(3)))
        .await
        .expect("watch");
    let r = next(&mut s).await;
    let revs: Vec<i64> = r
        .events()
        .iter()
        .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
        .collect();
    assert_eq!(revs, vec![3, 4, 5, 6]);
    c.delete("h", None).await.expect("delete");
    let r = next(&mut s).await;
    assert_eq!(r.events()[0].event_type(), EventType::Delete);
    assert_eq!(r.events()[0].kv().map(|kv| kv.mod_revision()), Some(7));

    c.compact(5, None).await.expect("compact");
    let (_w2, mut s2) = c
        .watch("h", Some(WatchOptions::new().with_start_revision(2)))
        .await
        .expect("watch");
    let r = next(&mut s2).await;
    assert!(r.canceled());
    assert_eq!(r.compact_revision(), 5);
    let e = c
        .get("h", Some(GetOptions::new().with_revision(3)))
        .await
        .expect_err("compacted read");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );
}

#[tokio::test]
async fn large_history_is_fragmented_only_when_asked() {
    let j = start();
    let mut c = connect(&j).await;
    let big = vec![b'x'; 600 * 1024];
    let first = c
        .put("big0", big.clone(), None)
        .await
        .expect("put")
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    for i in 1..4 {
        c.put(format!("big{i}"), big.clone(), None)
            .await
            .expect("put");
    }
    let mut wc = c.watch_client().max_decoding_message_size(16 << 20);
    let (_w, mut s) = wc
        .watch(
            "big",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(first)
                    .with_fragment(),
            ),
        )
        .await
        .expect("watch");
    let mut counts = Vec::new();
    while counts.iter().sum::<usize>() < 4 {
        counts.push(next(&mut s).await.events().len());
    }
    assert!(
        counts.len() > 1,
        "2.4 MB of history must come in fragments, got {counts:?}"
    );

    let (_w, mut s) = wc
        .watch(
            "big",
            Some(WatchOptions::new().with_prefix().with_start_revision(first)),
        )
        .await
        .expect("watch");
    assert_eq!(
        next(&mut s).await.events().len(),
        4,
        "without fragment, one response"
    );
}

#[tokio::test]
async fn nested_txn_and_range_filters() {
    let j = start();
    let mut c = connect(&j).await;
    c.put("k1", "a", None).await.expect("put");
    c.put("k2", "bb", None).await.expect("put");
    c.put("k3", "c", None).await.expect("put");
    c.put("k1", "aaa", None).await.expect("put"); // rev 5
    let inner = Txn::new()
        .when([Compare::value("k2", CompareOp::Equal, "bb")])
        .and_then([
            TxnOp::put("n1", "x", None),
            TxnOp::get("k", Some(GetOptions::new().with_prefix())),
        ]);
    let outer = Txn::new()
        .when([Compare::version("k1", CompareOp::Greater, 1)])
        .and_then([TxnOp::txn(inner), TxnOp::delete("k3", None)])
        .or_else([TxnOp::put("never", "x", None)]);
    let r = c.txn(outer).await.expect("txn");
    assert!(r.succeeded());
    assert_eq!(r.header().map(|h| h.revision()), Some(6));
    match &r.op_responses()[0] {
        TxnOpResponse::Txn(t) => {
            assert!(t.succeeded());
            match &t.op_responses()[1] {
                TxnOpResponse::Get(g) => assert_eq!(g.count(), 3),
                other => panic!("unexpected {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(c.get("never", None).await.expect("get").kvs().is_empty());

    let g = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(3)
                    .with_sort(SortTarget::Value, SortOrder::Descend),
            ),
        )
        .await
        .expect("get");
    let keys: Vec<&[u8]> = g.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"k2"[..], &b"k1"[..]]);
    let g = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_max_create_revision(2)),
        )
        .await
        .expect("get");
    assert_eq!(g.kvs().len(), 1);
    let g = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_limit(1)
                    .with_keys_only(),
            ),
        )
        .await
        .expect("get");
    assert!(g.more() && g.kvs()[0].value().is_empty());
}

#[tokio::test]
async fn lease_keepalive_stream_and_expiry() {
    let j = start();
    let mut c = connect(&j).await;
    let g = c.lease_grant(3, None).await.expect("grant");
    c.put("eph", "1", Some(PutOptions::new().with_lease(g.id())))
        .await
        .expect("put with lease");
    let (mut keeper, mut stream) = c.lease_keep_alive(g.id()).await.expect("keepalive");
    for _ in 0..3 {
        keeper.keep_alive().await.expect("send keepalive");
        let r = tokio::time::timeout(T, stream.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        assert_eq!((r.id(), r.ttl()), (g.id(), 3));
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert_eq!(
        c.get("eph", None).await.expect("get").kvs().len(),
        1,
        "kept alive"
    );
    drop(keeper);
    // Expiry deletes the key.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !c.get("eph", None).await.expect("get").kvs().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ttl = c.lease_time_to_live(g.id(), None).await.expect("ttl");
    assert_eq!(ttl.ttl(), -1);
}

#[tokio::test]
async fn bad_input_gets_etcd_errors_and_leaves_the_server_healthy() {
    let j = start();
    let mut c = connect(&j).await;
    let too_big = vec![b'v'; 1536 * 1024 + 10];
    let e = c.put("big", too_big, None).await.expect_err("too large");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );

    let e = c
        .put("k", "v", Some(PutOptions::new().with_lease(12345)))
        .await
        .expect_err("unknown lease");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    let e = c.lease_revoke(12345).await.expect_err("unknown lease");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );

    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("m{i}"), "v", None))
        .collect();
    let e = c
        .txn(Txn::new().and_then(many))
        .await
        .expect_err("too many ops");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: too many operations in txn request".into()
        )
    );
    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    let e = c.txn(dup).await.expect_err("duplicate");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request".into()
        )
    );
    let e = c.put("", "v", None).await.expect_err("empty key");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let e = c
        .get("k", Some(GetOptions::new().with_revision(1000)))
        .await
        .expect_err("future");
    assert_eq!(
        grpc_message(e),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".into()
        )
    );

    // A client that vanishes in the middle of a watch and a keepalive stream.
    {
        let mut c2 = connect(&j).await;
        let (_w, _s) = c2.watch("gone", None).await.expect("watch");
        let id = c2.lease_grant(60, None).await.expect("grant").id();
        let (_k, _ks) = c2.lease_keep_alive(id).await.expect("ka");
    }
    for i in 0..20 {
        c.put("gone", format!("{i}"), None)
            .await
            .expect("server still writes");
    }
    let r = c.get("gone", None).await.expect("server still reads");
    assert_eq!(r.kvs()[0].value(), b"19");
    let st = c.status().await.expect("status");
    assert!(st.leader() != 0);
}
