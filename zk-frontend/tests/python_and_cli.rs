//! janus driven by kazoo (its recipes under concurrency) and by the
//! ZooKeeper CLI (`zkCli.sh` from Debian's `zookeeper`). Both tools are
//! required: a missing tool fails the test with the install command.

mod common;

use std::process::Command;

use janus_conformance::harness::Janus;

/// The system Python that Debian's `python3-kazoo` installs into.
const PYTHON: &str = "/usr/bin/python3";
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

#[test]
fn kazoo_recipes_under_concurrency() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import kazoo"])
        .status()
        .map(|s| s.success());
    assert!(
        matches!(ok, Ok(true)),
        "kazoo missing: apt-get install -y python3-kazoo"
    );
    let j = Janus::start();
    kazoo_script("kazoo_recipes.py", &[&j.zk_addr().to_string()], || j.log());
}

#[test]
fn kazoo_over_tls_on_the_secure_port() {
    let secure =
        std::net::SocketAddr::from(([127, 0, 0, 1], janus_conformance::harness::free_port()));
    let j = Janus::start_with(&["--listen-zk-secure-addr", &secure.to_string(), "--auto-tls"]);
    kazoo_script(
        "kazoo_ssl.py",
        &[&secure.to_string(), &j.zk_addr().to_string()],
        || j.log(),
    );
}

/// Runs one zkCli.sh command and returns its combined output.
fn zkcli(addr: &str, args: &[&str]) -> String {
    let out = Command::new(ZKCLI)
        .arg("-server")
        .arg(addr)
        .args(args)
        .output()
        .expect("run zkCli.sh");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn zkcli_commands() {
    assert!(
        std::path::Path::new(ZKCLI).exists(),
        "zkCli.sh missing: apt-get install -y zookeeper"
    );
    let j = Janus::start();
    let a = j.zk_addr().to_string();
    let a = a.as_str();
    let out = zkcli(a, &["create", "/cli", "hello"]);
    assert!(out.contains("Created /cli"), "{out}");
    let out = zkcli(a, &["get", "/cli"]);
    assert!(out.lines().any(|l| l.trim() == "hello"), "{out}");
    let out = zkcli(a, &["create", "-s", "/cli/seq-", "x"]);
    assert!(out.contains("Created /cli/seq-0000000000"), "{out}");
    let out = zkcli(a, &["create", "-e", "/cli/eph", "x"]);
    assert!(out.contains("Created /cli/eph"), "{out}");
    let out = zkcli(a, &["set", "/cli", "world"]);
    assert!(!out.contains("Exception"), "{out}");
    let out = zkcli(a, &["stat", "/cli"]);
    // zkCli.sh exits without closing its session, so the ephemeral lives on
    // until the session times out (as with a real ZooKeeper).
    assert!(
        out.contains("dataVersion = 1") && out.contains("numChildren = 2"),
        "{out}"
    );
    assert!(
        out.contains("cversion = 2") && out.contains("dataLength = 5"),
        "{out}"
    );
    let out = zkcli(a, &["ls", "/"]);
    assert!(out.contains("[cli, zookeeper]"), "{out}");
    let out = zkcli(a, &["create", "/cli", "again"]);
    assert!(out.contains("Node already exists"), "{out}");
    let out = zkcli(a, &["delete", "/cli"]);
    assert!(out.contains("Node not empty"), "{out}");
    let out = zkcli(a, &["deleteall", "/cli"]);
    assert!(!out.contains("Exception"), "{out}");
    let out = zkcli(a, &["ls", "/"]);
    assert!(out.contains("[zookeeper]"), "{out}");
    let out = zkcli(a, &["getAllChildrenNumber", "/"]);
    assert!(out.lines().any(|l| l.trim() == "3"), "{out}");
    let out = zkcli(a, &["create", "-t", "60000", "/ttl", "x"]);
    assert!(out.contains("Created /ttl"), "{out}");
    let out = zkcli(a, &["getAcl", "/zookeeper/config"]);
    assert!(
        out.contains("'world,'anyone") && out.contains(": r"),
        "{out}"
    );
}

/// Runs a kazoo script (`tests/py/NAME` with `args`, the server address
/// first) and returns its stdout; fails the test unless the script exits
/// 0 and prints `all ok`.
fn kazoo_script(name: &str, args: &[&str], log: impl Fn() -> String) -> String {
    let script = format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(PYTHON)
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "{name} {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    stdout
}

/// The same kazoo script against real ZooKeeper 3.8 and janus: the
/// transcripts must be equal.
fn kazoo_differential(name: &str) -> String {
    let zk = janus_conformance::reference::RealZk::start().expect("ZooKeeper 3.8 starts");
    let want = kazoo_script(name, &[&zk.connect_string()], || zk.log());
    let j = Janus::start();
    let got = kazoo_script(name, &[&j.zk_addr().to_string()], || j.log());
    assert_eq!(got, want, "janus (left) differs from ZooKeeper (right)");
    got
}

/// Null data stays null (kazoo's test_create_null_data / test_set_null_data).
#[test]
fn kazoo_null_data_as_zookeeper() {
    let out = kazoo_differential("null_data.py");
    assert!(out.contains("create None: None dataLength=0"), "{out}");
}

#[test]
fn kazoo_client_certificates_are_x509_identities() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_x509_certs(dir.path(), &["client", "other", "admin"]);
    let (j, secure) = common::janus_with_client_certs(dir.path(), "CN=admin,O=acme");
    let certs = dir.path().display().to_string();
    kazoo_script(
        "kazoo_x509.py",
        &[&secure.to_string(), &j.zk_addr().to_string(), &certs],
        || j.log(),
    );
}
