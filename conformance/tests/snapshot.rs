//! Backups in etcd's own snapshot format: `etcdctl snapshot save` against
//! janus, `etcdctl snapshot status` and `janus snapshot status` on the
//! file, `janus snapshot restore` into a new 3-member janus cluster, the
//! same file restored into a real etcd 3.4, and a real etcd's snapshot
//! restored into janus.

use std::path::Path;
use std::process::Command;

use etcd_client as etcd;
use janus_conformance::cluster::Cluster;
use janus_conformance::harness::{janus_binary, Janus};
use janus_conformance::reference::RealEtcd;
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

fn etcdctl(ep: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("etcdctl");
    if let Some(ep) = ep {
        cmd.arg(format!("--endpoints={ep}"));
    }
    let out = cmd
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn janus_snapshot(args: &[&str]) -> std::process::Output {
    Command::new(janus_binary())
        .arg("snapshot")
        .args(args)
        .output()
        .expect("run janus snapshot")
}

fn status_json(text: &str) -> (u64, i64, u64) {
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("status json");
    (
        v["hash"].as_u64().expect("hash"),
        v["revision"].as_i64().expect("revision"),
        v["totalKey"].as_u64().expect("totalKey"),
    )
}

/// Restores `file` into every member's data dir.
fn restore_into(file: &Path) -> impl Fn(&janus_conformance::cluster::Member, &str) + '_ {
    move |m, initial| {
        let out = janus_snapshot(&[
            "restore",
            &file.to_string_lossy(),
            "--name",
            &m.name,
            "--data-dir",
            &m.data_dir.to_string_lossy(),
            "--initial-cluster",
            initial,
            "--initial-advertise-peer-urls",
            &m.peer_url(),
        ]);
        assert!(
            out.status.success(),
            "janus snapshot restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn kv_at(c: &mut etcd::Client, key: &str, rev: i64) -> Option<(Vec<u8>, i64, i64, i64)> {
    let opts = (rev > 0).then(|| etcd::GetOptions::new().with_revision(rev));
    let r = c.get(key, opts).await.expect("get");
    r.kvs().first().map(|kv| {
        (
            kv.value().to_vec(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_snapshot_restores_into_janus_cluster_and_real_etcd() {
    let j = Janus::start();
    let ep = j.etcd_endpoint();
    let mut c = j.etcd_client().await;
    c.put("a", "1", None).await.expect("put");
    c.put("b", "2", None).await.expect("put");
    c.put("a", "3", None).await.expect("put");
    c.delete("b", None).await.expect("delete");
    let lease = c.lease_grant(600, None).await.expect("lease").id();
    c.put(
        "leased",
        "x",
        Some(etcd::PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("put");
    let z = j.zk_client().await;
    let mode = CreateMode::Persistent.with_acls(Acls::anyone_all());
    z.create("/app", b"config", &mode).await.expect("create");
    z.create("/app/node", b"", &mode).await.expect("create");
    let rev = c
        .get("a", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    let before_a = kv_at(&mut c, "a", 0).await;
    let before_leased = kv_at(&mut c, "leased", 0).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("janus.db");
    let file_s = file.to_string_lossy().into_owned();
    etcdctl(Some(&ep), &["snapshot", "save", &file_s]);

    // etcdctl and janus read the same numbers from the file.
    let theirs = status_json(&etcdctl(
        None,
        &["snapshot", "status", &file_s, "-w", "json"],
    ));
    let out = janus_snapshot(&["status", &file_s, "-w", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = status_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(ours, theirs);
    assert_eq!(ours.1, rev);

    // A file whose checksum does not match is refused.
    let mut bad = std::fs::read(&file).expect("read");
    bad[100] ^= 0xff;
    let bad_file = dir.path().join("bad.db");
    std::fs::write(&bad_file, &bad).expect("write");
    let out = janus_snapshot(&[
        "restore",
        &bad_file.to_string_lossy(),
        "--data-dir",
        &dir.path().join("never").to_string_lossy(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("never").exists());

    // A new 3-member janus cluster from the file.
    let cluster = Cluster::start_prepared(3, restore_into(&file));
    for m in &cluster.members {
        let mut c2 = etcd::Client::connect([m.etcd_endpoint()], None)
            .await
            .expect("connect");
        assert_eq!(kv_at(&mut c2, "a", 0).await, before_a, "{}", m.name);
        assert_eq!(kv_at(&mut c2, "leased", 0).await, before_leased);
        assert_eq!(
            kv_at(&mut c2, "a", 2).await.map(|k| k.0),
            Some(b"1".to_vec())
        );
        assert_eq!(kv_at(&mut c2, "b", 0).await, None);
        let leases = c2.leases().await.expect("leases");
        assert!(leases.leases().iter().any(|l| l.id() == lease));
    }
    let mut c2 = etcd::Client::connect(cluster.etcd_endpoints(), None)
        .await
        .expect("connect");
    let next = c2.put("new", "v", None).await.expect("put");
    assert_eq!(next.header().expect("h").revision(), rev + 1);
    let z2 = zk::Client::connector()
        .session_timeout(std::time::Duration::from_secs(10))
        .connect(&cluster.zk_connect_string())
        .await
        .expect("zk connect");
    let (data, _) = z2.get_data("/app").await.expect("getData");
    assert_eq!(data, b"config");
    let (acl, _) = z2.get_acl("/app").await.expect("getAcl");
    assert_eq!(acl.len(), 1, "{acl:?}");
    assert_eq!(
        z2.list_children("/app").await.expect("children"),
        vec!["node".to_string()]
    );

    // The same file restored by etcdctl into a real etcd 3.4.
    if RealEtcd::available() {
        let etcd = RealEtcd::start_from(Some(&file)).expect("etcd from a janus snapshot");
        let mut e = etcd::Client::connect([etcd.endpoint()], None)
            .await
            .expect("connect");
        assert_eq!(kv_at(&mut e, "a", 0).await, before_a);
        assert_eq!(kv_at(&mut e, "leased", 0).await, before_leased);
        assert_eq!(
            kv_at(&mut e, "a", 2).await.map(|k| k.0),
            Some(b"1".to_vec())
        );
        assert_eq!(kv_at(&mut e, "b", 0).await, None);
        let r = e
            .get("", Some(etcd::GetOptions::new().with_all_keys()))
            .await
            .expect("get");
        assert_eq!(r.header().expect("h").revision(), rev);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_etcd_snapshot_restores_into_janus() {
    if !RealEtcd::available() {
        eprintln!("etcd not installed: skipped");
        return;
    }
    let etcd = RealEtcd::start().expect("etcd");
    let mut e = etcd::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect");
    for i in 0..5 {
        e.put(format!("k{i}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    e.put("k0", "again", None).await.expect("put");
    e.delete("k4", None).await.expect("delete");
    let lease = e.lease_grant(900, None).await.expect("lease").id();
    e.put(
        "leased",
        "x",
        Some(etcd::PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("put");
    let rev = e
        .get("k0", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    e.compact(3, None).await.expect("compact");
    let mut before = Vec::new();
    for k in ["k0", "k1", "k3", "k4", "leased"] {
        before.push(kv_at(&mut e, k, 0).await);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd.db");
    etcdctl(
        Some(&etcd.endpoint()),
        &["snapshot", "save", &file.to_string_lossy()],
    );
    drop(etcd);

    let cluster = Cluster::start_prepared(1, restore_into(&file));
    let mut c = etcd::Client::connect(cluster.etcd_endpoints(), None)
        .await
        .expect("connect");
    let mut after = Vec::new();
    for k in ["k0", "k1", "k3", "k4", "leased"] {
        after.push(kv_at(&mut c, k, 0).await);
    }
    assert_eq!(after, before);
    // History after the compaction point is there, before it is not.
    assert_eq!(
        kv_at(&mut c, "k0", 4).await.map(|k| k.0),
        Some(b"v0".to_vec())
    );
    let old = c
        .get("k0", Some(etcd::GetOptions::new().with_revision(2)))
        .await;
    assert!(
        matches!(&old, Err(etcd::Error::GRpcStatus(s)) if s.message().contains("compacted")),
        "{old:?}"
    );
    let leases = c.leases().await.expect("leases");
    assert!(leases.leases().iter().any(|l| l.id() == lease));
    let next = c.put("new", "v", None).await.expect("put");
    assert_eq!(next.header().expect("h").revision(), rev + 1);
}

/// The auth store both directions carry: `root` (root role), `alice` with
/// the role `reader`, which may read the keys under `/app/` and nothing
/// else, and auth enabled.
async fn set_up_auth(c: &mut etcd::Client) {
    c.put("/app/a", "1", None).await.expect("put");
    c.put("/secret/x", "s", None).await.expect("put");
    c.user_add("root", "rootpw", None)
        .await
        .expect("user add root");
    c.user_grant_role("root", "root").await.expect("grant root");
    c.role_add("reader").await.expect("role add");
    c.role_grant_permission("reader", etcd::Permission::read("/app/").with_prefix())
        .await
        .expect("grant permission");
    c.user_add("alice", "alicepw", None)
        .await
        .expect("user add alice");
    c.user_grant_role("alice", "reader")
        .await
        .expect("grant reader");
    c.auth_enable().await.expect("auth enable");
}

async fn connect_as(ep: &str, user: Option<(&str, &str)>) -> Result<etcd::Client, etcd::Error> {
    let opts = user.map(|(u, p)| etcd::ConnectOptions::new().with_user(u, p));
    etcd::Client::connect([ep], opts).await
}

/// What [`set_up_auth`] left, checked on the server at `ep` (`what` names
/// it in failures): auth is on, alice authenticates with her password and
/// reads only what her role permits, root reads and writes everything.
async fn check_auth(ep: &str, what: &str) {
    let mut anon = connect_as(ep, None).await.expect("connect");
    let e = anon
        .get("/app/a", None)
        .await
        .err()
        .unwrap_or_else(|| panic!("{what}: auth is off"));
    assert!(e.to_string().contains("user name is empty"), "{what}: {e}");

    let e = connect_as(ep, Some(("alice", "wrong")))
        .await
        .err()
        .unwrap_or_else(|| panic!("{what}: a wrong password authenticated"));
    assert!(
        e.to_string().contains("authentication failed"),
        "{what}: {e}"
    );

    let mut alice = connect_as(ep, Some(("alice", "alicepw")))
        .await
        .unwrap_or_else(|e| panic!("{what}: alice cannot authenticate: {e}"));
    assert_eq!(
        kv_at(&mut alice, "/app/a", 0).await.map(|k| k.0),
        Some(b"1".to_vec()),
        "{what}"
    );
    let e = alice.get("/secret/x", None).await.expect_err("no read");
    assert!(e.to_string().contains("permission denied"), "{what}: {e}");
    let e = alice.put("/app/a", "2", None).await.expect_err("no write");
    assert!(e.to_string().contains("permission denied"), "{what}: {e}");

    let mut root = connect_as(ep, Some(("root", "rootpw")))
        .await
        .unwrap_or_else(|e| panic!("{what}: root cannot authenticate: {e}"));
    assert_eq!(
        kv_at(&mut root, "/secret/x", 0).await.map(|k| k.0),
        Some(b"s".to_vec()),
        "{what}"
    );
    root.put("/secret/y", "t", None)
        .await
        .unwrap_or_else(|e| panic!("{what}: root cannot write: {e}"));
    let users = root.user_list().await.expect("user list");
    for u in ["alice", "root"] {
        assert!(users.users().iter().any(|x| x == u), "{what}: {users:?}");
    }
}

/// `etcdctl snapshot save FILE` as root against `endpoint` (auth is on).
fn save_as_root(endpoint: &str, file: &std::path::Path) {
    etcdctl(
        Some(endpoint),
        &[
            "--user=root:rootpw",
            "snapshot",
            "save",
            &file.to_string_lossy(),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_auth_travels_to_real_etcd_and_janus_in_a_snapshot() {
    let j = Janus::start();
    let mut c = j.etcd_client().await;
    set_up_auth(&mut c).await;
    check_auth(&j.etcd_endpoint(), "janus").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("janus-auth.db");
    save_as_root(&j.etcd_endpoint(), &file);
    drop(j);

    let cluster = Cluster::start_prepared(1, restore_into(&file));
    check_auth(
        &cluster.members[0].etcd_endpoint(),
        "janus restored from janus",
    )
    .await;
    drop(cluster);

    if !RealEtcd::available() {
        eprintln!("etcd not installed: the etcd half is skipped");
        return;
    }
    let etcd = RealEtcd::start_from(Some(&file)).expect("etcd from a janus snapshot");
    check_auth(&etcd.endpoint(), "etcd restored from janus").await;
    // etcd keeps the file's `janus` bucket; what etcd changes after its
    // restore must still win when its own snapshot comes back to janus.
    let mut root = connect_as(&etcd.endpoint(), Some(("root", "rootpw")))
        .await
        .expect("root");
    root.user_add("bob", "bobpw", None).await.expect("user add");
    root.user_grant_role("bob", "reader").await.expect("grant");
    root.put("/app/b", "2", None).await.expect("put");
    let again = dir.path().join("etcd-after-janus.db");
    save_as_root(&etcd.endpoint(), &again);
    drop(etcd);
    let cluster = Cluster::start_prepared(1, restore_into(&again));
    let ep = cluster.members[0].etcd_endpoint();
    check_auth(&ep, "janus restored from etcd restored from janus").await;
    let mut bob = connect_as(&ep, Some(("bob", "bobpw")))
        .await
        .expect("bob authenticates");
    assert_eq!(
        kv_at(&mut bob, "/app/b", 0).await.map(|k| k.0),
        Some(b"2".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_etcd_auth_restores_into_janus() {
    if !RealEtcd::available() {
        eprintln!("etcd not installed: skipped");
        return;
    }
    let etcd = RealEtcd::start().expect("etcd");
    let mut e = etcd::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect");
    set_up_auth(&mut e).await;
    check_auth(&etcd.endpoint(), "etcd").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd-auth.db");
    save_as_root(&etcd.endpoint(), &file);
    drop(etcd);

    let cluster = Cluster::start_prepared(1, restore_into(&file));
    check_auth(
        &cluster.members[0].etcd_endpoint(),
        "janus restored from etcd",
    )
    .await;
}
