//! The watch behaviours Kubernetes relies on once it enables
//! RequestWatchProgress (etcd >= 3.4.31 / 3.5.13), run against real etcd
//! 3.4 and janus with the same steps, the transcripts compared:
//! progress notifications on a watch that gets no events, one
//! RequestProgress answer per stream (watch id -1) on a stream of several
//! watchers, and a watch from a compacted revision answered with the
//! compact revision and canceled. (A watcher that falls behind a
//! compaction loses no event: `core/tests/watch.rs`.) Where Debian's etcd 3.4.23 predates a fix
//! (RequestProgress on a stream with no synced watcher, 3.4.31's
//! `progressIfSync`), janus follows the later etcd and the step is checked
//! on janus only.

use std::time::Duration;

use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};
use janus_conformance::harness::Janus;
use janus_conformance::reference::RealEtcd;

/// How often watchers with progress_notify hear from an idle server.
const INTERVAL_MS: u64 = 500;

async fn next(s: &mut WatchStream, within: Duration) -> Option<WatchResponse> {
    match tokio::time::timeout(within, s.message()).await {
        Ok(Ok(Some(r))) => Some(r),
        Ok(other) => panic!("watch stream ended: {other:?}"),
        Err(_) => None,
    }
}

/// A response as the transcript shows it: revisions relative to `base`.
fn show(r: &WatchResponse, base: i64) -> String {
    let rev = r.header().map_or(-1, |h| h.revision());
    let mut s = format!("id={} rev=+{}", r.watch_id(), rev - base);
    if r.created() {
        s.push_str(" created");
    }
    if r.canceled() {
        s.push_str(" canceled");
    }
    if r.compact_revision() != 0 {
        s.push_str(&format!(" compact=+{}", r.compact_revision() - base));
    }
    if !r.cancel_reason().is_empty() {
        s.push_str(&format!(" reason={:?}", r.cancel_reason()));
    }
    for e in r.events() {
        let kv = e.kv().expect("kv");
        s.push_str(&format!(
            " {:?}:{}@+{}",
            e.event_type(),
            String::from_utf8_lossy(kv.key()),
            kv.mod_revision() - base
        ));
    }
    s
}

