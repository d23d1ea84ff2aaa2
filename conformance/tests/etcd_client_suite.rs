//! The `etcd-client` crate's own test suite, unchanged, against janus.
//!
//! Its tests dial a hard-coded `localhost:2379`, so they run inside a
//! fresh network namespace (`unshare -n`, root only) where janus is the
//! only server, on 127.0.0.1:2379 with `--auth-token-ttl 2`. The crate's
//! sources are copied at the version in our Cargo.lock from the cargo
//! registry (our workspace build fetched them: it is a dev-dependency)
//! and built `--offline` with our lock's versions into a target dir kept
//! under `target/etcd-client-suite`, so reruns only run. The test passes
//! only if every test that fails on janus also fails, in the same
//! namespace setup, against real etcd 3.4; tests the crate marks
//! `#[ignore]` are not run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use janus_conformance::harness::janus_binary;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why the suite cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: a network namespace needs root (CI runs as root)".into());
    }
    let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
    if !ok(Command::new("unshare").args(["-n", "true"])) {
        return Some("`unshare -n` does not work here".into());
    }
    if !ok(Command::new("protoc").arg("--version")) {
        return Some("protoc missing (apt-get install protobuf-compiler)".into());
    }
    if !ok(Command::new("etcd").arg("--version")) {
        return Some("etcd 3.4 missing (apt-get install etcd-server)".into());
    }
    None
}

/// The etcd-client version our Cargo.lock pins.
fn locked_version() -> String {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"etcd-client\"" {
            let v = lines.next().expect("version line");
            return v
                .trim_start_matches("version = \"")
                .trim_end_matches('"')
                .to_string();
        }
    }
    panic!("etcd-client is not in Cargo.lock");
}

/// The crate's sources in the cargo registry.
fn registry_source(version: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let src = home.join("registry/src");
    for index in std::fs::read_dir(&src).expect("cargo registry sources") {
        let dir = index
            .expect("entry")
            .path()
            .join(format!("etcd-client-{version}"));
        if dir.join("Cargo.toml").exists() {
            return dir;
        }
    }
    panic!(
        "etcd-client {version} sources not under {} (build the workspace's tests first)",
        src.display()
    );
}

/// A buildable copy of the crate: its own workspace, our lock, and
/// without the optional dependencies (OpenSSL TLS, `visible`) that our
/// lock does not hold and its tests do not use.
fn prepare(dir: &Path, version: &str) {
    let crate_dir = dir.join(format!("etcd-client-{version}"));
    if crate_dir.join(".prepared").exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(&crate_dir);
    let st = Command::new("cp")
        .arg("-a")
        .arg(registry_source(version))
        .arg(&crate_dir)
        .status()
        .expect("cp");
    assert!(st.success(), "copying the crate failed");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("manifest");
    let mut out = String::new();
    for section in split_sections(&manifest) {
        if section.starts_with("[dependencies.") && section.contains("optional = true") {
            continue;
        }
        if section.starts_with("[features]") {
            out.push_str("[features]\n");
            continue;
        }
        out.push_str(section);
    }
    out.push_str("\n[workspace]\n");
    std::fs::write(crate_dir.join("Cargo.toml"), out).expect("write manifest");
    std::fs::copy(root().join("Cargo.lock"), crate_dir.join("Cargo.lock")).expect("lock");
    std::fs::write(crate_dir.join(".prepared"), "").expect("mark");
}

/// A TOML file cut before each line that opens a table.
fn split_sections(toml: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = vec![0];
    let mut pos = 0;
    for line in toml.split_inclusive('\n') {
        if line.starts_with('[') && pos > 0 {
            starts.push(pos);
        }
        pos += line.len();
    }
    starts.push(toml.len());
    starts.windows(2).map(|w| &toml[w[0]..w[1]]).collect()
}

/// Runs the suite in a new network namespace against `server` (a shell
/// command line started in the background there), returning each test's
/// outcome (`ok`, `FAILED`, `ignored`).
fn run_suite(crate_dir: &Path, target: &Path, server: &str) -> (BTreeMap<String, String>, String) {
    let script = format!(
        r#"set -u
ip link set lo up
{server} > server.log 2>&1 &
srv=$!
for i in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null && break
  sleep 0.1
done
cd '{crate_dir}'
CARGO_TARGET_DIR='{target}' cargo test --offline --tests -- --test-threads=1 2>&1
kill $srv; wait $srv 2>/dev/null
exit 0
"#,
        crate_dir = crate_dir.display(),
        target = target.display(),
    );
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new("unshare")
        .args(["-n", "bash", "-c", &script])
        .current_dir(work.path())
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(work.path().join("server.log")).unwrap_or_default()
    );
    let mut results = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, outcome)) = rest.rsplit_once(" ... ") {
                results.insert(name.to_string(), outcome.trim().to_string());
            }
        }
    }
    (results, text)
}

#[test]
fn etcd_client_crate_suite_passes_against_janus_as_against_etcd() {
    if let Some(why) = unavailable() {
        eprintln!("skipping the etcd-client suite: {why}");
        return;
    }
    let version = locked_version();
    let dir = root().join("target/etcd-client-suite");
    std::fs::create_dir_all(&dir).expect("mkdir");
    prepare(&dir, &version);
    let crate_dir = dir.join(format!("etcd-client-{version}"));
    let target = dir.join("target");
    // Built outside the namespace (same flags, so the runs inside reuse it).
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--offline", "--tests", "--no-run"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&crate_dir)
        .output()
        .expect("cargo");
    assert!(
        build.status.success(),
        "building etcd-client's tests failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let data = tempfile::tempdir().expect("tempdir");
    let janus = format!(
        "'{}' --data-dir '{}/janus' --listen-client-urls http://127.0.0.1:2379 \
         --advertise-client-urls http://127.0.0.1:2379 --auth-token-ttl 2",
        janus_binary().display(),
        data.path().display()
    );
    let (ours, ours_log) = run_suite(&crate_dir, &target, &janus);
    assert!(
        ours.values().filter(|o| *o == "ok").count() >= 20,
        "the suite did not run against janus:\n{ours_log}"
    );
    let failed: Vec<&String> = ours
        .iter()
        .filter(|(_, o)| o.as_str() != "ok" && o.as_str() != "ignored")
        .map(|(n, _)| n)
        .collect();
    eprintln!(
        "etcd-client {version} on janus: {} passed, {} ignored, failed: {failed:?}",
        ours.values().filter(|o| *o == "ok").count(),
        ours.values().filter(|o| *o == "ignored").count(),
    );
    if failed.is_empty() {
        return;
    }
    let etcd = format!(
        "etcd --data-dir '{}/etcd' --listen-client-urls http://127.0.0.1:2379 \
         --advertise-client-urls http://127.0.0.1:2379 --auth-token-ttl 2",
        data.path().display()
    );
    let (theirs, theirs_log) = run_suite(&crate_dir, &target, &etcd);
    let only_janus: Vec<&&String> = failed
        .iter()
        .filter(|n| theirs.get(n.as_str()).is_some_and(|o| o == "ok"))
        .collect();
    assert!(
        only_janus.is_empty(),
        "tests that pass on etcd 3.4 fail on janus: {only_janus:?}\njanus run:\n{ours_log}\netcd run:\n{theirs_log}"
    );
    assert!(
        failed.iter().all(|n| theirs.contains_key(n.as_str())),
        "the etcd run did not report every test:\n{theirs_log}"
    );
}
