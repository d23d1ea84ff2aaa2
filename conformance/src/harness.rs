//! Starting real `janus` processes for tests.
//!
//! Every integration test in the workspace goes through [`Janus::start`]: it
//! builds the `janus` binary once per test process (`cargo build -p janus`,
//! same target dir as the tests), picks free loopback ports, starts the
//! server with a fresh temporary data dir, waits until both client ports
//! accept connections, and kills the process on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running janus server owned by a test.
pub struct Janus {
    child: Option<Child>,
    dir: tempfile::TempDir,
    etcd: SocketAddr,
    zk: SocketAddr,
    peer: SocketAddr,
    extra: Vec<String>,
    bin: PathBuf,
    /// `http` or `https` for the etcd client URL.
    scheme: &'static str,
    /// `http` or `https` for the peer URL.
    peer_scheme: &'static str,
}

/// Runs `etcdctl` (API v3) against `endpoint` and returns its stdout;
/// a failure fails the test with etcdctl's stderr.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free port on 127.0.0.1, chosen below Linux's ephemeral range
/// (32768+) so that no outgoing connection of a running server can take it
/// between the check and the server's bind, and never handed out twice in
/// one test process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let port = rand::random::<u16>() % 22_000 + 10_000;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port below 32000");
}

/// Path of the `janus` binary next to the running test's target dir, built
/// on first use.
pub fn janus_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "janus", "--bin", "janus"])
            .current_dir(&root)
            .status()
            .expect("cannot run cargo build for the janus binary");
        assert!(status.success(), "building the janus binary failed");
        // Tests run as <target>/debug/deps/<test>; the binary is <target>/debug/janus.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary layout");
        let bin = profile_dir.join("janus");
        assert!(bin.exists(), "janus binary not found at {}", bin.display());
        bin
    })
}

impl Janus {
    /// Starts a single-member janus with default settings.
    pub fn start() -> Janus {
        Janus::start_with(&[])
    }

    /// Starts janus with extra command-line flags.
    pub fn start_with(extra: &[&str]) -> Janus {
        Janus::start_binary(janus_binary(), extra)
    }

    /// Starts janus with an `https://` client URL and extra flags (the
    /// TLS ones: `--cert-file`, `--auto-tls`, ...).
    pub fn start_https(extra: &[&str]) -> Janus {
        Janus::start_scheme(janus_binary(), "https", extra)
    }

    /// Starts janus with `https://` client and peer URLs and extra flags
    /// (`--cert-file`, `--peer-cert-file`, ...).
    pub fn start_tls(extra: &[&str]) -> Janus {
        let mut j = Janus::unstarted(janus_binary(), "https", extra);
        j.peer_scheme = "https";
        j.spawn();
        j
    }

    /// Starts the given `janus` binary (e.g. a release build, for the
    /// benchmark) with extra command-line flags.
    pub fn start_binary(bin: &Path, extra: &[&str]) -> Janus {
        Janus::start_scheme(bin, "http", extra)
    }

    fn start_scheme(bin: &Path, scheme: &'static str, extra: &[&str]) -> Janus {
        let mut j = Janus::unstarted(bin, scheme, extra);
        j.spawn();
        j
    }

    fn unstarted(bin: &Path, scheme: &'static str, extra: &[&str]) -> Janus {
        let dir = tempfile::tempdir().expect("tempdir");
        Janus {
            child: None,
            dir,
            etcd: SocketAddr::from(([127, 0, 0, 1], free_port())),
            zk: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            bin: bin.to_path_buf(),
            scheme,
            peer_scheme: "http",
        }
    }

    fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("janus.log")).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(self.etcd_endpoint())
            .arg("--advertise-client-urls")
            .arg(self.etcd_endpoint())
            .arg("--listen-peer-urls")
            .arg(format!("{}://{}", self.peer_scheme, self.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("{}://{}", self.peer_scheme, self.peer))
            .arg("--listen-zk-addr")
            .arg(self.zk.to_string())
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn janus");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("janus exited early with {status}; log:\n{}", self.log());
            }
            let up =
                |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok();
            if up(&self.etcd) && up(&self.zk) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "janus did not start in 30s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://`) of the etcd endpoint.
    pub fn etcd_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.etcd)
    }

    pub fn etcd_addr(&self) -> SocketAddr {
        self.etcd
    }

    /// `127.0.0.1:PORT` of the peer (raft) listener.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// `127.0.0.1:PORT` of the ZooKeeper endpoint.
    pub fn zk_addr(&self) -> SocketAddr {
        self.zk
    }

    /// An `etcd-client` connected to the etcd endpoint (panics on failure:
    /// for tests).
    pub async fn etcd_client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.etcd_endpoint()], None)
            .await
            .expect("etcd connect")
    }

    /// A `zookeeper-client` session (10 s timeout) on the ZooKeeper endpoint
    /// (panics on failure: for tests).
    pub async fn zk_client(&self) -> zookeeper_client::Client {
        zookeeper_client::Client::connector()
            .session_timeout(Duration::from_secs(10))
            .connect(&self.zk.to_string())
            .await
            .expect("zk connect")
    }

    /// Process id of the running server (None after [`Janus::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The member's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    /// SIGKILLs the server (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.kill();
    }
}