/// The steps, against the server at `ep`; returns the transcript.
async fn scenario(ep: &str) -> Vec<String> {
    let mut t = Vec::new();
    let mut c = Client::connect([ep], None).await.expect("connect");
    let base = c
        .put("/base", "0", None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision();

    // A watch that gets no events still hears the revision, every interval.
    let (_w, mut s) = c
        .watch("/none", Some(WatchOptions::new().with_progress_notify()))
        .await
        .expect("watch");
    // (etcd-client reads the created response of a stream's first watch.)
    c.put("/other", "1", None).await.expect("put");
    let wait = Duration::from_millis(INTERVAL_MS * 4);
    for i in 0..2 {
        let r = next(&mut s, wait).await.expect("progress notification");
        t.push(format!("notify {i}: {}", show(&r, base)));
    }
    drop(s);

    // Several watchers on one stream: one progress answer for the stream.
    let (mut w, mut s) = c.watch("/x", None).await.expect("watch");
    w.watch("/y", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    w.watch("/z", Some(WatchOptions::new().with_prev_key()))
        .await
        .expect("watch");
    for _ in 0..2 {
        let r = next(&mut s, Duration::from_secs(5)).await.expect("created");
        t.push(format!("stream created: {}", show(&r, base)));
    }
    c.put("/y/1", "v", None).await.expect("put");
    let r = next(&mut s, Duration::from_secs(5)).await.expect("event");
    t.push(format!("stream event: {}", show(&r, base)));
    w.request_progress().await.expect("progress");
    let r = next(&mut s, Duration::from_secs(5))
        .await
        .expect("progress answer");
    t.push(format!("stream progress: {}", show(&r, base)));
    let extra = next(&mut s, Duration::from_millis(500)).await;
    t.push(format!(
        "stream after progress: {}",
        extra.map_or("nothing".into(), |r| show(&r, base))
    ));
    drop(s);

    // A watch from a compacted revision: created, then canceled with the
    // compact revision.
    for i in 0..3 {
        c.put("/c", format!("{i}"), None).await.expect("put");
    }
    let now = c
        .get("/c", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    c.compact(now, None).await.expect("compact");
    let (_w, mut s) = c
        .watch(
            "/c",
            Some(WatchOptions::new().with_start_revision(base + 1)),
        )
        .await
        .expect("watch");
    while let Some(r) = next(&mut s, Duration::from_secs(2)).await {
        t.push(format!("compacted watch: {}", show(&r, base)));
        if r.canceled() {
            break;
        }
    }
    // A watch at the compact revision itself still sees its event.
    let (_w, mut s) = c
        .watch("/c", Some(WatchOptions::new().with_start_revision(now)))
        .await
        .expect("watch");
    let r = next(&mut s, Duration::from_secs(5)).await.expect("event");
    t.push(format!("watch at compact revision: {}", show(&r, base)));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_compaction_match_etcd() {
    let interval = format!("{INTERVAL_MS}ms");
    let etcd = match RealEtcd::start_with(
        None,
        &["--experimental-watch-progress-notify-interval", &interval],
    ) {
        Ok(e) => e,
        Err(e) => panic!("reference etcd: {e}"),
    };
    // etcd's flag name and duration syntax.
    let j = Janus::start_with(&["--experimental-watch-progress-notify-interval", &interval]);
    let want = scenario(&etcd.endpoint()).await;
    let got = scenario(&j.etcd_endpoint()).await;
    assert_eq!(got, want, "janus (left) vs etcd 3.4 (right)");
}

/// etcd 3.4.31's `progressIfSync`: no answer on a stream without a
/// watcher (3.4.23 answered), and the answer's revision never ahead of the
/// events the stream sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_requests_follow_etcd_3_4_31() {
    let j = Janus::start();
    let mut c = j.etcd_client().await;
    let base = c
        .put("/q", "0", None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision();
    let (mut w, mut s) = c.watch("/p", None).await.expect("watch");
    w.cancel().await.expect("cancel");
    let canceled = next(&mut s, Duration::from_secs(5))
        .await
        .expect("canceled");
    assert!(canceled.canceled(), "{canceled:?}");
    w.request_progress().await.expect("progress");
    let none = next(&mut s, Duration::from_secs(1)).await;
    assert!(none.is_none(), "answered with no watcher: {none:?}");

    // Under writes, every answer's revision covers only delivered events.
    w.watch("/p", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let r = next(&mut s, Duration::from_secs(5)).await.expect("created");
    assert!(r.created());
    let writer = {
        let mut c = j.etcd_client().await;
        tokio::spawn(async move {
            for i in 0..200 {
                c.put(format!("/p/{}", i % 7), "v", None)
                    .await
                    .expect("put");
            }
        })
    };
    let mut seen = base;
    let mut answers = 0;
    let mut asked = 0;
    while !writer.is_finished() || asked == 0 {
        w.request_progress().await.expect("progress");
        asked += 1;
        while let Some(r) = next(&mut s, Duration::from_millis(20)).await {
            if r.watch_id() == -1 {
                let rev = r.header().expect("header").revision();
                assert!(rev >= seen, "progress at {rev} behind an event at {seen}");
                seen = rev;
                answers += 1;
            } else {
                for e in r.events() {
                    let rev = e.kv().expect("kv").mod_revision();
                    assert!(rev > seen, "event at {rev} after progress at {seen}");
                    seen = rev;
                }
            }
        }
    }
    writer.await.expect("writer");
    // Once quiet, an answer comes, at the current revision.
    let now = c
        .get("/p", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    let mut last = None;
    for _ in 0..20 {
        w.request_progress().await.expect("progress");
        while let Some(r) = next(&mut s, Duration::from_millis(100)).await {
            if r.watch_id() == -1 {
                last = Some(r.header().expect("header").revision());
            }
        }
        if last == Some(now) {
            break;
        }
    }
    assert_eq!(last, Some(now), "{answers} answers to {asked} requests");
}
