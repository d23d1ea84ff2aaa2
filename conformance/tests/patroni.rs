//! Patroni's etcd3 DCS (Debian `patroni` 3.0.2) with two PostgreSQL members,
//! on janus and, as the reference, on a real etcd 3.4: bootstrap, replica
//! streaming, switchover, kill -9 failover, clean shutdown.
//!
//! Patroni talks to etcd through the JSON gateway (`/v3/kv/range`,
//! `/v3/watch` from a range's header revision, leases, txns), so this is the
//! gateway under a real high-availability manager. PostgreSQL refuses to
//! run as root: Patroni runs as the `postgres` user the Debian package
//! creates, which needs root to switch to (CI runs as root).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_conformance::harness::{free_port, Janus};
use janus_conformance::reference::RealEtcd;

const SCOPE: &str = "jtest";

/// The first `bin` dir of an installed PostgreSQL server.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    user_ids("root").is_some()
        && Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false)
}

/// HTTP status of `GET http://127.0.0.1:port/path`, None if nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn psql(port: u16, sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            sql,
        ])
        .arg("-p")
        .arg(port.to_string())
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One Patroni member: its REST port, PostgreSQL port and process group
/// (Patroni and the postgres it started).
struct Member {
    name: String,
    rest: u16,
    pg: u16,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Member {
    fn new(dir: &Path, name: &str, dcs: &str, pg_bin: &Path) -> Member {
        let rest = free_port();
        let pg = free_port();
        let config = dir.join(format!("{name}.yml"));
        let yaml = format!(
            r#"scope: {SCOPE}
name: {name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
etcd3:
  hosts: {dcs}
  protocol: http
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
  initdb:
    - encoding: UTF8
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {dir}/{name}.pgpass
  authentication:
    replication:
      username: replicator
      password: rep
    superuser:
      username: postgres
      password: su
  parameters:
    unix_socket_directories: {dir}
    max_connections: 20
    shared_buffers: 16MB
"#,
            data = dir.join(format!("{name}.data")).display(),
            bin = pg_bin.display(),
            dir = dir.display(),
        );
        std::fs::write(&config, yaml).expect("write patroni config");
        Member {
            name: name.to_string(),
            rest,
            pg,
            log: dir.join(format!("{name}.log")),
            config,
            child: None,
        }
    }

    fn start(&mut self, uid: u32, gid: u32) {
        let log = std::fs::File::create(&self.log).expect("patroni log");
        let log2 = log.try_clone().expect("patroni log");
        let child = Command::new("patroni")
            .arg(&self.config)
            .uid(uid)
            .gid(gid)
            .process_group(0)
            .env("HOME", self.config.parent().unwrap_or(Path::new("/tmp")))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn patroni");
        self.child = Some(child);
    }

    fn role(&self) -> Option<&'static str> {
        match (
            http_status(self.rest, "/primary"),
            http_status(self.rest, "/replica"),
        ) {
            (Some(200), _) => Some("primary"),
            (_, Some(200)) => Some("replica"),
            _ => None,
        }
    }

    fn signal_group(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{}", c.id())])
                .status();
        }
    }

