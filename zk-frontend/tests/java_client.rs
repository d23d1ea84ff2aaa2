//! The stock Java ZooKeeper client (Debian's jars), compiled here with
//! `javac`, against real ZooKeeper 3.8 and janus: an auth packet is applied
//! before the requests sent after it, the super digest reads and writes
//! every node, whoAmI lists every identity. Both servers must print the
//! same.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use janus_conformance::harness::Janus;
use janus_conformance::reference::RealZk;

/// `super:test`, as ZooKeeper's documentation makes it.
const SUPER_DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

fn classpath() -> String {
    [
        "zookeeper.jar",
        "zookeeper-jute.jar",
        "slf4j-api.jar",
        "netty-handler.jar",
        "netty-common.jar",
        "netty-buffer.jar",
        "netty-transport.jar",
        "netty-codec.jar",
        "netty-resolver.jar",
        "netty-transport-native-epoll.jar",
        "netty-transport-native-unix-common.jar",
        "commons-io.jar",
    ]
    .iter()
    .map(|j| format!("/usr/share/java/{j}"))
    .collect::<Vec<_>>()
    .join(":")
}

fn compile(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/AuthIds.java");
    let out = Command::new("javac")
        .args(["-cp", &classpath(), "-d"])
        .arg(dir)
        .arg(&src)
        .output()
        .expect("javac is needed (default-jdk-headless)");
    assert!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

fn run(classes: &Path, addr: std::net::SocketAddr) -> String {
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{}", classpath(), classes.display()))
        .arg("AuthIds")
        .arg(addr.to_string())
        .output()
        .expect("java");
    assert!(
        out.status.success(),
        "AuthIds failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn java_client_auth_order_super_digest_and_who_am_i_match_zookeeper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let classes = compile(dir.path());
    let property = format!("-Dzookeeper.DigestAuthenticationProvider.superDigest={SUPER_DIGEST}");
    let reference = {
        let zk = RealZk::start_with_jvm(&[], &[&property])
            .expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
        run(&classes, zk.addr())
    };
    let j = Janus::start_with(&["--zk-super-digest", SUPER_DIGEST]);
    let ours = run(&classes, j.zk_addr());
    assert!(
        reference.starts_with("eager secret\nanon NOAUTH"),
        "unexpected reference output:\n{reference}"
    );
    assert_eq!(ours, reference, "janus (left) differs from ZooKeeper 3.8");
}
