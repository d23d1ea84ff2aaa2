//! Bad security input against janus and the reference servers, with the
//! same outcome required of both: malformed and expired etcd auth tokens
//! get etcd's gRPC code and message; garbage instead of a TLS ClientHello
//! and a client certificate from another CA, on the etcd client port, the
//! peer port and the secure ZooKeeper port, are refused; and after each
//! bad input the server still serves the clients connected before and new
//! ones.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::certs::{ca, leaf};
use janus_conformance::harness::{free_port, Janus};
use janus_conformance::reference::{RealEtcd, RealZk};

/// POSTs `body` to the gateway path `path` of `ep` with an optional
/// `Authorization` header; returns (HTTP status, JSON body).
fn post(ep: &str, path: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    post_within(ep, path, body, token, 10)
}

/// [`post`] giving up after `secs` (HTTP status 0: no answer).
fn post_within(
    ep: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
    secs: u32,
) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        &secs.to_string(),
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .arg(format!("{ep}{path}"))
    .args(["-d", body]);
    match token {
        // curl drops a header given with an empty value; `Name;` sends it.
        Some("") => {
            cmd.args(["-H", "Authorization;"]);
        }
        Some(t) => {
            cmd.args(["-H", &format!("Authorization: {t}")]);
        }
        None => {}
    }
    let out = cmd.output().expect("curl is needed for the gateway tests");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()));
    (code.trim().parse().unwrap_or(0), json)
}

fn etcdctl<S: AsRef<std::ffi::OsStr>>(ep: &str, args: &[S]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .args(args)
        .output()
        .expect("etcdctl is needed: apt-get install etcd-client")
}

fn etcdctl_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(ep: &str, args: &[S]) -> String {
    let out = etcdctl(ep, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} on {ep}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Adds `root` (password `pw`) and enables auth on `ep`.
fn enable_root_auth(ep: &str) {
    etcdctl_ok(ep, &["user", "add", "root:pw"]);
    etcdctl_ok(ep, &["auth", "enable"]);
}

/// A fresh token of `root` through the JSON gateway.
fn root_token(ep: &str) -> String {
    let (code, v) = post(
        ep,
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"pw"}"#,
        None,
    );
    assert_eq!(code, 200, "{v}");
    v["token"].as_str().expect("token").to_string()
}

/// What each bad token gets on one server: the gateway's HTTP status and
/// JSON error (gRPC code and etcd message), and whether the server still
/// serves a client that logged in before and one that logs in after.
/// Second: what a simple token naming a raft index far ahead gets within
/// 3s (etcd waits for that index to be applied, with no deadline).
fn token_outcomes(ep: &str) -> (Vec<String>, String) {
    enable_root_auth(ep);
    let login = || root_token(ep);
    let kv = r#"{"key":"YQ==","value":"MQ=="}"#;
    let range = r#"{"key":"YQ=="}"#;
    let stale = login();
    let live = login();
    let mut out = Vec::new();
    let check = |label: &str, token: Option<&str>, out: &mut Vec<String>| {
        let (code, v) = post(ep, "/v3/kv/put", kv, token);
        out.push(format!("{label}: HTTP {code} {v}"));
        // A client that logged in before (its token kept in use) and a
        // new login both still work.
        let (code, v) = post(ep, "/v3/kv/range", range, Some(&live));
        assert_eq!(code, 200, "{ep}: after {label}, the logged-in client: {v}");
        let fresh = login();
        let (code, v) = post(ep, "/v3/kv/range", range, Some(&fresh));
        assert_eq!(code, 200, "{ep}: after {label}, a new client: {v}");
    };
    let jwt_shaped = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6InJvb3QifQ.c2lnbmF0dXJl";
    check("garbage token", Some("garbage"), &mut out);
    check("empty token", Some(""), &mut out);
    check("no token", None, &mut out);
    check("JWT with a bad signature", Some(jwt_shaped), &mut out);
    check(
        "simple token with another index",
        Some(&format!("{}.1", stale.split('.').next().unwrap_or(""))),
        &mut out,
    );
    check(
        "simple token without an index",
        Some(stale.split('.').next().unwrap_or("")),
        &mut out,
    );
    // The simple token's TTL is 5s (--auth-token-ttl 5), refreshed by use:
    // `stale` was last used at login.
    std::thread::sleep(Duration::from_secs(8));
    let live = login();
    let (code, v) = post(ep, "/v3/kv/put", kv, Some(&stale));
    out.push(format!("expired token: HTTP {code} {v}"));
    let (code, v) = post(ep, "/v3/kv/range", range, Some(&live));
    assert_eq!(code, 200, "after an expired token, a new client: {v}");

    let ahead = format!("{}.99999999", live.split('.').next().unwrap_or(""));
    let (code, v) = post_within(ep, "/v3/kv/put", kv, Some(&ahead), 3);
    let future = format!("token from index 99999999: HTTP {code} {v}");
    let fresh = login();
    let (code, v) = post(ep, "/v3/kv/range", range, Some(&fresh));
    assert_eq!(
        code, 200,
        "after a token from the future, a new client: {v}"
    );
    (out, future)
}

