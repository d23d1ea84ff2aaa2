//! Simple tokens through the JSON gateway (`Authorization` header): a
//! token works while used, a malformed or expired one gets etcd's
//! `invalid auth token` (HTTP 401), and nothing else is disturbed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::etcdctl_ok;
use janus_conformance::harness::Janus;

/// POSTs `body` to `url` with an optional `Authorization` token; returns
/// (HTTP status, body).
fn post(url: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", url, "-d", body]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: {t}")]);
    }
    let out = cmd.output().expect("curl is needed for the gateway tests");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn tokens_expire_unused_and_bad_tokens_are_refused() {
    let j = Janus::start_with(&["--auth-token-ttl", "2"]);
    let ep = j.etcd_endpoint();
    etcdctl_ok(&ep, &["user", "add", "root:pw"]);
    etcdctl_ok(&ep, &["auth", "enable"]);
    let (code, body) = post(
        &format!("{ep}/v3/auth/authenticate"),
        r#"{"name":"root","password":"pw"}"#,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let token = v["token"].as_str().expect("token").to_string();
    let put = format!("{ep}/v3/kv/put");
    let kv = r#"{"key":"YQ==","value":"MQ=="}"#;
    // Used within its TTL, the token lives on.
    for _ in 0..3 {
        let (code, body) = post(&put, kv, Some(&token));
        assert_eq!(code, 200, "{body}");
        std::thread::sleep(Duration::from_millis(700));
    }
    for bad in ["garbage", "a.b.c", "xxxxxxxxxxxxxxxx.999999"] {
        let (code, body) = post(&put, kv, Some(bad));
        assert_eq!(code, 401, "{bad}: {body}");
        assert!(body.contains("etcdserver: invalid auth token"), "{body}");
    }
    let (code, body) = post(&put, kv, None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("etcdserver: user name is empty"), "{body}");
    std::thread::sleep(Duration::from_millis(3200));
    let (code, body) = post(&put, kv, Some(&token));
    assert_eq!(code, 401, "expired token: {body}");
    assert!(body.contains("etcdserver: invalid auth token"), "{body}");
    assert_eq!(
        etcdctl_ok(&ep, &["--user=root:pw", "get", "a", "--print-value-only"]),
        "1\n"
    );
    // Maintenance that exposes or moves data needs the root role.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let snap = out_dir.path().join("snap.db");
    let snap = snap.to_string_lossy();
    let out = common::etcdctl(&ep, &["snapshot", "save", &snap], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etcdserver: user name is empty"), "{err}");
    etcdctl_ok(&ep, &["--user=root:pw", "snapshot", "save", &snap]);
}

/// `--auth-token jwt,...`: signed tokens with the auth revision in them.
#[test]
fn jwt_tokens_are_signed_carry_the_auth_revision_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("ES256 key");
    let (pub_file, priv_file) = (dir.path().join("jwt.pub"), dir.path().join("jwt.key"));
    std::fs::write(&pub_file, key.public_key_pem()).expect("write");
    std::fs::write(&priv_file, key.serialize_pem()).expect("write");
    let opt = format!(
        "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=3s",
        pub_file.display(),
        priv_file.display()
    );
    let j = Janus::start_with(&["--auth-token", &opt]);
    let ep = j.etcd_endpoint();
    etcdctl_ok(&ep, &["user", "add", "root:pw"]);
    etcdctl_ok(&ep, &["auth", "enable"]);
    assert_eq!(
        etcdctl_ok(&ep, &["--user=root:pw", "put", "a", "1"]),
        "OK\n"
    );

    let (code, body) = post(
        &format!("{ep}/v3/auth/authenticate"),
        r#"{"name":"root","password":"pw"}"#,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let token = v["token"].as_str().expect("token").to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let put = format!("{ep}/v3/kv/put");
    let kv = r#"{"key":"YQ==","value":"Mg=="}"#;
    let (code, body) = post(&put, kv, Some(&token));
    assert_eq!(code, 200, "{body}");
    // One signature character changed (in the middle: all its bits count).
    let at = token.rfind('.').expect("signature") + 5;
    let mut forged = token.clone().into_bytes();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let (code, body) = post(&put, kv, Some(&forged));
    assert_eq!(code, 401, "forged: {body}");
    assert!(body.contains("etcdserver: invalid auth token"), "{body}");
    // An auth change makes the token's revision old.
    etcdctl_ok(&ep, &["--user=root:pw", "role", "add", "r"]);
    let (code, body) = post(&put, kv, Some(&token));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("etcdserver: revision of auth store is old"),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(4000));
    let (code, body) = post(&put, kv, Some(&token));
    assert_eq!(code, 401, "expired: {body}");
}
