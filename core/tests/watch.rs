//! Watch hub (D6): revision order, history replay with prev_kv, compaction
//! errors, lagging catch-up of slow watchers, ZooKeeper tree events.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{delete, put};
use janus_core::kv::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use janus_core::{Command, CommandResult, Event, EventKind, KvError, Node, WatchRequest, Watcher};

fn watch(n: &Node, key: &str, end: &str, start: i64, tree: bool) -> Watcher {
    n.watch(WatchRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        start_revision: start,
        tree_events: tree,
    })
    .expect("watch")
}

/// Events until one at `rev` or later has arrived (fails after 10 s).
async fn collect_until(w: &mut Watcher, rev: i64) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    while out.last().is_none_or(|e| e.kv.mod_revision < rev) {
        let batch = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap_or_else(|_| panic!("no event up to {rev}; got {} so far", out.len()))
            .expect("watch ok");
        assert!(!batch.is_empty(), "next() never returns an empty batch");
        out.extend(batch);
    }
    out
}

/// Nothing more arrives within a short while.
async fn quiet(w: &mut Watcher) {
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(150), w.next()).await {
        panic!("unexpected events: {r:?}");
    }
}

fn assert_ordered(evs: &[Event]) {
    for pair in evs.windows(2) {
        assert!(
            pair[0].kv.mod_revision <= pair[1].kv.mod_revision,
            "out of order: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test]
async fn live_events_in_revision_order_with_prev_kv() {
    let n = common::start();
    put(&n, "/w/a", "0").await;
    let mut w = watch(&n, "/w/", "/w0", 0, false);
    let mut other = watch(&n, "/x", "", 0, false);
    let (r1, _) = put(&n, "/w/a", "1").await;
    let (r2, _) = put(&n, "/w/b", "1").await;
    put(&n, "/x", "not mine").await;
    // A txn writing two keys: one revision, both events.
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"/w/c".to_vec(),
                value: b"t".to_vec(),
                ..Default::default()
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"/w/a".to_vec(),
                ..Default::default()
            }),
        ],
        failure: vec![],
    };
    let r3 = common::propose(&n, Command::Txn(t)).await.revision;
    let deleted = common::propose(
        &n,
        Command::DeleteRange(DeleteRangeRequest {
            key: b"/w/".to_vec(),
            range_end: b"/w0".to_vec(),
            prev_kv: false,
        }),
    )
    .await
    .revision;
    let evs = collect_until(&mut w, deleted).await;
    assert_ordered(&evs);
    let got: Vec<(EventKind, &[u8], i64)> = evs
        .iter()
        .map(|e| (e.kind, e.kv.key.as_slice(), e.kv.mod_revision))
        .collect();
    assert_eq!(
        got,
        vec![
            (EventKind::Put, &b"/w/a"[..], r1),
            (EventKind::Put, &b"/w/b"[..], r2),
            (EventKind::Put, &b"/w/c"[..], r3),
            (EventKind::Delete, &b"/w/a"[..], r3),
            (EventKind::Delete, &b"/w/b"[..], deleted),
            (EventKind::Delete, &b"/w/c"[..], deleted),
        ]
    );
    // kv and prev_kv as etcd reports them.
    assert_eq!(evs[0].kv.value, b"1");
    assert_eq!(evs[0].kv.version, 2);
    assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"0");
    assert_eq!(evs[1].prev_kv, None, "a create has no prev_kv");
    assert_eq!(evs[3].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(
        evs[3].kv.value, b"",
        "a delete carries only key and revision"
    );
    assert_eq!(evs[3].kv.version, 0);
    assert_eq!(evs[5].prev_kv.as_ref().unwrap().value, b"t");
    quiet(&mut w).await;
    let o = collect_until(&mut other, 0).await;
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].kv.value, b"not mine");
}

