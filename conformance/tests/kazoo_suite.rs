//! kazoo 2.11.0's own tests, run through kazoo's own 3-member harness with
//! its `java` launch pointed at janus members (`conformance/kazoo/`). This
//! is the short selection CI runs; `conformance/kazoo/run.sh` runs the
//! whole suite (see conformance/README.md). Needs
//! `conformance/kazoo/setup.sh` (CI's `.ci/run` calls it): a missing setup
//! fails the test with that command.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use janus_conformance::harness::{free_port, janus_binary};

/// The tests that must pass: ZooKeeper 3.8.0 passes them, and each covers
/// a behaviour real clients tripped over (null data, resends after a
/// reconnect, session expiry), an ensemble feature (reconfig, read-only
/// mode, TLS, SASL) or a recipe janus must serve.
const SELECTION: &[&str] = &[
    "kazoo/tests/test_client.py::TestClient::test_create_null_data",
    "kazoo/tests/test_client.py::TestClient::test_set_null_data",
    "kazoo/tests/test_client.py::TestClient::test_request_queuing_session_recovered",
    "kazoo/tests/test_client.py::TestClient::test_request_queuing_session_expired",
    "kazoo/tests/test_client.py::TestClientTransactions",
    "kazoo/tests/test_connection.py::TestConnectionDrop",
    "kazoo/tests/test_lock.py::KazooLockTests::test_lock",
    "kazoo/tests/test_election.py",
    "kazoo/tests/test_counter.py",
    "kazoo/tests/test_barrier.py",
    // Ensemble features: reconfig (add/remove an observer, bad input, no
    // super auth), read-only mode with two of three members stopped, and
    // the TLS client port.
    "kazoo/tests/test_client.py::TestReconfig",
    "kazoo/tests/test_connection.py::TestReadOnlyMode",
    "kazoo/tests/test_client.py::TestSSLClient",
    // SASL DIGEST-MD5, users from the harness's JAAS file.
    "kazoo/tests/test_sasl.py",
];

/// A base port with the 30 ports kazoo's 3-member cluster takes free.
fn port_offset() -> u16 {
    loop {
        let base = free_port();
        if base > 31_000 {
            continue;
        }
        let free = (0..30).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
}

#[test]
fn kazoo_own_tests_pass_on_janus() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("kazoo");
    let dir = std::env::var("JANUS_KAZOO_DIR").map_or_else(
        |_| here.join("../../target/kazoo"),
        std::path::PathBuf::from,
    );
    assert!(
        dir.join("kazoo-2.11.0/kazoo/tests").is_dir(),
        "kazoo's suite is not set up in {}: run conformance/kazoo/setup.sh",
        dir.display()
    );
    let out = Command::new(here.join("run.sh"))
        .args(SELECTION)
        .env("JANUS_KAZOO_DIR", &dir)
        .env("JANUS_BIN", janus_binary())
        .env("ZOOKEEPER_PORT_OFFSET", port_offset().to_string())
        .output()
        .expect("run conformance/kazoo/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        out.status.success(),
        "kazoo's tests failed on janus:\n{}\nstderr:\n{}",
        tail.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}