    /// kill -9 of Patroni and its PostgreSQL at once, as a machine crash.
    fn crash(&mut self) {
        self.signal_group("-KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM: Patroni stops PostgreSQL and releases the leader key.
    fn stop(&mut self) -> bool {
        self.signal_group("-TERM");
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        false
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.crash();
    }
}

fn wait_for(what: &str, secs: u64, members: &[&Member], mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let logs: Vec<String> = members
        .iter()
        .map(|m| {
            let log = m.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!(
                "--- {} ---\n{}",
                m.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    panic!(
        "timed out after {secs}s waiting for {what}\n{}",
        logs.join("\n")
    );
}

/// The leader key Patroni keeps in the DCS, read through the gRPC API.
async fn leader_key(endpoint: &str) -> Option<String> {
    let mut c = etcd_client::Client::connect([endpoint], None).await.ok()?;
    let r = c.get(format!("/service/{SCOPE}/leader"), None).await.ok()?;
    r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// The whole lifecycle against one DCS endpoint (`127.0.0.1:PORT`).
async fn lifecycle(dcs: &str, endpoint: &str) {
    let pg_bin = pg_bin_dir().expect("PostgreSQL server binaries");
    let (uid, gid) = user_ids("postgres").expect("the postgres user");
    let dir = tempfile::Builder::new()
        .prefix("patroni")
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown tempdir");

    let mut a = Member::new(dir.path(), "pg0", dcs, &pg_bin);
    let mut b = Member::new(dir.path(), "pg1", dcs, &pg_bin);

    // Bootstrap: the first member initialises the cluster and takes the lock.
    a.start(uid, gid);
    wait_for("pg0 to bootstrap as primary", 120, &[&a], || {
        a.role() == Some("primary")
    });
    assert_eq!(leader_key(endpoint).await.as_deref(), Some("pg0"));
    psql(
        a.pg,
        "CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .expect("write on pg0");

    // The second member clones the primary and streams from it.
    b.start(uid, gid);
    wait_for("pg1 to join as a streaming replica", 120, &[&a, &b], || {
        b.role() == Some("replica") && psql(b.pg, "SELECT count(*) FROM t").as_deref() == Some("1")
    });
    psql(a.pg, "INSERT INTO t VALUES (2)").expect("second write on pg0");
    wait_for("pg1 to replay the second write", 60, &[&a, &b], || {
        psql(b.pg, "SELECT count(*) FROM t").as_deref() == Some("2")
    });
    assert_eq!(
        psql(a.pg, "SELECT state FROM pg_stat_replication").as_deref(),
        Some("streaming")
    );

    // Switchover: the leader hands over to the replica on request.
    let out = Command::new("patronictl")
        .arg("-c")
        .arg(&a.config)
        .args([
            "switchover",
            "--leader",
            "pg0",
            "--candidate",
            "pg1",
            "--force",
            SCOPE,
        ])
        .output()
        .expect("patronictl");
    assert!(
        out.status.success(),
        "patronictl switchover failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("switchover to pg1", 90, &[&a, &b], || {
        b.role() == Some("primary") && a.role() == Some("replica")
    });
    assert_eq!(leader_key(endpoint).await.as_deref(), Some("pg1"));
    wait_for("a write on the new primary", 30, &[&a, &b], || {
        psql(b.pg, "INSERT INTO t VALUES (3) ON CONFLICT DO NOTHING").is_some()
    });
    wait_for("pg0 to stream from pg1", 60, &[&a, &b], || {
        psql(a.pg, "SELECT count(*) FROM t").as_deref() == Some("3")
    });

    // Failover: the primary's machine dies; its leader key expires with its
    // lease and the replica takes over.
    b.crash();
    wait_for(
        "failover to pg0 after kill -9 of pg1",
        90,
        &[&a, &b],
        || a.role() == Some("primary"),
    );
    assert_eq!(leader_key(endpoint).await.as_deref(), Some("pg0"));
    // Patroni answers /primary once it promoted; the first connections may
    // still land while PostgreSQL finishes leaving recovery.
    wait_for("a write after failover", 30, &[&a, &b], || {
        psql(a.pg, "INSERT INTO t VALUES (4) ON CONFLICT DO NOTHING").is_some()
    });
    assert_eq!(psql(a.pg, "SELECT count(*) FROM t").as_deref(), Some("4"));

    // The crashed member comes back as a replica of the new primary.
    b.start(uid, gid);
    wait_for("pg1 to rejoin as a replica", 120, &[&a, &b], || {
        b.role() == Some("replica") && psql(b.pg, "SELECT count(*) FROM t").as_deref() == Some("4")
    });

    // Clean shutdown: the replica, then the primary, which releases its key.
    assert!(b.stop(), "pg1 did not stop cleanly:\n{}", b.log_text());
    assert!(a.stop(), "pg0 did not stop cleanly:\n{}", a.log_text());
    assert_eq!(leader_key(endpoint).await, None, "leader key left behind");
}

fn prerequisites() -> Result<(), String> {
    let dcs_module = Command::new("/usr/bin/python3")
        .args(["-c", "import patroni.dcs.etcd3"])
        .output();
    if !dcs_module.map(|o| o.status.success()).unwrap_or(false) {
        return Err(
            "patroni's etcd3 DCS is not installed (apt-get install patroni python3-etcd postgresql)"
                .into(),
        );
    }
    if pg_bin_dir().is_none() {
        return Err("no PostgreSQL server under /usr/lib/postgresql".into());
    }
    if user_ids("postgres").is_none() {
        return Err("no postgres user".into());
    }
    if !is_root() {
        return Err("switching to the postgres user needs root".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_on_janus() {
    if let Err(why) = prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let janus = Janus::start();
    let dcs = janus.etcd_addr().to_string();
    lifecycle(&dcs, &janus.etcd_endpoint()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_on_real_etcd() {
    if let Err(why) = prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let etcd = RealEtcd::start().expect("real etcd");
    let dcs = etcd.addr().to_string();
    lifecycle(&dcs, &etcd.endpoint()).await;
}
