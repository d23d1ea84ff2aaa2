//! janus driven by the real `etcdctl` 3.4 for what the differential run
//! cannot compare byte for byte (timing, member ids, file output): live
//! watch, lock, elect, endpoint status/health, member list, snapshot save,
//! lease keep-alive.

mod common;

use std::time::Duration;

use common::{etcdctl, etcdctl_for, etcdctl_ok};
use janus_conformance::harness::Janus;

#[test]
fn live_watch_sees_puts_and_deletes_made_meanwhile() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    let ep2 = ep.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        etcdctl_ok(&ep2, &["put", "w/a", "1"]);
        etcdctl_ok(&ep2, &["put", "other", "x"]);
        etcdctl_ok(&ep2, &["del", "w/a"]);
    });
    let out = etcdctl_for(
        &ep,
        &["watch", "--prefix", "w/", "--prev-kv"],
        Duration::from_millis(3000),
    );
    writer.join().expect("writer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text, "PUT\nw/a\n1\nDELETE\nw/a\n1\nw/a\n\n",
        "etcdctl watch printed {text:?}"
    );
}

#[test]
fn lock_is_exclusive_and_released() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    // Holder keeps the lock for 2 s (lock prints the lock key, then waits).
    let ep2 = ep.clone();
    let holder = std::thread::spawn(move || {
        etcdctl_for(&ep2, &["lock", "mylock"], Duration::from_millis(2500))
    });
    std::thread::sleep(Duration::from_millis(1000));
    // A second locker must not get it while held...
    let waiting = etcdctl_for(
        &ep,
        &["lock", "mylock", "echo", "got-it"],
        Duration::from_millis(800),
    );
    assert!(
        !String::from_utf8_lossy(&waiting.stdout).contains("got-it"),
        "lock was not exclusive"
    );
    let held = holder.join().expect("holder");
    assert!(
        String::from_utf8_lossy(&held.stdout).starts_with("mylock/"),
        "holder printed {:?}",
        held
    );
    // ...and gets it once the holder is gone (its session lease revoked).
    let out = etcdctl(&ep, &["lock", "mylock", "echo", "got-it"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("got-it"),
        "lock not released: {out:?}"
    );
}

#[test]
fn election_leader_is_observed() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    let ep2 = ep.clone();
    let campaign = std::thread::spawn(move || {
        etcdctl_for(
            &ep2,
            &["elect", "myelection", "alice"],
            Duration::from_millis(2500),
        )
    });
    std::thread::sleep(Duration::from_millis(1000));
    let observed = etcdctl_for(
        &ep,
        &["elect", "-l", "myelection"],
        Duration::from_millis(1000),
    );
    let c = campaign.join().expect("campaign");
    assert!(
        String::from_utf8_lossy(&c.stdout).starts_with("myelection/"),
        "campaign printed {c:?}"
    );
    assert!(
        String::from_utf8_lossy(&observed.stdout).contains("alice"),
        "observer printed {observed:?}"
    );
}

#[test]
fn endpoint_status_health_member_list() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    let health = etcdctl(&ep, &["endpoint", "health"], None);
    assert!(health.status.success(), "{health:?}");
    // etcdctl prints the health line to stderr in 3.4.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    assert!(all.contains("is healthy"), "{all}");

    etcdctl_ok(&ep, &["put", "a", "1"]);
    // The host:port form works too.
    let hostport = j.etcd_addr().to_string();
    let status: serde_json::Value = serde_json::from_str(&etcdctl_ok(
        &hostport,
        &["endpoint", "status", "-w", "json"],
    ))
    .expect("status json");
    let st = &status[0]["Status"];
    assert_eq!(st["version"], "3.4.31");
    assert_eq!(st["header"]["revision"], 2);
    assert_eq!(st["leader"], st["header"]["member_id"]);
    assert!(st["raftIndex"].as_u64().unwrap_or(0) >= 1);
    assert!(st["dbSize"].as_i64().unwrap_or(0) > 0);

    let members: serde_json::Value =
        serde_json::from_str(&etcdctl_ok(&ep, &["member", "list", "-w", "json"]))
            .expect("members json");
    let m = &members["members"][0];
    assert_eq!(m["clientURLs"][0], ep.as_str());
    assert_eq!(m["name"], "default");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));

    let out = etcdctl(&ep, &["move-leader", "1234"], None);
    assert!(!out.status.success());
}

