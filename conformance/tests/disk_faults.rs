//! Disk faults with a real file system: a member's data dir on a tmpfs of
//! 160 MiB that this test mounts, filled to ENOSPC under writes from both
//! protocols. Writes then fail with clear errors (never a hang, never an
//! acknowledgement that is later lost), the member stops (fail-stop: the
//! process exits, as etcd does on a failed WAL write), and once space is
//! freed it starts again on the same data with every acknowledged write.
//! (An fdatasync error is tested in core's `cluster` tests through a file
//! system whose sync fails: the kernel here has no dm-error/dm-flakey.)
//!
//! And the same fault on one member of three: its disk fills while it
//! leads, it stops, the other two elect a leader and keep taking writes of
//! both protocols, and once space is freed it restarts and catches up, with
//! every acknowledged write on every member.
//!
//! Needs root (mount); without it the test says so and passes.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use janus_conformance::cluster::{Cluster, ClusterOptions};
use zookeeper_client as zk;

struct Mount(tempfile::TempDir);

impl Mount {
    fn tmpfs(size: &str) -> Result<Mount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Writes 1 MiB chunks until the file system says no; returns the error.
fn fill(path: &std::path::Path) -> std::io::Error {
    let mut f = match std::fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let chunk = vec![0x5a_u8; 1 << 20];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_data()) {
            return e;
        }
    }
}

async fn zk_session(addr: &str) -> zk::Client {
    zk::Client::connector()
        .session_timeout(Duration::from_secs(10))
        .connect(addr)
        .await
        .expect("zk connect")
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_writes_clearly_stops_the_member_and_loses_nothing() {
    let mount = match Mount::tmpfs("160m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: cannot mount a size-limited tmpfs ({why}; needs root)");
            return;
        }
    };
    let mut c = tokio::task::block_in_place(|| {
        Cluster::start_with(
            1,
            ClusterOptions {
                dir: Some(mount.0.path().to_path_buf()),
                ..ClusterOptions::default()
            },
        )
    });
    let ep = c.members[0].etcd_endpoint();
    let zk_addr = c.members[0].zk.to_string();
    let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(3));
    let mut etcd = etcd_client::Client::connect([ep.clone()], Some(opts.clone()))
        .await
        .expect("etcd connect");
    let zc = zk_session(&zk_addr).await;
    zc.create("/disk", b"", &open())
        .await
        .expect("create /disk");
    let mut etcd_acked = Vec::new();
    let mut zk_acked = Vec::new();
    for i in 0..50 {
        let k = format!("/disk/e{i}");
        etcd.put(k.as_str(), vec![7u8; 2000], None)
            .await
            .expect("put");
        etcd_acked.push(k);
        let p = format!("/disk/z{i}");
        zc.create(&p, &[9u8; 2000], &open()).await.expect("create");
        zk_acked.push(p);
    }

    let filler = mount.0.path().join("filler");
    let why = fill(&filler);
    eprintln!("filled the data dir's file system: {why}");
    assert_eq!(why.raw_os_error(), Some(28), "expected ENOSPC, got {why}");

    // Writes until both protocols have refused one; what is acknowledged
    // meanwhile (e.g. into the WAL's preallocated segment) must survive.
    let mut etcd_errors = Vec::new();
    let mut zk_errors = Vec::new();
    let started = Instant::now();
    let value = vec![1u8; 64 * 1024];
    for i in 0.. {
        if (!etcd_errors.is_empty() && !zk_errors.is_empty())
            || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        let k = format!("/disk/full/e{i}");
        match tokio::time::timeout(
            Duration::from_secs(5),
            etcd.put(k.as_str(), value.clone(), None),
        )
        .await
        {
            Ok(Ok(_)) => etcd_acked.push(k),
            Ok(Err(e)) => etcd_errors.push(e.to_string()),
            Err(_) => etcd_errors.push("timed out after 5 s".into()),
        }
        let p = format!("/disk/full-z{i}");
        match tokio::time::timeout(Duration::from_secs(5), zc.create(&p, &value[..], &open())).await
        {
            Ok(Ok(_)) => zk_acked.push(p),
            Ok(Err(e)) => zk_errors.push(e.to_string()),
            Err(_) => zk_errors.push("timed out after 5 s".into()),
        }
    }
    eprintln!(
        "with the disk full: etcd errors {:?}, ZooKeeper errors {:?}; {} etcd and {} ZooKeeper writes acknowledged in all",
        etcd_errors.first(),
        zk_errors.first(),
        etcd_acked.len(),
        zk_acked.len()
    );
    assert!(
        !etcd_errors.is_empty(),
        "etcd writes kept succeeding on a full disk"
    );
    assert!(
        !zk_errors.is_empty(),
        "ZooKeeper writes kept succeeding on a full disk"
    );
    assert!(
        etcd_errors.iter().all(|e| !e.contains("timed out")),
        "an etcd write hung instead of failing: {etcd_errors:?}"
    );

    // Fail-stop: the process exits on its own.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = c.exited(0) {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the member kept running after its storage failed; log:\n{}",
            c.members[0].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "exit status {status}");
    let log = c.members[0].log();
    assert!(
        log.contains("No space left on device"),
        "the log does not say why: {log}"
    );
    drop(zc);

    // Space freed: the member starts on the same data with every
    // acknowledged write, and takes writes again.
    std::fs::remove_file(&filler).expect("remove filler");
    tokio::task::block_in_place(|| c.restart(0));
    let mut etcd = etcd_client::Client::connect([ep], Some(opts))
        .await
        .expect("etcd connect");
    for k in &etcd_acked {
        let r = etcd.get(k.as_str(), None).await.expect("get");
        assert_eq!(r.kvs().len(), 1, "acknowledged {k} lost after ENOSPC");
    }
    let zc = zk_session(&zk_addr).await;
    for p in &zk_acked {
        assert!(
            zc.check_stat(p).await.expect("exists").is_some(),
            "acknowledged {p} lost after ENOSPC"
        );
    }
    etcd.put("/disk/after", "ok", None)
        .await
        .expect("write after recovery");
    zc.create("/disk/after-z", b"ok", &open())
        .await
        .expect("ZooKeeper write after recovery");
    drop(c);
}