#[tokio::test]
async fn history_replay_then_live_without_gap() {
    let n = common::start();
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(put(&n, "/h", &i.to_string()).await.0);
    }
    delete(&n, "/h").await;
    let del_rev = n.revision();
    let start = revs[3];
    let mut w = watch(&n, "/h", "", start, false);
    // Live writes after subscribing follow the replay with no gap or dup.
    let (live, _) = put(&n, "/h", "live").await;
    let evs = collect_until(&mut w, live).await;
    let got: Vec<i64> = evs.iter().map(|e| e.kv.mod_revision).collect();
    let mut want: Vec<i64> = revs[3..].to_vec();
    want.push(del_rev);
    want.push(live);
    assert_eq!(got, want);
    for (i, e) in evs[..7].iter().enumerate() {
        assert_eq!(e.kind, EventKind::Put);
        assert_eq!(e.kv.value, (i + 3).to_string().as_bytes());
        assert_eq!(e.kv.version, i as i64 + 4);
        assert_eq!(
            e.prev_kv.as_ref().expect("replayed prev_kv").value,
            (i + 2).to_string().as_bytes()
        );
    }
    assert_eq!(evs[7].kind, EventKind::Delete);
    assert_eq!(evs[7].prev_kv.as_ref().unwrap().value, b"9");
    assert_eq!(evs[8].prev_kv, None, "re-created after delete");
    assert_eq!(evs[8].kv.version, 1);
    quiet(&mut w).await;

    // A future start revision waits for it.
    let cur = n.revision();
    let mut fut = watch(&n, "/h", "", cur + 3, false);
    for i in 0..5 {
        put(&n, "/h", &format!("f{i}")).await;
    }
    let evs = collect_until(&mut fut, cur + 5).await;
    let got: Vec<i64> = evs.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(got, vec![cur + 3, cur + 4, cur + 5]);
}

#[tokio::test]
async fn compacted_start_revision_is_refused() {
    let n = common::start();
    for i in 0..8 {
        put(&n, "/c", &i.to_string()).await;
    }
    let compact_at = n.revision() - 2;
    let a = common::propose(
        &n,
        Command::Compact {
            revision: compact_at,
        },
    )
    .await;
    assert_eq!(a.result, CommandResult::Compact(Ok(())));
    let err = n
        .watch(WatchRequest {
            key: b"/c".to_vec(),
            start_revision: compact_at - 1,
            ..Default::default()
        })
        .err()
        .expect("compacted");
    assert_eq!(
        err,
        KvError::Compacted {
            compact_revision: compact_at
        }
    );
    // The compaction revision itself is still watchable.
    let mut w = watch(&n, "/c", "", compact_at, false);
    let evs = collect_until(&mut w, n.revision()).await;
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[0].kv.mod_revision, compact_at);
    assert_eq!(evs[0].prev_kv, None, "prev of the compaction point is gone");
    assert_eq!(evs[1].prev_kv.as_ref().unwrap().mod_revision, compact_at);
}

/// A watcher that never reads while thousands of revisions are applied:
/// writes are not slowed down by it, and afterwards it still receives every
/// event, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_and_never_blocks_writes() {
    let n = common::start();
    let mut w = watch(&n, "/s/", "/s0", 0, false);
    let mut prefix_rev = BTreeMap::new();
    let total = 2600;
    let mut set = tokio::task::JoinSet::new();
    let started = std::time::Instant::now();
    for i in 0..total {
        let node = n.node.clone();
        set.spawn(async move {
            let key = format!("/s/{}", i % 37);
            let (rev, _) = put(&node, &key, &i.to_string()).await;
            (rev, key, i)
        });
        if set.len() >= 64 {
            let (rev, key, i) = set.join_next().await.unwrap().unwrap();
            prefix_rev.insert(rev, (key, i));
        }
    }
    while let Some(r) = set.join_next().await {
        let (rev, key, i) = r.unwrap();
        prefix_rev.insert(rev, (key, i));
    }
    let elapsed = started.elapsed();
    assert_eq!(prefix_rev.len(), total);
    assert!(elapsed < Duration::from_secs(60), "writes took {elapsed:?}");
    let last = *prefix_rev.keys().last().unwrap();
    let evs = collect_until(&mut w, last).await;
    let got: Vec<(i64, Vec<u8>, Vec<u8>)> = evs
        .iter()
        .map(|e| (e.kv.mod_revision, e.kv.key.clone(), e.kv.value.clone()))
        .collect();
    let want: Vec<(i64, Vec<u8>, Vec<u8>)> = prefix_rev
        .iter()
        .map(|(r, (k, i))| (*r, k.clone().into_bytes(), i.to_string().into_bytes()))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "lagging watcher saw a different history");
    // prev_kv is right after catch-up too.
    for e in &evs {
        if e.kv.version > 1 {
            let p = e.prev_kv.as_ref().expect("prev_kv");
            assert!(p.mod_revision < e.kv.mod_revision);
            assert_eq!(p.version, e.kv.version - 1);
        }
    }
    // And it is live again.
    let (r, _) = put(&n, "/s/after", "x").await;
    let evs = collect_until(&mut w, r).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kv.mod_revision, r);
}

