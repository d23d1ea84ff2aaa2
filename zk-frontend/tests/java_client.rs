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
    compile_file(dir, "AuthIds.java")
}

fn compile_file(dir: &Path, file: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/java")
        .join(file);
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

/// whoAmI of the Java client over TLS with the client certificate `name`.
fn x509_ids(classes: &Path, certs: &Path, name: &str, addr: std::net::SocketAddr) -> String {
    let p = |f: &str| certs.join(f).display().to_string();
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{}", classpath(), classes.display()))
        .arg("-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty")
        .arg("-Dzookeeper.client.secure=true")
        .arg(format!(
            "-Dzookeeper.ssl.keyStore.location={}",
            p(&format!("{name}.both.pem"))
        ))
        .arg("-Dzookeeper.ssl.keyStore.type=PEM")
        .arg(format!(
            "-Dzookeeper.ssl.trustStore.location={}",
            p("ca.pem")
        ))
        .arg("-Dzookeeper.ssl.trustStore.type=PEM")
        .arg("X509Ids")
        .arg(addr.to_string())
        .output()
        .expect("java");
    assert!(
        out.status.success(),
        "X509Ids failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The x509 scheme: whoAmI of a client certificate and of the superuser
/// subject, over TLS, on ZooKeeper 3.8's secure port (with its
/// X509AuthenticationProvider) and on janus's.
#[test]
fn java_client_x509_who_am_i_matches_zookeeper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    common::write_x509_certs(&certs, &["client", "admin"]);
    let classes = compile_file(dir.path(), "X509Ids.java");
    let p = |f: &str| certs.join(f).display().to_string();
    let super_user = "CN=admin,O=acme";

    let zk_secure =
        std::net::SocketAddr::from(([127, 0, 0, 1], janus_conformance::harness::free_port()));
    let cfg = [
        format!("secureClientPort={}", zk_secure.port()),
        "secureClientPortAddress=127.0.0.1".to_string(),
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".to_string(),
        "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider".to_string(),
        format!("ssl.keyStore.location={}", p("server.both.pem")),
        "ssl.keyStore.type=PEM".to_string(),
        format!("ssl.trustStore.location={}", p("ca.pem")),
        "ssl.trustStore.type=PEM".to_string(),
    ];
    let cfg: Vec<&str> = cfg.iter().map(String::as_str).collect();
    let jvm = format!("-Dzookeeper.X509AuthenticationProvider.superUser={super_user}");
    let reference = {
        let zk = RealZk::start_with_jvm(&cfg, &[&jvm])
            .expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
        // The plain port answering does not mean the secure one is up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(zk_secure).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "ZooKeeper's secure port never opened:\n{}",
                zk.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        (
            x509_ids(&classes, &certs, "client", zk_secure),
            x509_ids(&classes, &certs, "admin", zk_secure),
        )
    };
    let (j, secure) = common::janus_with_client_certs(&certs, super_user);
    let ours = (
        x509_ids(&classes, &certs, "client", secure),
        x509_ids(&classes, &certs, "admin", secure),
    );
    assert!(
        reference.0.contains("x509=CN=client,O=acme")
            && reference.1.contains("super= ")
            && reference.1.contains("x509=CN=admin,O=acme"),
        "unexpected reference output: {reference:?}"
    );
    assert_eq!(
        ours,
        reference,
        "janus (left) differs from ZooKeeper 3.8; janus log:\n{}",
        j.log()
    );
}

/// A JAAS file with the server's users and the client's login, as
/// ZooKeeper's SASL guide writes them, and a login with a wrong password.
const JAAS: &str = "Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_alice=\"secret\";
};
Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username=\"alice\"
    password=\"secret\";
};
Wrong {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username=\"alice\"
    password=\"not-the-secret\";
};
";

fn sasl_run(classes: &Path, jaas: &Path, addr: std::net::SocketAddr) -> String {
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{}", classpath(), classes.display()))
        .arg(format!(
            "-Djava.security.auth.login.config={}",
            jaas.display()
        ))
        .arg("SaslDigest")
        .arg(addr.to_string())
        .output()
        .expect("java");
    assert!(
        out.status.success(),
        "SaslDigest failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Java client's SASL DIGEST-MD5 login creates a node whose `sasl`
/// ACL only that user passes; a client without SASL gets NOAUTH on it, a
/// wrong password gets AuthFailed; on ZooKeeper 3.8
/// (SASLAuthenticationProvider) and janus (`--zk-jaas-config`) alike.
#[test]
fn java_client_sasl_digest_login_matches_zookeeper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jaas = dir.path().join("jaas.conf");
    std::fs::write(&jaas, JAAS).expect("write jaas");
    let classes = compile_file(dir.path(), "SaslDigest.java");
    let login = format!("-Djava.security.auth.login.config={}", jaas.display());
    let reference = {
        let zk = RealZk::start_with_jvm(
            &["authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"],
            &[&login],
        )
        .expect("real ZooKeeper 3.8 is needed: apt-get install zookeeper");
        sasl_run(&classes, &jaas, zk.addr())
    };
    let j = Janus::start_with(&["--zk-jaas-config", &jaas.display().to_string()]);
    let ours = sasl_run(&classes, &jaas, j.zk_addr());
    assert!(
        reference.starts_with("owner for alice ids sasl=alice")
            && reference.contains("anon NOAUTH")
            && reference.contains("wrong password")
            && reference.trim_end().ends_with("AuthFailed"),
        "unexpected reference output:\n{reference}"
    );
    assert_eq!(
        ours,
        reference,
        "janus (left) differs from ZooKeeper 3.8; janus log:\n{}",
        j.log()
    );
}