#[test]
fn malformed_and_expired_tokens_get_etcds_errors() {
    let (reference, ref_future) = {
        let etcd = RealEtcd::start_with(None, &["--auth-token-ttl", "5"])
            .expect("real etcd 3.4 is needed: apt-get install etcd-server");
        token_outcomes(&etcd.endpoint())
    };
    let j = Janus::start_with(&["--auth-token-ttl", "5"]);
    let (ours, our_future) = token_outcomes(&j.etcd_endpoint());
    eprintln!(
        "reference:\n{}\n{ref_future}\njanus:\n{}\n{our_future}",
        reference.join("\n"),
        ours.join("\n")
    );
    // Where janus differs on purpose: etcd holds a request whose simple
    // token names an index it has not applied until it has (forever, for
    // a forged one); janus waits for one read barrier, then refuses.
    assert!(ref_future.contains("HTTP 0"), "{ref_future}");
    assert!(
        our_future.contains("HTTP 401") && our_future.contains("etcdserver: invalid auth token"),
        "{our_future}"
    );
    assert!(
        reference
            .iter()
            .all(|l| l.contains("HTTP 401") || l.contains("HTTP 400")),
        "unexpected reference outcome:\n{}",
        reference.join("\n")
    );
    assert_eq!(
        ours,
        reference,
        "janus (left) differs from etcd 3.4; janus log:\n{}",
        j.log()
    );
}

/// [`token_outcomes`] for JWTs (`--auth-token jwt,...,ttl=8s`): one with a
/// changed signature character, one whose header names no algorithm
/// (`alg: none`, unsigned), garbage, and an expired one.
fn jwt_outcomes(ep: &str) -> Vec<String> {
    enable_root_auth(ep);
    let login = || root_token(ep);
    let kv = r#"{"key":"YQ==","value":"MQ=="}"#;
    let token = login();
    let issued = Instant::now();
    // One signature character changed (in the middle: all its bits count).
    let at = token.rfind('.').expect("signature") + 5;
    let mut forged = token.clone().into_bytes();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let payload = token.split('.').nth(1).expect("payload");
    // base64url of {"alg":"none","typ":"JWT"}
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let mut out = Vec::new();
    for (label, bad) in [
        ("JWT with a changed signature", forged.as_str()),
        ("unsigned JWT (alg none)", unsigned.as_str()),
        ("garbage token", "garbage"),
    ] {
        let (code, v) = post(ep, "/v3/kv/put", kv, Some(bad));
        out.push(format!("{label}: HTTP {code} {v}"));
        let (code, v) = post(ep, "/v3/kv/put", kv, Some(&token));
        assert_eq!(code, 200, "{ep}: after {label}, the logged-in client: {v}");
        let (code, v) = post(ep, "/v3/kv/put", kv, Some(&login()));
        assert_eq!(code, 200, "{ep}: after {label}, a new client: {v}");
    }
    // ttl=8s: long enough for the checks above on a loaded machine.
    std::thread::sleep((issued + Duration::from_secs(9)).saturating_duration_since(Instant::now()));
    let (code, v) = post(ep, "/v3/kv/put", kv, Some(&token));
    out.push(format!("expired JWT: HTTP {code} {v}"));
    let (code, v) = post(ep, "/v3/kv/put", kv, Some(&login()));
    assert_eq!(code, 200, "{ep}: after an expired JWT, a new client: {v}");
    out
}