#[test]
fn snapshot_save_writes_the_export_with_its_checksum() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    for i in 0..50 {
        etcdctl_ok(&ep, &["put", &format!("snap/{i}"), &"v".repeat(1000)]);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db");
    let path = file.to_string_lossy().into_owned();
    let out = etcdctl(&ep, &["snapshot", "save", &path], None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Snapshot saved at"),
        "{out:?}"
    );
    let data = std::fs::read(&file).expect("snapshot file");
    assert!(data.len() > 50_000);
    // The last 32 bytes are the sha256 of everything before them.
    use sha2::Digest;
    let (body, sum) = data.split_at(data.len() - 32);
    assert_eq!(sha2::Sha256::digest(body).as_slice(), sum);
}

#[test]
fn lease_keep_alive_renews_until_stopped() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    let grant = etcdctl_ok(&ep, &["lease", "grant", "3"]);
    let id = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    etcdctl_ok(&ep, &["put", "ka", "1", &format!("--lease={id}")]);
    let out = etcdctl_for(
        &ep,
        &["lease", "keep-alive", &id],
        Duration::from_millis(4500),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .filter(|l| l.contains("keepalived with TTL(3)"))
            .count()
            >= 2,
        "{text}"
    );
    assert_eq!(
        etcdctl_ok(&ep, &["get", "ka", "--print-value-only"]),
        "1\n",
        "key survived past its TTL"
    );
}

/// etcdctl's per-endpoint maintenance calls (endpoint status/hashkv,
/// defrag, snapshot, move-leader) dial `passthrough:///http://HOST:PORT`,
/// so the HTTP/2 `:authority` is `http://HOST:PORT`, which the `h2` crate
/// alone rejects; the listener's `:authority` shim makes every command work
/// with the `http://` endpoints the etcd docs use.
#[test]
fn every_maintenance_command_works_with_an_http_url_endpoint() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    assert!(ep.starts_with("http://"));
    etcdctl_ok(&ep, &["put", "a", "1"]);

    let status: serde_json::Value =
        serde_json::from_str(&etcdctl_ok(&ep, &["endpoint", "status", "-w", "json"]))
            .expect("status json");
    let st = &status[0]["Status"];
    assert_eq!(status[0]["Endpoint"], ep.as_str());
    assert_eq!(st["header"]["revision"], 2);
    assert_eq!(st["leader"], st["header"]["member_id"]);
    // The real on-disk size: an empty store is well under fjall's
    // preallocated journal.
    let db = st["dbSize"].as_i64().unwrap_or(0);
    assert!(db > 0 && db < 16 << 20, "dbSize {db}");

    let hash: serde_json::Value =
        serde_json::from_str(&etcdctl_ok(&ep, &["endpoint", "hashkv", "-w", "json"]))
            .expect("hashkv json");
    assert!(
        hash[0]["HashKV"]["hash"].as_u64().unwrap_or(0) > 0,
        "{hash}"
    );

    let health = etcdctl(&ep, &["endpoint", "health"], None);
    assert!(health.status.success(), "{health:?}");

    let defrag = etcdctl_ok(&ep, &["defrag"]);
    assert!(
        defrag.contains("Finished defragmenting etcd member"),
        "{defrag}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db");
    let saved = etcdctl_ok(&ep, &["snapshot", "save", &file.to_string_lossy()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");

    let members: serde_json::Value =
        serde_json::from_str(&etcdctl_ok(&ep, &["member", "list", "-w", "json"]))
            .expect("members json");
    let id = members["members"][0]["ID"].as_u64().expect("member id");
    // Moving leadership to itself is a no-op that succeeds.
    let moved = etcdctl_ok(&ep, &["move-leader", &format!("{id:x}")]);
    assert!(moved.contains("Leadership transferred"), "{moved}");
    // To a member that does not exist: etcd's error, not a transport reset.
    let out = etcdctl(&ep, &["move-leader", "1234"], None);
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("RST_STREAM"),
        "{out:?}"
    );

    assert_eq!(etcdctl_ok(&ep, &["alarm", "list"]), "");
}
