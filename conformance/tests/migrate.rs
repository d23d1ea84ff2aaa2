//! `janus migrate` against real sources: a ZooKeeper 3.8 tree of more than
//! 10,000 znodes (world, digest and ip ACLs, sequentials, a container,
//! binary data up to 1 MB, depth 10) written to while `--follow` runs, and
//! an etcd 3.4 keyspace with history and leases; afterwards janus shows
//! every node's data, ACL and stat as the source does, and clients carry on
//! against janus with what they knew. Bad input: an unreachable source, a
//! non-empty target, a node over janus's size limit, an ACL janus cannot
//! represent, damaged source files, the source lost mid-copy.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use janus_conformance::harness::{janus_binary, Janus};
use janus_conformance::reference::{four_letter, RealEtcd, RealZk};
use sha1::{Digest, Sha1};
use zookeeper_client as zk;

fn digest_id(user: &str, pass: &str) -> String {
    let h = Sha1::digest(format!("{user}:{pass}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(h)
    )
}

fn migrate(args: &[&str]) -> Output {
    Command::new(janus_binary())
        .arg("migrate")
        .args(args)
        .output()
        .expect("run janus migrate")
}

/// `janus migrate zookeeper` from `from` into janus (`to` etcd URL, `to_zk`
/// ZooKeeper address), quiet, with `extra` flags.
fn copy_zk(from: &str, to: &str, to_zk: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "zookeeper",
        "--from",
        from,
        "--to",
        to,
        "--to-zk",
        to_zk,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    migrate(&args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn zk_connect(addr: &str) -> zk::Client {
    zk::Client::connector()
        .session_timeout(Duration::from_secs(20))
        .auth("digest".into(), b"super:secret".to_vec())
        .connect(addr)
        .await
        .expect("zk connect")
}

fn acls_for(i: usize) -> Vec<zk::Acl> {
    match i % 3 {
        0 => vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())],
        1 => vec![
            zk::Acl::new(
                zk::Permission::ALL,
                zk::AuthId::new("digest", &digest_id("alice", "pw")),
            ),
            zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        ],
        _ => vec![zk::Acl::new(
            zk::Permission::READ | zk::Permission::WRITE | zk::Permission::ADMIN,
            zk::AuthId::new("ip", "127.0.0.1"),
        )],
    }
}

const GROUPS: usize = 100;
const PER_GROUP: usize = 100;

/// The source tree, built with multis.
async fn build_tree(c: &zk::Client) {
    let open = zk::Acls::anyone_all();
    let persistent = zk::CreateMode::Persistent.with_acls(open);
    for p in ["/m", "/m/bulk", "/m/bin", "/m/seq"] {
        c.create(p, b"", &persistent).await.expect(p);
    }
    let mut deep = String::from("/m");
    for d in 1..=10 {
        deep.push_str(&format!("/d{d}"));
        c.create(&deep, deep.as_bytes(), &persistent)
            .await
            .expect("deep");
    }
    let groups: Vec<_> = (0..GROUPS)
        .map(|g| async move {
            let open = zk::Acls::anyone_all();
            let persistent = zk::CreateMode::Persistent.with_acls(open);
            let gp = format!("/m/bulk/g{g:02}");
            c.create(&gp, b"group", &persistent).await.expect("group");
            let acls: Vec<Vec<zk::Acl>> = (0..PER_GROUP).map(acls_for).collect();
            let opts: Vec<zk::CreateOptions> = acls
                .iter()
                .map(|a| zk::CreateMode::Persistent.with_acls(zk::Acls::new(a)))
                .collect();
            let mut w = c.new_multi_writer();
            for (i, o) in opts.iter().enumerate() {
                let data = format!("value {g} {i}");
                w.add_create(&format!("{gp}/n{i:03}"), data.as_bytes(), o)
                    .expect("add_create");
            }
            w.commit().await.expect("multi");
        })
        .collect();
    futures::future::join_all(groups).await;
    for (i, size) in [1_000_000usize, 300_000, 0].iter().enumerate() {
        let data: Vec<u8> = (0..*size).map(|j| (j * 31 + i) as u8).collect();
        c.create(&format!("/m/bin/b{i}"), &data, &persistent)
            .await
            .expect("bin");
    }
    let seq = zk::CreateMode::PersistentSequential.with_acls(open);
    for _ in 0..30 {
        c.create("/m/seq/s-", b"", &seq).await.expect("seq");
    }
    for i in 0..5 {
        c.delete(&format!("/m/seq/s-{i:010}"), None)
            .await
            .expect("seq delete");
    }
    let container = zk::CreateMode::Container.with_acls(open);
    c.create("/m/cont", b"", &container)
        .await
        .expect("container");
    c.create("/m/cont/x", b"x", &persistent)
        .await
        .expect("child");
    let eph = zk::CreateMode::Ephemeral.with_acls(open);
    c.create("/m/eph", b"mine", &eph).await.expect("ephemeral");
    for v in 0..3 {
        c.set_data("/m/d1", format!("v{v}").as_bytes(), None)
            .await
            .expect("set");
    }
    c.set_acl("/m/bulk/g00/n000", &acls_for(0), None)
        .await
        .expect("setACL");
}

/// Changes made while `--follow` runs.
async fn write_during_follow(c: &zk::Client) {
    let open = zk::Acls::anyone_all();
    let persistent = zk::CreateMode::Persistent.with_acls(open);
    let seq = zk::CreateMode::PersistentSequential.with_acls(open);
    c.create("/m/live", b"", &persistent).await.expect("live");
    for i in 0..40 {
        c.create(
            &format!("/m/live/k{i}"),
            format!("{i}").as_bytes(),
            &persistent,
        )
        .await
        .expect("live create");
        c.set_data(&format!("/m/bulk/g01/n{i:03}"), b"changed", None)
            .await
            .expect("live set");
        c.delete(&format!("/m/bulk/g02/n{i:03}"), None)
            .await
            .expect("live delete");
        c.create("/m/seq/s-", b"", &seq).await.expect("live seq");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Tree = BTreeMap<String, (Vec<u8>, Vec<String>, [i64; 9])>;

/// Every node under `/m` with data, ACL and stat.
async fn read_tree(c: &zk::Client) -> Tree {
    let mut out = Tree::new();
    let mut todo = vec!["/m".to_string()];
    while let Some(p) = todo.pop() {
        let (data, s) = c.get_data(&p).await.expect("get_data");
        let (acl, _) = c.get_acl(&p).await.expect("get_acl");
        let acl = acl
            .iter()
            .map(|a| format!("{}:{}:{}", a.permission(), a.scheme(), a.id()))
            .collect();
        if s.ephemeral_owner != 0 {
            continue;
        }
        for ch in c.list_children(&p).await.expect("children") {
            todo.push(format!("{p}/{ch}"));
        }
        let stat = [
            s.czxid,
            s.mzxid,
            s.pzxid,
            s.ctime,
            s.mtime,
            s.version as i64,
            s.cversion as i64,
            s.aversion as i64,
            s.num_children as i64,
        ];
        out.insert(p, (data, acl, stat));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zookeeper_tree_copied_and_followed_with_every_stat() {
    if !RealZk::available() {
        panic!("ZooKeeper 3.8 not installed (apt-get install zookeeper)");
    }
    let super_digest = digest_id("super", "secret");
    let jvm = format!("-Dzookeeper.DigestAuthenticationProvider.superDigest={super_digest}");
    let real = RealZk::start_with_jvm(&[], &[&jvm]).expect("start zookeeper");
    let janus = Janus::start_with(&["--zk-super-digest", &super_digest]);
    let src = zk_connect(&real.connect_string()).await;
    build_tree(&src).await;
    // Null data (zkCli's create without data); the Rust client cannot send it.
    let cli = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args(["-server", &real.connect_string(), "create", "/m/nulldata"])
        .output()
        .expect("zkCli.sh");
    assert!(cli.status.success(), "zkCli: {}", text(&cli));

    let from = real.connect_string();
    let to = janus.etcd_endpoint();
    let to_zk = janus.zk_addr().to_string();
    let run = {
        let (from, to, to_zk) = (from.clone(), to.clone(), to_zk.clone());
        tokio::task::spawn_blocking(move || {
            migrate(&[
                "zookeeper",
                "--from",
                &from,
                "--to",
                &to,
                "--to-zk",
                &to_zk,
                "--digest",
                "super:secret",
                "--follow",
                "--until-idle",
                "4",
                "--quiet",
            ])
        })
    };
    // Let the copy start, then write while it follows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    write_during_follow(&src).await;
    let out = run.await.expect("migrate task");
    let log = text(&out);
    eprintln!("{log}");
    assert!(out.status.success(), "migrate failed:\n{log}");
    assert!(log.contains("verified: equal"), "{log}");
    assert!(log.contains("skipped 1 ephemeral"), "{log}");

    let dst = zk_connect(&to_zk).await;
    let (a, b) = (read_tree(&src).await, read_tree(&dst).await);
    assert!(a.len() > 10_000, "source has {} nodes", a.len());
    assert_eq!(a.len(), b.len());
    for (path, (data, acl, stat)) in &a {
        let (d2, acl2, stat2) = b.get(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(data, d2, "{path} data");
        assert_eq!(acl, acl2, "{path} acl");
        if path == "/m" {
            // Parent of the skipped ephemeral: numChildren and cversion
            // count it on the source only.
            assert_eq!(stat[..6], stat2[..6], "{path} stat");
            continue;
        }
        assert_eq!(
            stat, stat2,
            "{path} stat (czxid mzxid pzxid ctime mtime version cversion aversion numChildren)"
        );
    }

    // Null stays null, empty stays empty (janus's own getData reply).
    let null_on = |addr: String| {
        let out = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
            .args(["-server", &addr, "get", "/m/nulldata"])
            .output()
            .expect("zkCli.sh");
        text(&out)
    };
    let (on_src, on_janus) = (null_on(from.clone()), null_on(to_zk.clone()));
    assert!(on_src.contains("\nnull\n"), "{on_src}");
    assert!(on_janus.contains("\nnull\n"), "{on_janus}");
    // A client reconnecting to janus does conditional sets with the
    // versions it knew from the source, and sequential names continue.
    let (_, st) = src.get_data("/m/bulk/g01/n005").await.expect("get");
    let client = zk_connect(&to_zk).await;
    client
        .set_data("/m/bulk/g01/n005", b"after", Some(st.version))
        .await
        .expect("conditional set with the source's version");
    assert_eq!(
        client
            .set_data("/m/bulk/g01/n005", b"stale", Some(st.version))
            .await
            .err(),
        Some(zk::Error::BadVersion)
    );
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let (_, n) = client.create("/m/seq/s-", b"", &seq).await.expect("seq");
    // 30 + 40 sequential creates on the source: the next is number 70.
    assert_eq!(n.into_i64(), 70);

    // kazoo, as an application moved off the source: it read a version on
    // the old ensemble, reconnects to janus and sets with that version.
    let script = r#"
import sys
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError
src, dst, path = sys.argv[1:4]
a = KazooClient(hosts=src); a.start(timeout=15)
_, st = a.get(path); a.stop()
b = KazooClient(hosts=dst); b.start(timeout=15)
b.set(path, b"kazoo", version=st.version)
try:
    b.set(path, b"stale", version=st.version)
    print("stale version accepted")
except BadVersionError:
    print("kazoo ok")
b.stop()
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &from, &to_zk, "/m/bulk/g03/n005"])
        .output()
        .expect("python3 with kazoo (apt-get install python3-kazoo)");
    assert!(text(&out).contains("kazoo ok"), "kazoo: {}", text(&out));
    drop(src);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_history_and_leases_copied_and_watch_resumes() {
    if !RealEtcd::available() {
        panic!("etcd 3.4 not installed");
    }
    let real = RealEtcd::start().expect("start etcd");
    let janus = Janus::start();
    let mut src = etcd_client::Client::connect([real.endpoint()], None)
        .await
        .expect("etcd connect");
    for i in 0..200 {
        src.put(format!("/e/k{i:03}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    for i in 0..50 {
        src.put(format!("/e/k{i:03}"), "again", None)
            .await
            .expect("overwrite");
    }
    for i in 50..60 {
        src.delete(format!("/e/k{i:03}"), None)
            .await
            .expect("delete");
    }
    let lease = src.lease_grant(600, None).await.expect("lease").id();
    src.put(
        "/e/leased",
        "x",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("leased put");
    let mut txn_ops = Vec::new();
    for i in 0..3 {
        txn_ops.push(etcd_client::TxnOp::put(format!("/e/txn{i}"), "t", None));
    }
    src.txn(etcd_client::Txn::new().and_then(txn_ops))
        .await
        .expect("txn");

    let (from, to) = (real.endpoint(), janus.etcd_endpoint());
    let run = {
        let (from, to) = (from.clone(), to.clone());
        tokio::task::spawn_blocking(move || {
            migrate(&[
                "etcd",
                "--from",
                &from,
                "--to",
                &to,
                "--prefix",
                "/e/",
                "--follow",
                "--until-idle",
                "3",
                "--quiet",
            ])
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = src
        .get("/e/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("get")
        .header()
        .map_or(0, |h| h.revision());
    for i in 0..20 {
        src.put(format!("/e/k{i:03}"), "followed", None)
            .await
            .expect("follow put");
        src.delete(format!("/e/k{:03}", 100 + i), None)
            .await
            .expect("follow delete");
    }
    let out = run.await.expect("migrate task");
    let log = text(&out);
    assert!(out.status.success(), "migrate failed:\n{log}");

    let get = |ep: &str| {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", ep, "get", "--prefix", "/e/", "-w", "json"])
            .output()
            .expect("etcdctl");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("etcdctl json");
        (v["kvs"].clone(), v["header"]["revision"].clone())
    };
    let (a, ra) = get(&from);
    let (b, rb) = get(&to);
    assert_eq!(a, b, "etcdctl get --prefix -w json kvs");
    assert_eq!(ra, rb, "header revision");

    // A watch resumed on janus from the source's revision sees the changes
    // made during --follow.
    let mut dst = etcd_client::Client::connect([to.clone()], None)
        .await
        .expect("janus connect");
    let (_w, mut stream) = dst
        .watch(
            "/e/",
            Some(
                etcd_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(before + 1),
            ),
        )
        .await
        .expect("watch");
    let mut seen = 0;
    while seen < 40 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("watch events in time")
            .expect("watch")
            .expect("watch open");
        seen += r.events().len();
    }
    assert_eq!(seen, 40);
    // The lease came along, with its key.
    let ttl = dst
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("ttl");
    assert!(ttl.ttl() > 500, "ttl {}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"/e/leased".to_vec()]);
    // After the migration janus takes writes again, above the source's revision.
    let put = dst.put("/e/new", "n", None).await.expect("put after");
    assert_eq!(
        put.header().map_or(0, |h| h.revision()),
        rb.as_i64().unwrap_or(0) + 1
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_problem() {
    let janus = Janus::start_with(&["--max-request-bytes", "100000"]);
    let to = janus.etcd_endpoint();
    let to_zk = janus.zk_addr().to_string();
    // Unreachable source.
    let closed = format!("127.0.0.1:{}", janus_conformance::harness::free_port());
    let o = migrate(&["zookeeper", "--from", &closed, "--to", &to, "--quiet"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot reach source ZooKeeper"),
        "{}",
        text(&o)
    );
    let o = migrate(&[
        "etcd",
        "--from",
        &format!("http://{closed}"),
        "--to",
        &to,
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot reach source etcd"),
        "{}",
        text(&o)
    );

    // A node over janus's size limit: named, nothing imported.
    let sasl =
        "-Dzookeeper.authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider";
    // A provider shipped in zookeeper.jar that janus does not have (the
    // `key` scheme of ZooKeeper's sample KeyAuthenticationProvider).
    let key =
        "-Dzookeeper.authProvider.2=org.apache.zookeeper.server.auth.KeyAuthenticationProvider";
    let real = RealZk::start_with_jvm(&[], &[sasl, key]).expect("zookeeper");
    let c = zk_connect(&real.connect_string()).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    c.create("/small", b"s", &open).await.expect("small");
    c.create("/big", &vec![7u8; 200_000], &open)
        .await
        .expect("big");
    let o = copy_zk(&real.connect_string(), &to, &to_zk, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/big: 200004 bytes"), "{}", text(&o));
    let j = zk_connect(&to_zk).await;
    assert!(
        j.check_stat("/small").await.expect("stat").is_none(),
        "half imported"
    );

    // An ACL janus cannot represent (scheme `key`): named, nothing imported.
    c.delete("/big", None).await.expect("delete big");
    let acl = [
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("key", "sesame")),
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
    ];
    c.create(
        "/keyed",
        b"",
        &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl)),
    )
    .await
    .expect("key-scheme node on the source");
    let o = copy_zk(&real.connect_string(), &to, &to_zk, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("/keyed: ACL key:sesame,world:anyone cannot be represented"),
        "{}",
        text(&o)
    );
    assert!(
        j.check_stat("/small").await.expect("stat").is_none(),
        "half imported"
    );
    c.delete("/keyed", None).await.expect("delete keyed");

    // A sasl ACL (the source has the SASL provider) is copied as it is.
    let acl = [
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("sasl", "bob")),
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
    ];
    c.create(
        "/sasl",
        b"",
        &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl)),
    )
    .await
    .expect("sasl node");
    let o = copy_zk(&real.connect_string(), &to, &to_zk, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (copied, _) = j.get_acl("/sasl").await.expect("sasl acl on janus");
    assert_eq!(copied, acl.to_vec(), "sasl ACL copied");

    // A non-empty target is refused without --force (janus now holds the
    // copy and a node of its own, written above the source's zxids).
    j.create("/mine", b"", &open)
        .await
        .expect("create on janus");
    let o = copy_zk(&real.connect_string(), &to, &to_zk, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not empty ("), "{}", text(&o));
    let o = copy_zk(&real.connect_string(), &to, &to_zk, &["--force"]);
    // With --force, janus's own revision is above this source's zxids (a
    // standalone ZooKeeper counts from 1): refused before anything changed.
    assert!(!o.status.success());
    assert!(text(&o).contains("janus cannot go back"), "{}", text(&o));
    assert!(j.check_stat("/mine").await.expect("stat").is_some());
}

/// The source dies while `--follow` runs: the tool exits non-zero naming
/// the source, the migration lock is released (janus takes client writes
/// again), and what was copied before is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_lost_mid_follow_fails_cleanly_and_releases_the_lock() {
    let mut real = RealZk::start().expect("zookeeper");
    let janus = Janus::start();
    let src = zk_connect(&real.connect_string()).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    src.create("/kept", b"before", &open).await.expect("create");
    let (from, to, to_zk) = (
        real.connect_string(),
        janus.etcd_endpoint(),
        janus.zk_addr().to_string(),
    );
    let run = tokio::task::spawn_blocking(move || {
        migrate(&[
            "zookeeper",
            "--from",
            &from,
            "--to",
            &to,
            "--to-zk",
            &to_zk,
            "--follow",
            "--until-idle",
            "60",
            "--quiet",
        ])
    });
    // Wait for the copy, then take the source away.
    let j = zk_connect(&janus.zk_addr().to_string()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while j.check_stat("/kept").await.ok().flatten().is_none() {
        assert!(std::time::Instant::now() < deadline, "copy did not happen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(src);
    real.kill();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("migrate did not give up on a dead source")
        .expect("migrate task");
    assert!(!out.status.success(), "exited 0 with the source gone");
    let log = text(&out);
    assert!(
        log.to_lowercase().contains("source"),
        "the error does not name the source: {log}"
    );
    let (data, _) = j.get_data("/kept").await.expect("copied node kept");
    assert_eq!(data, b"before");
    // The lock is gone: a client write is taken.
    j.create("/after", b"", &open).await.unwrap_or_else(|e| {
        panic!("janus still refuses writes after a failed migration: {e:?}\n{log}")
    });
}

/// Waits up to `secs` for `path` to be gone on `c`.
async fn gone_within(c: &zk::Client, path: &str, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if c.check_stat(path).await.expect("stat").is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A copy of the source's dataDir (`version-2/` only) in a new temp dir.
fn copy_data_dir(real: &RealZk) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    let v2 = to.path().join("version-2");
    std::fs::create_dir_all(&v2).expect("mkdir");
    for e in std::fs::read_dir(real.data_dir().join("version-2")).expect("version-2") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), v2.join(e.file_name())).expect("copy");
    }
    to
}

/// The newest `<prefix>.<hex zxid>` file of a `version-2` folder.
fn newest(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("version-2"))
        .expect("version-2")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let hex = name.strip_prefix(prefix)?.strip_prefix('.')?;
            Some((u64::from_str_radix(hex, 16).ok()?, e.path()))
        })
        .max()
        .unwrap_or_else(|| panic!("no {prefix}.* file"))
        .1
}

/// Containers and TTL nodes keep their kind when the source's dataDir is
/// named (`--source-data-dir`): made before the copy (in the snapshot and
/// the log) and during `--follow` (the log's new tail), they behave on
/// janus as ZooKeeper's: a container whose last child goes is reaped, a
/// TTL node expires, a container that never had a child stays. `verify`
/// compares kinds. A damaged snapshot or log is refused naming the file,
/// with nothing imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zookeeper_container_and_ttl_kinds_carried_from_the_source_files() {
    // A snapshot every few transactions (kinds come from a snapshot and the
    // logs after it); the source's own reaper waits 10 minutes, so the
    // source keeps what janus then reaps.
    let real = RealZk::start_with_jvm(
        &[],
        &[
            "-Dzookeeper.snapCount=10",
            "-Dznode.container.checkIntervalMs=600000",
        ],
    )
    .expect("zookeeper");
    let janus = Janus::start_with(&["--zk-reap-interval-ms", "200"]);
    let (from, to, to_zk) = (
        real.connect_string(),
        janus.etcd_endpoint(),
        janus.zk_addr().to_string(),
    );
    let src = zk_connect(&from).await;
    let open = zk::Acls::anyone_all();
    let persistent = zk::CreateMode::Persistent.with_acls(open);
    let container = zk::CreateMode::Container.with_acls(open);
    let ttl = |ms| {
        zk::CreateMode::Persistent
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_millis(ms))
    };
    src.create("/k", b"", &persistent).await.expect("/k");
    src.create("/k/cont", b"c", &container)
        .await
        .expect("container");
    src.create("/k/cont/x", b"", &persistent)
        .await
        .expect("child");
    src.create("/k/never", b"", &container)
        .await
        .expect("container without children");
    src.create("/k/ttl", b"t", &ttl(3000)).await.expect("ttl");
    src.create("/k/ttllong", b"", &ttl(3_600_000))
        .await
        .expect("long ttl");
    // Enough transactions after them for a snapshot that holds them.
    for i in 0..25 {
        src.create(&format!("/k/f{i}"), b"", &persistent)
            .await
            .expect("filler");
    }
    let data = real.data_dir();
    let snap = newest(&data, "snapshot");
    assert!(
        !snap.ends_with("snapshot.0"),
        "no snapshot after the special nodes: {}",
        snap.display()
    );

    // Damaged files: named, nothing imported (janus stays empty).
    let j = zk_connect(&to_zk).await;
    let truncated = copy_data_dir(&real);
    let s = newest(truncated.path(), "snapshot");
    let len = std::fs::metadata(&s).expect("snapshot").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&s)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let dir = truncated.path().display().to_string();
    let o = copy_zk(&from, &to, &to_zk, &["--source-data-dir", &dir]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}: malformed snapshot", s.display())),
        "{}",
        text(&o)
    );
    assert!(j.check_stat("/k").await.expect("stat").is_none());
    let garbage = copy_data_dir(&real);
    let l = newest(garbage.path(), "log");
    let mut bytes = std::fs::read(&l).expect("log");
    // Inside the first record's transaction (16-byte file header, then an
    // 8-byte checksum and a 4-byte length).
    bytes[16 + 12 + 2] ^= 0x5a;
    std::fs::write(&l, &bytes).expect("write log");
    let dir = garbage.path().display().to_string();
    let o = copy_zk(&from, &to, &to_zk, &["--source-data-dir", &dir]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}: malformed log", l.display())),
        "{}",
        text(&o)
    );
    assert!(j.check_stat("/k").await.expect("stat").is_none());

    // The copy, following while more special nodes are made.
    let run = {
        let (from, to, to_zk) = (from.clone(), to.clone(), to_zk.clone());
        let dir = data.display().to_string();
        tokio::task::spawn_blocking(move || {
            copy_zk(
                &from,
                &to,
                &to_zk,
                &["--source-data-dir", &dir, "--follow", "--until-idle", "3"],
            )
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    src.create("/k/cont2", b"", &container)
        .await
        .expect("container during follow");
    src.create("/k/cont2/y", b"", &persistent)
        .await
        .expect("child during follow");
    src.create("/k/ttl2", b"", &ttl(3000))
        .await
        .expect("ttl during follow");
    let out = run.await.expect("migrate task");
    let log = text(&out);
    eprintln!("{log}");
    assert!(out.status.success(), "migrate failed:\n{log}");
    assert!(log.contains("verified: equal"), "{log}");
    assert!(log.contains("kinds: 2 containers, 2 TTL nodes"), "{log}");

    // On janus (the lock released): TTL nodes expire, containers go with
    // their last child, the rest stays.
    assert!(gone_within(&j, "/k/ttl", 15).await, "TTL node not expired");
    assert!(
        gone_within(&j, "/k/ttl2", 15).await,
        "TTL node made during --follow not expired"
    );
    j.delete("/k/cont/x", None).await.expect("delete child");
    j.delete("/k/cont2/y", None).await.expect("delete child");
    assert!(gone_within(&j, "/k/cont", 10).await, "container not reaped");
    assert!(
        gone_within(&j, "/k/cont2", 10).await,
        "container made during --follow not reaped"
    );
    for p in ["/k/never", "/k/ttllong", "/k/f0"] {
        assert!(j.check_stat(p).await.expect("stat").is_some(), "{p} gone");
    }

    // verify compares kinds: a copy made without the files holds the
    // special nodes as persistent ones, and a verification that reads the
    // files says so.
    let plain = Janus::start();
    let (pto, pto_zk) = (plain.etcd_endpoint(), plain.zk_addr().to_string());
    let o = copy_zk(&from, &pto, &pto_zk, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kinds: not read"), "{}", text(&o));
    let dir = data.display().to_string();
    let o = copy_zk(
        &from,
        &pto,
        &pto_zk,
        &["--verify-only", "--source-data-dir", &dir],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("/k/never: container 1 vs 0"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("/k/ttllong: ttl ms 3600000 vs 0"),
        "{}",
        text(&o)
    );
}

/// The source dies while the tree is being read (a large tree, killed once
/// the tool's watch is registered): the tool exits non-zero naming the
/// source, janus holds nothing and no lock, and once the source is back a
/// rerun with `--force` copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_lost_mid_copy_fails_cleanly_and_a_rerun_succeeds() {
    let mut real = RealZk::start().expect("zookeeper");
    let janus = Janus::start();
    let src = zk_connect(&real.connect_string()).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    src.create("/w", b"", &open).await.expect("/w");
    let groups: Vec<_> = (0..GROUPS)
        .map(|g| {
            let src = &src;
            async move {
                let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                let gp = format!("/w/g{g:02}");
                src.create(&gp, b"", &open).await.expect("group");
                let mut w = src.new_multi_writer();
                for i in 0..PER_GROUP {
                    w.add_create(&format!("{gp}/n{i:03}"), b"some data", &open)
                        .expect("add_create");
                }
                w.commit().await.expect("multi");
            }
        })
        .collect();
    futures::future::join_all(groups).await;
    drop(src);
    let (from, to, to_zk) = (
        real.connect_string(),
        janus.etcd_endpoint(),
        janus.zk_addr().to_string(),
    );
    let run = {
        let (from, to, to_zk) = (from.clone(), to.clone(), to_zk.clone());
        tokio::task::spawn_blocking(move || copy_zk(&from, &to, &to_zk, &[]))
    };
    // The watch is registered right before the walk; once the server has
    // answered a few hundred more requests, the walk is under way: kill.
    let received = || {
        let srvr = four_letter(real.addr(), "srvr").unwrap_or_default();
        srvr.lines()
            .find_map(|l| l.strip_prefix("Received: "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut watched_at = None;
    loop {
        if watched_at.is_none() {
            let wchs = four_letter(real.addr(), "wchs").unwrap_or_default();
            if wchs.contains("watching 1 paths") {
                watched_at = Some(received());
            }
        }
        if watched_at.is_some_and(|r| received() > r + 300) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the walk did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    real.kill();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("migrate did not give up on a dead source")
        .expect("migrate task");
    let log = text(&out);
    assert!(
        !out.status.success(),
        "exited 0 with the source gone:\n{log}"
    );
    assert!(
        log.contains(&format!("reading the source ZooKeeper at {from}")),
        "{log}"
    );
    let j = zk_connect(&to_zk).await;
    assert!(
        j.check_stat("/w").await.expect("stat").is_none(),
        "imported although the walk did not finish"
    );
    // No lock: a client write is judged on its own (a failed write takes
    // no revision, so the rerun's zxids stay above janus's).
    assert_eq!(
        j.create("/no/parent", b"", &open).await.err(),
        Some(zk::Error::NoNode),
        "janus still holds the migration lock"
    );
    real.restart().expect("zookeeper back");
    let o = copy_zk(&from, &to, &to_zk, &["--force"]);
    assert!(o.status.success(), "rerun: {}", text(&o));
    assert!(text(&o).contains("verified: equal"), "{}", text(&o));
    let (_, st) = j.get_data("/w/g42").await.expect("copied");
    assert_eq!(st.num_children as usize, PER_GROUP);
}
