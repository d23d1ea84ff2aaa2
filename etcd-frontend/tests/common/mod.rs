//! Helpers shared by the etcd frontend's integration tests: a real etcd
//! started on free ports (for differential runs), and running `etcdctl`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use janus_conformance::harness::free_port;

/// A real etcd (Debian `etcd-server`) with a temp data dir, killed on drop.
pub struct RealEtcd {
    child: Child,
    _dir: tempfile::TempDir,
    pub client: SocketAddr,
}

impl RealEtcd {
    pub fn start() -> RealEtcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("default=http://{peer}")])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("real etcd is needed for differential tests: apt-get install etcd-server");
        let e = RealEtcd {
            child,
            _dir: dir,
            client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&client, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Wait until it has a leader and serves writes.
        loop {
            let out = etcdctl(&e.endpoint(), &["endpoint", "health"], None);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `etcdctl --endpoints=<endpoint> args...` (API v3) with optional stdin.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("etcdctl is needed: apt-get install etcd-client");
    if let Some(input) = stdin {
        use std::io::Write;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(input.as_bytes()).expect("write etcdctl stdin");
        }
    }
    child.wait_with_output().expect("etcdctl output")
}

/// `etcdctl` that must succeed; returns stdout.
pub fn etcdctl_ok(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `Error: ...` lines of etcdctl's stderr (its retry warnings carry
/// timestamps and are dropped).
pub fn error_lines(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a long-lived etcdctl command (watch, lock, elect) for `dur`, then
/// kills it and returns what it printed.
pub fn etcdctl_for(endpoint: &str, args: &[&str], dur: Duration) -> Output {
    let child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(dur);
        // SIGTERM the etcdctl we started (by its own pid).
        let _ = Command::new("kill")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    });
    let out = child.wait_with_output().expect("etcdctl output");
    let _ = killer.join();
    out
}
