//! TLS on the etcd client port with certificates made here (rcgen):
//! etcdctl over `https://` with `--cacert/--cert/--key`, the gateway on the
//! same port, clients without a certificate or with one from another CA
//! refused under `--client-cert-auth`, a garbage handshake that disturbs
//! nothing, and the certificate's common name as the etcd user.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{error_lines, etcdctl, etcdctl_ok};
use janus_conformance::harness::Janus;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("ca key");
    let cert = p.self_signed(&key).expect("ca cert");
    Ca { cert, key }
}

/// Writes `<name>.pem` and `<name>.key` signed by `ca`; returns their paths.
fn leaf(dir: &Path, ca: &Ca, name: &str, cn: &str, client: bool) -> (PathBuf, PathBuf) {
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("leaf cert");
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn https_client_port_requires_and_verifies_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let good = ca("janus test ca");
    let other = ca("another ca");
    let ca_file = d.join("ca.pem");
    std::fs::write(&ca_file, good.cert.pem()).expect("write ca");
    let (srv, srv_key) = leaf(d, &good, "server", "localhost", false);
    let (root, root_key) = leaf(d, &good, "root", "root", true);
    let (nobody, nobody_key) = leaf(d, &good, "nobody", "nobody", true);
    let (stranger, stranger_key) = leaf(d, &other, "stranger", "root", true);

    let j = Janus::start_https(&[
        "--cert-file",
        &s(&srv),
        "--key-file",
        &s(&srv_key),
        "--trusted-ca-file",
        &s(&ca_file),
        "--client-cert-auth",
    ]);
    let ep = j.etcd_endpoint();
    assert!(ep.starts_with("https://"));
    let tls = |cert: &Path, key: &Path| {
        vec![
            format!("--cacert={}", s(&ca_file)),
            format!("--cert={}", s(cert)),
            format!("--key={}", s(key)),
        ]
    };
    let run = |creds: &[String], args: &[&str]| {
        let mut all: Vec<&str> = creds.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        etcdctl(&ep, &all, None)
    };
    let as_root = tls(&root, &root_key);
    let mut args: Vec<&str> = as_root.iter().map(String::as_str).collect();
    args.extend(["put", "k", "v"]);
    assert_eq!(etcdctl_ok(&ep, &args), "OK\n");
    let out = run(&as_root, &["get", "k"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k\nv\n");

    // No client certificate, or one from another CA: the handshake fails
    // and etcdctl never gets an answer.
    let no_cert = vec![
        format!("--cacert={}", s(&ca_file)),
        "--dial-timeout=2s".to_string(),
    ];
    let out = run(&no_cert, &["--command-timeout=3s", "get", "k"]);
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
    let mut foreign = tls(&stranger, &stranger_key);
    foreign.push("--dial-timeout=2s".into());
    let out = run(&foreign, &["--command-timeout=3s", "get", "k"]);
    assert!(!out.status.success(), "a certificate of another CA got in");

    // Garbage instead of a ClientHello disturbs nothing.
    let mut t = std::net::TcpStream::connect(j.etcd_addr()).expect("connect");
    let _ = t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage");
    drop(t);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        String::from_utf8_lossy(&run(&as_root, &["get", "k"]).stdout),
        "k\nv\n"
    );

    // The certificate's common name is the etcd user of token-less
    // requests once auth is on.
    for step in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "nobody:pw"][..],
        &["auth", "enable"][..],
    ] {
        let out = run(&as_root, step);
        assert!(
            out.status.success(),
            "{step:?}: {}",
            error_lines(&out.stderr)
        );
    }
    let out = run(&as_root, &["put", "k", "v2"]);
    assert!(out.status.success(), "{}", error_lines(&out.stderr));
    let out = run(&tls(&nobody, &nobody_key), &["get", "k"]);
    assert_eq!(
        error_lines(&out.stderr),
        "Error: etcdserver: permission denied"
    );
}

#[test]
fn auto_tls_serves_grpc_and_the_gateway_on_one_port() {
    let j = Janus::start_https(&["--auto-tls"]);
    let ep = j.etcd_endpoint();
    assert_eq!(
        etcdctl_ok(
            &ep,
            &[
                "--insecure-transport=false",
                "--insecure-skip-tls-verify",
                "put",
                "a",
                "1"
            ]
        ),
        "OK\n"
    );
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            &format!("{ep}/v3/kv/range"),
            "-d",
            r#"{"key":"YQ=="}"#,
        ])
        .output()
        .expect("curl is needed for the gateway check");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(r#""value":"MQ==""#),
        "gateway answered {body}"
    );
}
