//! TLS between members and certificate reload, with certificates made here
//! (rcgen): a three-member cluster over `https://` peer URLs with
//! `--peer-client-cert-auth` replicates; a fourth member whose certificate
//! comes from another CA is added but never receives a byte of the store,
//! and joins once it is given a certificate from the cluster's CA. The
//! client port's certificate is replaced on disk while janus runs and new
//! connections get the new one, while clients connected before the rotation
//! (etcd client port and secure ZooKeeper port) keep working.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::certs::{ca, leaf};
use janus_conformance::harness::{free_port, janus_binary, Janus};

struct Member {
    name: String,
    client: u16,
    zk: u16,
    peer: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Member {
    fn new(dir: &Path, name: &str) -> Member {
        Member {
            name: name.into(),
            client: free_port(),
            zk: free_port(),
            peer: free_port(),
            child: None,
            log: dir.join(format!("{name}.log")),
        }
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn spawn(&mut self, dir: &Path, cluster: &str, state: &str, ca: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let log2 = log.try_clone().expect("log");
        let (cert, key) = (
            dir.join(format!("{}.pem", self.name)),
            dir.join(format!("{}.key", self.name)),
        );
        let child = Command::new(janus_binary())
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(dir.join(format!("{}.data", self.name)))
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", cluster])
            .args(["--initial-cluster-state", state])
            .args(["--listen-zk-addr", &format!("127.0.0.1:{}", self.zk)])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .arg("--peer-cert-file")
            .arg(cert)
            .arg("--peer-key-file")
            .arg(key)
            .arg("--peer-trusted-ca-file")
            .arg(ca)
            .arg("--peer-client-cert-auth")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn janus");
        self.child = Some(child);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A serializable (local) read of `key` on one member.
async fn local_get(endpoint: &str, key: &str) -> Option<String> {
    let mut c = etcd_client::Client::connect([endpoint], None).await.ok()?;
    let r = c
        .get(
            key,
            Some(etcd_client::GetOptions::new().with_serializable()),
        )
        .await
        .ok()?;
    r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

async fn wait_value(m: &Member, key: &str, want: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if local_get(&m.endpoint(), key).await.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_tls_and_refuse_a_certificate_from_another_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let good = ca(d, "cluster-ca");
    let other = ca(d, "other-ca");
    let mut ms: Vec<Member> = (0..3).map(|i| Member::new(d, &format!("m{i}"))).collect();
    for m in &ms {
        leaf(d, &good, &m.name);
    }
    let cluster = ms
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut ms {
        m.spawn(d, &cluster, "new", &good.pem);
    }

    // Replication over TLS: a write on m0 reaches m2's local store.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let put = async {
            let mut c = etcd_client::Client::connect([ms[0].endpoint()], None).await?;
            c.put("/tls/k", "v1", None).await
        };
        if put.await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no leader over TLS peers; m0 log:\n{}",
            ms[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        wait_value(&ms[2], "/tls/k", "v1", 20).await,
        "m2 did not replicate; log:\n{}",
        ms[2].log_text()
    );

    // A fourth member whose certificate another CA signed: added, started,
    // and never caught up, because the members refuse its handshakes.
    let mut m3 = Member::new(d, "m3");
    leaf(d, &other, "m3");
    let mut c = etcd_client::Client::connect([ms[0].endpoint()], None)
        .await
        .expect("connect m0");
    c.member_add(
        [m3.peer_url()],
        Some(etcd_client::MemberAddOptions::new().with_is_learner()),
    )
    .await
    .expect("member add");
    let cluster4 = format!("{cluster},m3={}", m3.peer_url());
    m3.spawn(d, &cluster4, "existing", &good.pem);
    assert!(
        !wait_value(&m3, "/tls/k", "v1", 6).await,
        "a member with a certificate from another CA received the store"
    );
    let refused = ms
        .iter()
        .any(|m| m.log_text().contains("peer TLS handshake refused"));
    assert!(
        refused,
        "no member logged a refused handshake; m0 log:\n{}",
        ms[0].log_text()
    );

    // The same member with a certificate from the cluster's CA catches up.
    m3.kill();
    leaf(d, &good, "m3");
    m3.spawn(d, &cluster4, "existing", &good.pem);
    assert!(
        wait_value(&m3, "/tls/k", "v1", 30).await,
        "m3 did not catch up with a good certificate; log:\n{}",
        m3.log_text()
    );
}

fn etcdctl_get(endpoint: &str, cacert: &Path) -> Result<String, String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "3s"])
        .arg("--cacert")
        .arg(cacert)
        .args(["get", "/reload"])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn client_certificates_are_reloaded_without_a_restart() {
    if Command::new("etcdctl").arg("version").output().is_err() {
        eprintln!("skipping: etcdctl is not installed (apt-get install etcd-client)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let first = ca(d, "first-ca");
    let second = ca(d, "second-ca");
    let (cert, key) = leaf(d, &first, "server");
    let janus = Janus::start_https(&[
        "--cert-file",
        &cert.display().to_string(),
        "--key-file",
        &key.display().to_string(),
    ]);
    let ep = janus.etcd_endpoint();
    etcdctl_get(&ep, &first.pem).expect("the first certificate serves");
    assert!(
        etcdctl_get(&ep, &second.pem).is_err(),
        "second CA trusted before rotation"
    );

    // Rotate: new files in place, no restart.
    leaf(d, &second, "server");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if etcdctl_get(&ep, &second.pem).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not picked up; log:\n{}",
            janus.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        etcdctl_get(&ep, &first.pem).is_err(),
        "the old certificate is still served after rotation"
    );
    assert!(janus.log().contains("TLS certificates reloaded"));
}

/// Clients connected before a rotation keep working; new connections on
/// the etcd client port and the secure ZooKeeper port get the new
/// certificate, and clients trusting only the new CA connect
/// (`tests/py/cert_rotation.py` drives both ports).
#[test]
fn connected_clients_survive_a_certificate_rotation_on_both_ports() {
    use std::io::{BufRead, BufReader, Write};
    let python = "/usr/bin/python3";
    if !Command::new(python)
        .args(["-c", "import kazoo"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: kazoo is not installed (apt-get install python3-kazoo)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let first = ca(d, "first-ca");
    let second = ca(d, "second-ca");
    let (cert, key) = leaf(d, &first, "server");
    let secure = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let janus = Janus::start_https(&[
        "--cert-file",
        &cert.display().to_string(),
        "--key-file",
        &key.display().to_string(),
        "--listen-zk-secure-addr",
        &secure.to_string(),
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/cert_rotation.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(janus.etcd_addr().to_string())
        .arg(secure.to_string())
        .arg(d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    if line.trim() == "READY" {
        leaf(d, &second, "server");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"rotated\n").expect("write");
        drop(stdin);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success() && rest.contains("all ok"),
        "rotation with connected clients failed\nstdout:\n{line}{rest}\nstderr:\n{}\njanus log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        janus.log()
    );
}
