//! Disk faults with a real file system: a member's data dir on a tmpfs of
//! 160 MiB that this test mounts, filled to ENOSPC under writes from both
//! protocols. Writes then fail with clear errors (never a hang, never an
//! acknowledgement that is later lost), the member stops (fail-stop: the
//! process exits, as etcd does on a failed WAL write), and once space is
//! freed it starts again on the same data with every acknowledged write.
//! (An fdatasync error is tested in core's `cluster` tests through a file
//! system whose sync fails: the kernel here has no dm-error/dm-flakey.)
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
