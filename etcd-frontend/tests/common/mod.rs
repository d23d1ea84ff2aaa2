//! Helpers shared by the etcd frontend's integration tests: running
//! `etcdctl`. Real etcd for the differential run comes from
//! `janus_conformance::reference`.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