/// A lagging watcher whose missed history is compacted gets `Compacted`,
/// after every event up to where it fell behind and none missing (etcd
/// 3.4.31's "watch event loss after compaction" fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_below_compaction_gets_compacted() {
    let n = common::start();
    let first = n.revision() + 1;
    let mut w = watch(&n, "/l", "", 0, false);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1300 {
        let node = n.node.clone();
        set.spawn(async move { put(&node, "/l", &i.to_string()).await });
        if set.len() >= 64 {
            set.join_next().await.unwrap().unwrap();
        }
    }
    while set.join_next().await.is_some() {}
    let cur = n.revision();
    common::propose(&n, Command::Compact { revision: cur }).await;
    let mut seen = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch answers")
        {
            Ok(evs) => {
                for e in evs {
                    assert_eq!(e.kv.mod_revision, first + seen as i64, "an event was lost");
                    seen += 1;
                }
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        KvError::Compacted {
            compact_revision: cur
        }
    );
    assert!(
        seen < 1300,
        "it fell behind, so it cannot have seen everything"
    );
}

#[tokio::test]
async fn tree_events_for_child_changes() {
    let n = common::start();
    use janus_core::znode::CreateMode;
    common::create(&n, "/p", "", CreateMode::Persistent).await;
    let start = n.revision() + 1;
    let mut tree = watch(&n, "/p", "", 0, true);
    let mut plain = watch(&n, "/p", "", 0, false);
    let (_, c) = common::create(&n, "/p/a", "", CreateMode::Persistent).await;
    let (r_etcd, _) = put(&n, "/p/b", "").await;
    put(&n, "/p/b", "update").await; // not a child change
    let r_del = {
        common::zk1(
            &n,
            janus_core::znode::ZkOp::Delete {
                path: "/p/a".into(),
                version: -1,
            },
        )
        .await
        .unwrap();
        n.revision()
    };
    let (r_set, _) = put(&n, "/p", "data").await;
    let evs = collect_until(&mut tree, r_set).await;
    let got: Vec<(EventKind, i64)> = evs
        .iter()
        .filter(|e| e.kv.key == b"/p")
        .map(|e| (e.kind, e.kv.mod_revision))
        .collect();
    assert_eq!(
        got,
        vec![
            (EventKind::ChildrenChanged, c.czxid),
            (EventKind::ChildrenChanged, r_etcd),
            (EventKind::ChildrenChanged, r_del),
            (EventKind::Put, r_set),
        ]
    );
    let evs = collect_until(&mut plain, r_set).await;
    assert_eq!(evs.len(), 1, "no tree events unless asked: {evs:?}");
    // Replayed from history, the same child events are derived.
    let mut replay = watch(&n, "/p", "", start, true);
    let evs = collect_until(&mut replay, r_set).await;
    let again: Vec<(EventKind, i64)> = evs
        .iter()
        .filter(|e| e.kv.key == b"/p")
        .map(|e| (e.kind, e.kv.mod_revision))
        .collect();
    assert_eq!(again, got);
    // Implicit parents appearing with an etcd key get a child event too,
    // and an event saying they now exist (ZooKeeper's NodeCreated).
    let mut root = watch(&n, "/q", "", 0, true);
    let (r, _) = put(&n, "/q/r/s", "").await;
    let evs = collect_until(&mut root, r).await;
    let kinds: Vec<EventKind> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::ChildrenChanged, EventKind::ImplicitCreated]
    );
    // ... and one saying they vanished when the last key below goes.
    let r = delete(&n, "/q/r/s").await;
    let evs = collect_until(&mut root, r).await;
    let kinds: Vec<EventKind> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::ChildrenChanged, EventKind::ImplicitDeleted]
    );
}

/// Replaying history must produce the events live delivery produced, so a
/// reconnecting ZooKeeper client (SetWatches from relativeZxid) sees the
/// same child changes.
#[tokio::test]
#[ignore = "core gap: history replay derives ChildrenChanged only for the direct parent; \
            implicit ancestors that appeared or vanished with the key get no replayed event"]
async fn replayed_tree_events_equal_live_ones() {
    let n = common::start();
    let start = n.revision() + 1;
    let mut live = watch(&n, "/", "\0", 0, true);
    let (r1, _) = put(&n, "/x/y/z", "").await;
    delete(&n, "/x/y/z").await;
    let r2 = n.revision();
    assert!(r2 > r1);
    let live_evs = collect_until(&mut live, r2).await;
    let mut replay = watch(&n, "/", "\0", start, true);
    let replay_evs = collect_until(&mut replay, r2).await;
    let key = |e: &Event| (e.kind, e.kv.key.clone(), e.kv.mod_revision);
    let a: Vec<_> = live_evs.iter().map(key).collect();
    let b: Vec<_> = replay_evs.iter().map(key).collect();
    assert_eq!(b, a);
}

