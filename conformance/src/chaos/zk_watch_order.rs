//! ZooKeeper's watch ordering guarantee, exercised: "a client will never
//! see a change for which it has set a watch until it first sees the watch
//! event". A watch-order client sets a data watch with getData, then reads
//! the same register with plain getData on the same session until a read
//! shows a newer version or the event arrives, and records which came
//! first ([`WatchOrder`]).
//!
//! The client library (zookeeper-client) handles the frames of a
//! connection in order on one task: a notification is handed to its
//! watcher before the reply that follows it completes its request. So when
//! a read returns, an event the server sent before that reply is already
//! waiting in the watcher, and polling the watcher then tells the order the
//! server sent them in. (An event sent after the reply may be polled as
//! delivered too: the check can only miss a violation that way, never
//! invent one.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zookeeper_client as zk;

use super::record::{reg_key, WatchOrder};
use super::workload::{zk_session, Shared, OP_TIMEOUT};

/// One watch-order client on its own session.
pub async fn watch_order_client(id: u64, cs: String, sh: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (0x0bde_0000 + id));
    let cl = zk_session(&cs, false).await;
    while !sh.stopped() {
        if cl.state() == zk::SessionState::Expired {
            sh.problem(format!(
                "watch-order client {id}: session expired at {:.3}s",
                sh.clock.secs()
            ));
            return;
        }
        let r = rng.gen_range(0..sh.registers);
        let key = reg_key(r);
        let Ok(Ok((_, stat, watcher))) =
            tokio::time::timeout(OP_TIMEOUT, cl.get_and_watch_data(&key)).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let version = stat.version as i64 + 1;
        let mut event = Box::pin(watcher.changed());
        let mut order = WatchOrder {
            client: id,
            register: r,
            version,
            read_version: None,
            event_before_read: false,
            read_after_event: None,
            at: sh.clock.now(),
        };
        // The event, once polled (a finished future is never polled again).
        let mut got: Option<zk::EventType> = None;
        let give_up = Instant::now() + Duration::from_secs(5);
        while Instant::now() < give_up && !sh.stopped() {
            if got.is_none() {
                got = (&mut event).now_or_never().map(|ev| ev.event_type);
            }
            let seen_event = got.is_some();
            let read = tokio::time::timeout(OP_TIMEOUT, cl.get_data(&key)).await;
            // No await between the read's completion and this poll.
            if got.is_none() {
                got = (&mut event).now_or_never().map(|ev| ev.event_type);
            }
            if got.is_some_and(|t| t != zk::EventType::NodeDataChanged) {
                // The session ended the watch (closed or expired).
                break;
            }
            let Ok(Ok((_, stat))) = read else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let read_version = stat.version as i64 + 1;
            if seen_event {
                order.event_before_read = true;
                order.read_after_event = Some(read_version);
                sh.rec.lock().unwrap().watch_orders.push(order);
                break;
            }
            if read_version > version {
                order.read_version = Some(read_version);
                order.event_before_read = got.is_some();
                sh.rec.lock().unwrap().watch_orders.push(order);
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..30))).await;
        }
    }
}