#[test]
fn forged_and_expired_jwts_get_etcds_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("ES256 key");
    let (pub_file, priv_file) = (dir.path().join("jwt.pub"), dir.path().join("jwt.key"));
    std::fs::write(&pub_file, key.public_key_pem()).expect("write");
    std::fs::write(&priv_file, key.serialize_pem()).expect("write");
    let opt = format!(
        "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=8s",
        pub_file.display(),
        priv_file.display()
    );
    let reference = {
        let etcd = RealEtcd::start_with(None, &["--auth-token", &opt])
            .expect("real etcd 3.4 is needed: apt-get install etcd-server");
        jwt_outcomes(&etcd.endpoint())
    };
    let j = Janus::start_with(&["--auth-token", &opt]);
    let ours = jwt_outcomes(&j.etcd_endpoint());
    eprintln!(
        "reference:\n{}\njanus:\n{}",
        reference.join("\n"),
        ours.join("\n")
    );
    assert!(
        reference.iter().all(|l| l.contains("HTTP 401")),
        "unexpected reference outcome:\n{}",
        reference.join("\n")
    );
    assert_eq!(
        ours,
        reference,
        "janus (left) differs from etcd 3.4; janus log:\n{}",
        j.log()
    );
}

/// Writes the certificates `tests/py/bad_tls_input.py` uses: `ca.pem`,
/// `server`, `client` (signed by it), `stranger` (signed by another CA),
/// and `server.both.pem` (certificate and key in one file, for
/// ZooKeeper's PEM keystore).
fn write_certs(d: &Path) {
    let good = ca(d, "ca");
    let other = ca(d, "other-ca");
    let (srv, srv_key) = leaf(d, &good, "server");
    leaf(d, &good, "client");
    leaf(d, &other, "stranger");
    let both = format!(
        "{}{}",
        std::fs::read_to_string(&srv).expect("read cert"),
        std::fs::read_to_string(&srv_key).expect("read key")
    );
    std::fs::write(d.join("server.both.pem"), both).expect("write both");
}

/// etcd's TLS flags for the client and peer ports, with client
/// certificates required on both.
fn etcd_tls_flags(d: &Path) -> Vec<String> {
    let p = |f: &str| d.join(f).display().to_string();
    vec![
        format!("--cert-file={}", p("server.pem")),
        format!("--key-file={}", p("server.key")),
        format!("--trusted-ca-file={}", p("ca.pem")),
        "--client-cert-auth".into(),
        format!("--peer-cert-file={}", p("server.pem")),
        format!("--peer-key-file={}", p("server.key")),
        format!("--peer-trusted-ca-file={}", p("ca.pem")),
        "--peer-client-cert-auth".into(),
    ]
}