/// Waits in one `next()` call (as a frontend's watch task does) while `key`
/// is put; the events it returns, or a panic after 5 s.
async fn next_while_put(n: &Node, w: &mut Watcher, key: &str) -> (i64, Vec<Event>) {
    let writer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        put(n, key, "1").await.0
    };
    let (evs, r) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), w.next()),
        writer
    );
    let evs = evs
        .unwrap_or_else(|_| panic!("no event for the put of {key} at {r}"))
        .expect("watch ok");
    (r, evs)
}

/// A watch from the current revision when no record carries that revision
/// (a fresh store at revision 1, or a compaction that dropped the
/// tombstone at the top) must go live, as etcd's does: the put after it is
/// delivered. Start = current + 1 works the same way.
#[tokio::test]
async fn watch_from_current_revision_without_a_record_goes_live() {
    let n = common::start();
    let cur = n.revision();
    assert_eq!(cur, 1, "a fresh store");
    let mut fresh = watch(&n, "/s", "/t", cur, false);
    let (r, evs) = next_while_put(&n, &mut fresh, "/s/x").await;
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].kv.key.as_slice(), evs[0].kv.mod_revision),
        (&b"/s/x"[..], r)
    );
    let mut next = watch(&n, "/s", "/t", n.revision() + 1, false);
    let (r, evs) = next_while_put(&n, &mut next, "/s/y").await;
    assert_eq!((evs.len(), evs[0].kv.mod_revision), (1, r));

    // The newest revision is a delete, then compacted: its tombstone goes.
    delete(&n, "/s/x").await;
    let d = n.revision();
    let a = common::propose(&n, Command::Compact { revision: d }).await;
    assert_eq!(a.result, CommandResult::Compact(Ok(())));
    let mut w = watch(&n, "/s", "/t", d, false);
    let (r, mut evs) = next_while_put(&n, &mut w, "/s/z").await;
    if evs.last().is_some_and(|e| e.kv.mod_revision == d) {
        evs.extend(collect_until(&mut w, r).await);
    }
    assert_eq!(evs.last().map(|e| e.kv.key.clone()), Some(b"/s/z".to_vec()));
    assert!(evs
        .iter()
        .all(|e| e.kv.mod_revision == d || e.kv.mod_revision == r));
}

/// After a restart the current revision is watchable the same way.
#[tokio::test]
async fn watch_from_current_revision_after_restart() {
    let mut t = common::start();
    put(&t.node, "/r/a", "1").await;
    delete(&t.node, "/r/a").await;
    let d = t.node.revision();
    common::propose(&t.node, Command::Compact { revision: d }).await;
    t = common::restart(t);
    assert_eq!(t.node.revision(), d);
    let mut w = watch(&t.node, "/r", "/s", d, false);
    let (r, evs) = next_while_put(&t.node, &mut w, "/r/b").await;
    assert_eq!((evs.len(), evs[0].kv.mod_revision), (1, r));
    drop(w);
}

/// A path subscriber (what a ZooKeeper connection is) gets events only on
/// the keys it registered, exact or recursive, from the moment it
/// registers them, and nothing after it forgets them; a slow one catches
/// up from history with the same filter.
#[tokio::test]
async fn path_subscribers_get_only_their_keys() {
    let n = common::start();
    put(&n, "/p", "").await;
    let mut w = n
        .watch_paths(WatchRequest {
            key: b"/".to_vec(),
            range_end: vec![0],
            start_revision: 0,
            tree_events: true,
        })
        .expect("watch");
    let interest = w.interest().expect("a path subscriber has an interest");
    assert!(watch(&n, "/", "", 0, false).interest().is_none());
    put(&n, "/p/a", "1").await;
    quiet(&mut w).await;
    interest.add(b"/p/a", false);
    interest.add(b"/r", true);
    put(&n, "/p/b", "1").await;
    let (rev, _) = put(&n, "/p/a", "2").await;
    let evs = collect_until(&mut w, rev).await;
    let keys: Vec<&[u8]> = evs.iter().map(|e| &e.kv.key[..]).collect();
    assert_eq!(keys, vec![&b"/p/a"[..]], "{evs:?}");
    put(&n, "/rr", "1").await;
    let (rev, _) = put(&n, "/r/x/y", "1").await;
    let evs = collect_until(&mut w, rev).await;
    assert!(
        evs.iter()
            .all(|e| e.kv.key == b"/r" || e.kv.key.starts_with(b"/r/"))
            && evs.iter().any(|e| e.kv.key == b"/r/x/y"),
        "{evs:?}"
    );
    interest.remove(b"/p/a", false);
    interest.remove(b"/r", true);
    put(&n, "/p/a", "3").await;
    put(&n, "/r/z", "1").await;
    quiet(&mut w).await;
}