/// etcd put with retries through the leader change a failing member
/// causes; `true` once acknowledged.
async fn put_retrying(etcd: &mut etcd_client::Client, key: &str, value: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(3), etcd.put(key, value, None)).await
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// ZooKeeper create with retries; an earlier attempt that was applied
/// shows as NodeExists.
async fn create_retrying(zc: &zk::Client, path: &str, value: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), zc.create(path, value, &open())).await {
            Ok(Ok(_)) | Ok(Err(zk::Error::NodeExists)) => return true,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

/// Member `i`'s raft id, from its own Status.
async fn member_id(c: &Cluster, i: usize) -> u64 {
    let mut cl = etcd_client::Client::connect([c.members[i].etcd_endpoint()], None)
        .await
        .expect("etcd connect");
    let s = cl.status().await.expect("status");
    s.header().expect("header").member_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_full_member_of_three_the_others_serve_and_it_catches_up() {
    let mount = match Mount::tmpfs("160m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: cannot mount a size-limited tmpfs ({why}; needs root)");
            return;
        }
    };
    // m0's data dir is a link into the small file system; m1 and m2 have
    // theirs in the ordinary temp dir.
    let small = mount.0.path().join("m0-data");
    let mut c = tokio::task::block_in_place(|| {
        Cluster::start_prepared(3, |m, _| {
            if m.name == "m0" {
                std::fs::create_dir_all(&small).expect("data dir on the tmpfs");
                let parent = m.data_dir.parent().expect("member dir");
                std::fs::create_dir_all(parent).expect("member dir");
                std::os::unix::fs::symlink(&small, &m.data_dir).expect("link the data dir");
            }
        })
    });
    let all: Vec<String> = c.etcd_endpoints();
    let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(3));
    // The full member leads when its disk fills (the harder case: the
    // other two must elect a leader and carry on).
    let m0 = member_id(&c, 0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut cl = etcd_client::Client::connect(all.clone(), Some(opts.clone()))
            .await
            .expect("etcd connect");
        let s = cl.status().await.expect("status");
        if s.leader() == m0 {
            break;
        }
        // Only the leader accepts MoveLeader.
        for ep in &all {
            if let Ok(mut l) = etcd_client::Client::connect([ep.clone()], Some(opts.clone())).await
            {
                let _ = l.move_leader(m0).await;
            }
        }
        assert!(Instant::now() < deadline, "could not make m0 the leader");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("m0 ({m0:x}) leads; its data dir is on a 160 MiB tmpfs");

    // Clients of the two other members only.
    let others = vec![c.members[1].etcd_endpoint(), c.members[2].etcd_endpoint()];
    let mut etcd = etcd_client::Client::connect(others, Some(opts.clone()))
        .await
        .expect("etcd connect");
    let zk_others = format!("{},{}", c.members[1].zk, c.members[2].zk);
    let zc = zk_session(&zk_others).await;
    assert!(create_retrying(&zc, "/full", b"").await, "create /full");
    let mut etcd_acked = Vec::new();
    let mut zk_acked = Vec::new();
    for i in 0..20 {
        let k = format!("/full/e{i}");
        assert!(put_retrying(&mut etcd, &k, &[7u8; 2000]).await, "put {k}");
        etcd_acked.push(k);
        let p = format!("/full/z{i}");
        assert!(create_retrying(&zc, &p, &[9u8; 2000]).await, "create {p}");
        zk_acked.push(p);
    }

    let filler = mount.0.path().join("filler");
    let why = fill(&filler);
    assert_eq!(why.raw_os_error(), Some(28), "expected ENOSPC, got {why}");
    eprintln!("filled m0's file system: {why}");

    // Writes go on through the other two; m0 stops on its failed write.
    let value = vec![1u8; 64 * 1024];
    let started = Instant::now();
    let mut exited_at = None;
    let mut after_exit = 0;
    let mut i = 0;
    while after_exit < 30 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "m0 did not stop within 60 s of writes on a full disk (exited: {exited_at:?}); logs:\n{}",
            c.logs()
        );
        i += 1;
        let k = format!("/full/after/e{i}");
        assert!(
            put_retrying(&mut etcd, &k, &value).await,
            "the two healthy members stopped taking etcd writes ({k}); logs:\n{}",
            c.logs()
        );
        etcd_acked.push(k);
        let p = format!("/full/after-z{i}");
        assert!(
            create_retrying(&zc, &p, &value).await,
            "the two healthy members stopped taking ZooKeeper writes ({p})"
        );
        zk_acked.push(p);
        if exited_at.is_none() {
            if let Some(st) = c.exited(0) {
                assert!(!st.success(), "m0 exit status {st}");
                exited_at = Some(started.elapsed());
                eprintln!("m0 stopped after {:?} ({st})", started.elapsed());
            }
        } else {
            after_exit += 1;
        }
    }
    assert!(
        c.members[0].log().contains("No space left on device"),
        "m0's log does not say why it stopped"
    );

    // Space freed: m0 starts on its data dir and catches up; nothing
    // acknowledged is missing on any member.
    std::fs::remove_file(&filler).expect("remove filler");
    let restarted = Instant::now();
    tokio::task::block_in_place(|| c.restart(0));
    let mut local =
        etcd_client::Client::connect([c.members[0].etcd_endpoint()], Some(opts.clone()))
            .await
            .expect("etcd connect m0");
    let last = etcd_acked.last().expect("writes").clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let serial = etcd_client::GetOptions::new().with_serializable();
        if let Ok(r) = local.get(last.as_str(), Some(serial)).await {
            if r.kvs().len() == 1 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "m0 did not catch up within 30 s after space was freed; log:\n{}",
            c.members[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = restarted.elapsed();
    for i in 0..3 {
        let mut cl =
            etcd_client::Client::connect([c.members[i].etcd_endpoint()], Some(opts.clone()))
                .await
                .expect("etcd connect");
        let serial = etcd_client::GetOptions::new().with_serializable();
        for k in &etcd_acked {
            let r = cl.get(k.as_str(), Some(serial.clone())).await.expect("get");
            assert_eq!(r.kvs().len(), 1, "acknowledged {k} missing on m{i}");
        }
        let z = zk_session(&c.members[i].zk.to_string()).await;
        z.sync("/full").await.expect("sync");
        for p in &zk_acked {
            assert!(
                z.check_stat(p).await.expect("exists").is_some(),
                "acknowledged {p} missing on m{i}"
            );
        }
    }
    // And m0 takes part again: a write through it only.
    assert!(
        put_retrying(&mut local, "/full/through-m0", b"ok").await,
        "no write through m0 after recovery"
    );
    eprintln!(
        "{} etcd and {} ZooKeeper writes acknowledged ({} after m0 stopped), all on every member; m0 restarted and caught up in {:?}",
        etcd_acked.len(),
        zk_acked.len(),
        after_exit,
        caught_up
    );
    drop(c);
}