/// Waits until etcdctl with the client certificate gets an answer.
fn wait_etcd(ep: &str, d: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if etcdctl(ep, &tls_args(d, "client", &["endpoint", "health"]))
            .status
            .success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{ep} never became healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tls_args(d: &Path, who: &str, rest: &[&str]) -> Vec<String> {
    let p = |f: &str| d.join(f).display().to_string();
    let mut v = vec![
        format!("--cacert={}", p("ca.pem")),
        format!("--cert={}", p(&format!("{who}.pem"))),
        format!("--key={}", p(&format!("{who}.key"))),
        "--dial-timeout=2s".to_string(),
        "--command-timeout=3s".to_string(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// What etcdctl prints with a certificate from another CA (its `Error:`
/// line; the retry warnings before it carry timestamps).
fn etcdctl_foreign(ep: &str, d: &Path) -> String {
    let out = etcdctl(ep, &tls_args(d, "stranger", &["get", "k"]));
    assert!(!out.status.success(), "a certificate of another CA got in");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `tests/py/bad_tls_input.py` against one server set; returns its
/// `outcome` lines and its `detail` lines.
fn tls_outcomes(etcd: &str, peer: &str, zk: &str, d: &Path) -> (Vec<String>, Vec<String>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/bad_tls_input.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args([etcd, peer, zk])
        .arg(d)
        .output()
        .expect("python3 with kazoo is needed (apt-get install python3-kazoo)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "bad_tls_input.py against {etcd}, {peer}, {zk}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pick = |p: &str| {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(p))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    (pick("outcome "), pick("detail "))
}

#[test]
fn tls_garbage_and_foreign_certificates_are_refused_and_disturb_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_certs(d);
    let p = |f: &str| d.join(f).display().to_string();
    let flags = etcd_tls_flags(d);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    let (reference, ref_detail, ref_etcdctl) = {
        let etcd = RealEtcd::start_tls(&flags)
            .expect("real etcd 3.4 is needed: apt-get install etcd-server");
        let zk_secure = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = [
            format!("secureClientPort={}", zk_secure.port()),
            "secureClientPortAddress=127.0.0.1".to_string(),
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".to_string(),
            format!("ssl.keyStore.location={}", p("server.both.pem")),
            "ssl.keyStore.type=PEM".to_string(),
            format!("ssl.trustStore.location={}", p("ca.pem")),
            "ssl.trustStore.type=PEM".to_string(),
        ];
        let cfg: Vec<&str> = cfg.iter().map(String::as_str).collect();
        let zk = RealZk::start_with(&cfg)
            .expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(zk_secure).is_err() {
            assert!(
                Instant::now() < deadline,
                "ZooKeeper's secure port never opened:\n{}",
                zk.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_etcd(&etcd.endpoint(), d);
        let (o, det) = tls_outcomes(
            &etcd.addr().to_string(),
            &etcd.peer_addr().to_string(),
            &zk_secure.to_string(),
            d,
        );
        (o, det, etcdctl_foreign(&etcd.endpoint(), d))
    };

    let zk_secure = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut jflags = flags.clone();
    let zk_flags = [
        "--listen-zk-secure-addr".to_string(),
        zk_secure.to_string(),
        "--zk-cert-file".into(),
        p("server.pem"),
        "--zk-key-file".into(),
        p("server.key"),
        "--zk-trusted-ca-file".into(),
        p("ca.pem"),
        "--zk-client-cert-auth".into(),
    ];
    jflags.extend(zk_flags.iter().map(String::as_str));
    let j = Janus::start_tls(&jflags);
    wait_etcd(&j.etcd_endpoint(), d);
    let (ours, our_detail) = tls_outcomes(
        &j.etcd_addr().to_string(),
        &j.peer_addr().to_string(),
        &zk_secure.to_string(),
        d,
    );
    let our_etcdctl = etcdctl_foreign(&j.etcd_endpoint(), d);
    eprintln!(
        "reference:\n{}\n{}\netcdctl: {ref_etcdctl}\njanus:\n{}\n{}\netcdctl: {our_etcdctl}",
        reference.join("\n"),
        ref_detail.join("\n"),
        ours.join("\n"),
        our_detail.join("\n"),
    );
    assert!(
        reference
            .iter()
            .all(|l| l.ends_with(": closed, 0 bytes back") || l.ends_with(": refused")),
        "unexpected reference outcome:\n{}",
        reference.join("\n")
    );
    assert_eq!(ours, reference, "janus (left) differs from the references");
    assert_eq!(
        our_etcdctl, ref_etcdctl,
        "etcdctl with another CA's certificate"
    );
    // Still serving after all of it.
    let args = tls_args(d, "client", &["put", "after", "1"]);
    assert_eq!(etcdctl_ok(&j.etcd_endpoint(), &args), "OK\n");
}
