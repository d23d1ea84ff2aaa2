//! Starting the real reference servers: etcd 3.4 (Debian `etcd-server`,
//! `/usr/bin/etcd`) and ZooKeeper 3.8 (Debian `zookeeper`, the jars in
//! `/usr/share/java`).
//!
//! Both start on free loopback ports with a fresh temporary data dir, with
//! the same durability janus has (every acknowledged write fsynced: etcd's
//! default, ZooKeeper's `forceSync=yes`), wait until their client port
//! answers, and are SIGKILLed on drop. [`RealEtcd::available`] /
//! [`RealZk::available`] tell whether the binaries are installed, so a test
//! can skip (loudly) where they are not.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

/// Where Debian's `etcd-server` puts the etcd binary (override with
/// `JANUS_REF_ETCD`).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// Where Debian's `zookeeper` puts the server jar; its manifest's
/// Class-Path names every dependency (override the directory with
/// `JANUS_REF_ZK_JARS`).
pub const ZK_JAR_DIR: &str = "/usr/share/java";

/// Errors starting a reference server.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("reference server not installed: {0}")]
    NotInstalled(String),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} exited early with {status}; log:\n{log}")]
    Exited {
        what: &'static str,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{what} did not answer on {addr} within {secs}s; log:\n{log}")]
    Timeout {
        what: &'static str,
        addr: SocketAddr,
        secs: u64,
        log: String,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A child process with a data dir and a log file, killed on drop.
struct Proc {
    what: &'static str,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Proc {
    fn spawn(
        what: &'static str,
        dir: tempfile::TempDir,
        cmd: &mut Command,
    ) -> Result<Proc, RefError> {
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let log2 = log.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|source| RefError::Spawn { what, source })?;
        Ok(Proc {
            what,
            child: Some(child),
            dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits until `addr` accepts TCP connections and `ready` says yes.
    fn wait_ready(
        &mut self,
        addr: SocketAddr,
        secs: u64,
        ready: impl Fn() -> bool,
    ) -> Result<(), RefError> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(RefError::Exited {
                        what: self.what,
                        status,
                        log: self.log(),
                    });
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() && ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RefError::Timeout {
                    what: self.what,
                    addr,
                    secs,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `cmd` again in the same dir (after [`Proc::kill`]), its
    /// output appended to the same log.
    fn respawn(&mut self, cmd: &mut Command) -> Result<(), RefError> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("server.log"))?;
        let log2 = log.try_clone()?;
        let what = self.what;
        self.child = Some(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                .spawn()
                .map_err(|source| RefError::Spawn { what, source })?,
        );
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real single-member etcd 3.4 on free loopback ports.
pub struct RealEtcd {
    proc: Proc,
    client: SocketAddr,
    peer: SocketAddr,
    scheme: &'static str,
}

impl RealEtcd {
    fn binary() -> PathBuf {
        std::env::var_os("JANUS_REF_ETCD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(ETCD_BIN))
    }

    /// Whether the etcd binary is installed.
    pub fn available() -> bool {
        Self::binary().exists()
    }

    /// Starts a fresh etcd (fsync on: etcd's default; `--unsafe-no-fsync`
    /// is never passed).
    pub fn start() -> Result<RealEtcd, RefError> {
        Self::start_from(None)
    }

    /// Starts an etcd whose data dir `etcdctl snapshot restore` wrote from
    /// `snapshot` first (`None`: a fresh one).
    pub fn start_from(snapshot: Option<&std::path::Path>) -> Result<RealEtcd, RefError> {
        Self::start_with(snapshot, &[])
    }

    /// [`RealEtcd::start_from`] with `extra` flags after the usual ones.
    pub fn start_with(
        snapshot: Option<&std::path::Path>,
        extra: &[&str],
    ) -> Result<RealEtcd, RefError> {
        Self::launch(snapshot, "http", extra)
    }

    /// A fresh etcd with `https://` client and peer URLs; `extra` carries
    /// the certificate flags (`--cert-file`, `--peer-cert-file`, ...).
    /// Ready once both ports accept connections (its health endpoint
    /// needs the client's certificates, which the caller has).
    pub fn start_tls(extra: &[&str]) -> Result<RealEtcd, RefError> {
        Self::launch(None, "https", extra)
    }

    /// `127.0.0.1:PORT` of the peer port.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn launch(
        snapshot: Option<&std::path::Path>,
        scheme: &str,
        extra: &[&str],
    ) -> Result<RealEtcd, RefError> {
        let bin = Self::binary();
        if !bin.exists() {
            return Err(RefError::NotInstalled(format!(
                "{} (apt-get install etcd-server)",
                bin.display()
            )));
        }
        let dir = tempfile::Builder::new().prefix("ref-etcd").tempdir()?;
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let peer = SocketAddr::from(([127, 0, 0, 1], free_port()));
        if let Some(file) = snapshot {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg("snapshot")
                .arg("restore")
                .arg(file)
                .arg("--name")
                .arg("ref")
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--initial-cluster")
                .arg(format!("ref=http://{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://{peer}"))
                .output()?;
            if !out.status.success() {
                return Err(RefError::Io(std::io::Error::other(format!(
                    "etcdctl snapshot restore: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))));
            }
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("--name")
            .arg("ref")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(format!("{scheme}://{client}"))
            .arg("--advertise-client-urls")
            .arg(format!("{scheme}://{client}"))
            .arg("--listen-peer-urls")
            .arg(format!("{scheme}://{peer}"))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("{scheme}://{peer}"))
            .arg("--initial-cluster")
            .arg(format!("ref={scheme}://{peer}"))
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--log-level")
            .arg("warn")
            .arg("--logger")
            .arg("zap")
            .args(extra);
        let mut proc = Proc::spawn("etcd", dir, &mut cmd)?;
        if scheme == "http" {
            proc.wait_ready(client, 30, || http_get_ok(client, "/health"))?;
        } else {
            proc.wait_ready(client, 30, || {
                TcpStream::connect_timeout(&peer, Duration::from_millis(200)).is_ok()
            })?;
        }
        Ok(RealEtcd {
            proc,
            client,
            peer,
            scheme: if scheme == "http" { "http" } else { "https" },
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` from [`RealEtcd::start_tls`]),
    /// for etcd clients.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.client)
    }

    pub fn addr(&self) -> SocketAddr {
        self.client
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.proc.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// A real standalone ZooKeeper 3.8 on a free loopback port.
pub struct RealZk {
    proc: Proc,
    client: SocketAddr,
    /// Quorum and election ports of a one-server quorum
    /// ([`RealZk::start_reconfig`]).
    quorum: Option<(u16, u16)>,
    /// What starts it (for [`RealZk::restart`]).
    cfg_path: PathBuf,
    jvm: Vec<String>,
}

impl RealZk {
    fn jar_dir() -> PathBuf {
        std::env::var_os("JANUS_REF_ZK_JARS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(ZK_JAR_DIR))
    }

    fn java() -> PathBuf {
        std::env::var_os("JAVA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("java"))
    }

    /// Whether the ZooKeeper jar is installed (java is checked at start).
    pub fn available() -> bool {
        Self::jar_dir().join("zookeeper.jar").exists()
    }

    /// Starts a fresh standalone ZooKeeper with `forceSync=yes` (its default,
    /// written out), all four-letter words and extended types (TTL nodes)
    /// enabled, as janus serves them by default, and the admin server off.
    pub fn start() -> Result<RealZk, RefError> {
        Self::start_with(&[])
    }

    /// Starts ZooKeeper with extra `key=value` lines in zoo.cfg (later lines
    /// win, so these override the defaults).
    pub fn start_with(extra_cfg: &[&str]) -> Result<RealZk, RefError> {
        Self::start_with_jvm(extra_cfg, &[])
    }

    /// Starts ZooKeeper with extra zoo.cfg lines and extra JVM options
    /// (`-Dzookeeper....=...`: settings ZooKeeper reads only as system
    /// properties, such as `superDigest`).
    pub fn start_with_jvm(extra_cfg: &[&str], jvm: &[&str]) -> Result<RealZk, RefError> {
        Self::launch(extra_cfg, jvm, false)
    }

    /// Starts ZooKeeper as a quorum of one participant (server.1, with
    /// `QuorumPeerMain`) with `reconfigEnabled=true`,
    /// `standaloneEnabled=false` and a dynamic configuration file, so
    /// `reconfig` is served and `/zookeeper/config` holds the ensemble;
    /// `jvm` as in [`RealZk::start_with_jvm`] (a superDigest).
    pub fn start_reconfig(jvm: &[&str]) -> Result<RealZk, RefError> {
        Self::launch(&[], jvm, true)
    }

    /// Quorum and election ports of the server started by
    /// [`RealZk::start_reconfig`].
    pub fn quorum_ports(&self) -> Option<(u16, u16)> {
        self.quorum
    }

    fn launch(extra_cfg: &[&str], jvm: &[&str], quorum: bool) -> Result<RealZk, RefError> {
        let jars = Self::jar_dir();
        let main_jar = jars.join("zookeeper.jar");
        if !main_jar.exists() {
            return Err(RefError::NotInstalled(format!(
                "{} (apt-get install zookeeper)",
                main_jar.display()
            )));
        }
        let dir = tempfile::Builder::new().prefix("ref-zk").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cfg = format!(
            "tickTime=2000\ndataDir={}\n\
             forceSync=yes\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
             extendedTypesEnabled=true\nmaxClientCnxns=0\n",
            data.display(),
        );
        let ports = quorum.then(|| (free_port(), free_port()));
        match ports {
            None => cfg.push_str(&format!(
                "clientPort={}\nclientPortAddress=127.0.0.1\n",
                client.port()
            )),
            Some((q, e)) => {
                let dynamic = dir.path().join("zoo.cfg.dynamic");
                std::fs::write(
                    &dynamic,
                    format!(
                        "server.1=127.0.0.1:{q}:{e}:participant;127.0.0.1:{}\n",
                        client.port()
                    ),
                )?;
                std::fs::write(data.join("myid"), "1\n")?;
                cfg.push_str(&format!(
                    "initLimit=10\nsyncLimit=5\nreconfigEnabled=true\nstandaloneEnabled=false\ndynamicConfigFile={}\n",
                    dynamic.display()
                ));
            }
        }
        for line in extra_cfg {
            cfg.push_str(line);
            cfg.push('\n');
        }
        let cfg_path = dir.path().join("zoo.cfg");
        std::fs::write(&cfg_path, cfg)?;
        let jvm: Vec<String> = jvm.iter().map(|s| s.to_string()).collect();
        let mut cmd = Self::command(&cfg_path, &jvm, ports.is_some());
        let mut proc = Proc::spawn("zookeeper", dir, &mut cmd)?;
        Self::wait_serving(&mut proc, client)?;
        Ok(RealZk {
            proc,
            client,
            quorum: ports,
            cfg_path,
            jvm,
        })
    }

    /// SIGKILLs the server (if it runs) and starts it again on the same
    /// data dir and port.
    pub fn restart(&mut self) -> Result<(), RefError> {
        let mut cmd = Self::command(&self.cfg_path, &self.jvm, self.quorum.is_some());
        self.proc.respawn(&mut cmd)?;
        Self::wait_serving(&mut self.proc, self.client)
    }

    /// `ruok` says imok before the server serves; `srvr` names the mode
    /// only once it does.
    fn wait_serving(proc: &mut Proc, client: SocketAddr) -> Result<(), RefError> {
        proc.wait_ready(client, 60, || {
            four_letter(client, "srvr")
                .map(|s| s.contains("Mode:"))
                .unwrap_or(false)
        })
    }

    fn command(cfg_path: &Path, jvm: &[String], quorum: bool) -> Command {
        let jars = Self::jar_dir();
        let main_jar = jars.join("zookeeper.jar");
        // zookeeper.jar's manifest Class-Path lists its dependencies; only a
        // logging backend has to be added.
        let mut cp = main_jar.display().to_string();
        for extra in ["slf4j-simple.jar", "slf4j-nop.jar"] {
            let p = jars.join(extra);
            if p.exists() {
                cp.push(':');
                cp.push_str(&p.display().to_string());
                break;
            }
        }
        // Debian's manifest leaves out Netty's codec and transport jars,
        // which the Netty connection factory (the secure port) needs.
        for extra in [
            "netty-codec.jar",
            "netty-handler.jar",
            "netty-transport-native-unix-common.jar",
            "netty-transport-classes-epoll.jar",
        ] {
            let p = jars.join(extra);
            if p.exists() {
                cp.push(':');
                cp.push_str(&p.display().to_string());
            }
        }
        let mut cmd = Command::new(Self::java());
        cmd.arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg("-Xmx1g")
            .args(jvm)
            .arg("-cp")
            .arg(cp)
            .arg(if quorum {
                "org.apache.zookeeper.server.quorum.QuorumPeerMain"
            } else {
                "org.apache.zookeeper.server.ZooKeeperServerMain"
            })
            .arg(cfg_path);
        if let Some(dir) = cfg_path.parent() {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// `127.0.0.1:PORT` of the client port.
    pub fn addr(&self) -> SocketAddr {
        self.client
    }

    /// `127.0.0.1:PORT`, for ZooKeeper clients.
    pub fn connect_string(&self) -> String {
        self.client.to_string()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.proc.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// A real etcd 3.4 cluster of several members on loopback, for the
/// three-member benchmarks: same flags and durability as [`RealEtcd`].
pub struct RealEtcdCluster {
    procs: Vec<Proc>,
    clients: Vec<SocketAddr>,
}

impl RealEtcdCluster {
    /// Starts `n` members bootstrapping a new cluster and waits until each
    /// reports itself healthy (which needs a leader).
    pub fn start(n: usize) -> Result<RealEtcdCluster, RefError> {
        let bin = RealEtcd::binary();
        if !bin.exists() {
            return Err(RefError::NotInstalled(format!(
                "{} (apt-get install etcd-server)",
                bin.display()
            )));
        }
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let clients: Vec<SocketAddr> = (0..n).map(|_| addr()).collect();
        let peers: Vec<SocketAddr> = (0..n).map(|_| addr()).collect();
        let initial = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("ref{i}=http://{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Vec::new();
        for i in 0..n {
            let dir = tempfile::Builder::new().prefix("ref-etcd").tempdir()?;
            let (client, peer) = (clients[i], peers[i]);
            let mut cmd = Command::new(&bin);
            cmd.arg("--name")
                .arg(format!("ref{i}"))
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--listen-client-urls")
                .arg(format!("http://{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://{peer}"))
                .arg("--initial-cluster")
                .arg(&initial)
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--log-level")
                .arg("warn")
                .arg("--logger")
                .arg("zap");
            procs.push(Proc::spawn("etcd", dir, &mut cmd)?);
        }
        for (p, c) in procs.iter_mut().zip(&clients) {
            p.wait_ready(*c, 60, || http_get_ok(*c, "/health"))?;
        }
        Ok(RealEtcdCluster { procs, clients })
    }

    /// Every member's `http://127.0.0.1:PORT`, comma-separated.
    pub fn endpoints(&self) -> String {
        self.clients
            .iter()
            .map(|c| format!("http://{c}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().filter_map(Proc::pid).collect()
    }
}

/// A real ZooKeeper 3.8 ensemble of several participants on loopback
/// (`QuorumPeerMain`, `forceSync=yes`), for the three-member benchmarks.
pub struct RealZkEnsemble {
    procs: Vec<Proc>,
    clients: Vec<SocketAddr>,
    cfgs: Vec<PathBuf>,
    jvm: Vec<String>,
}

impl RealZkEnsemble {
    /// Starts `n` servers (ids 1..=n) and waits until each serves as
    /// leader or follower.
    pub fn start(n: usize) -> Result<RealZkEnsemble, RefError> {
        Self::start_with(n, &[], &[])
    }

    /// [`RealZkEnsemble::start`] with extra zoo.cfg lines and JVM options
    /// on every server (`-Dreadonlymode.enabled=true`, as kazoo's harness
    /// starts it).
    pub fn start_with(
        n: usize,
        extra_cfg: &[&str],
        jvm: &[&str],
    ) -> Result<RealZkEnsemble, RefError> {
        let jvm: Vec<String> = jvm.iter().map(|s| s.to_string()).collect();
        let main_jar = RealZk::jar_dir().join("zookeeper.jar");
        if !main_jar.exists() {
            return Err(RefError::NotInstalled(format!(
                "{} (apt-get install zookeeper)",
                main_jar.display()
            )));
        }
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let clients: Vec<SocketAddr> = (0..n).map(|_| addr()).collect();
        let servers: String = (0..n)
            .map(|i| {
                format!(
                    "server.{}=127.0.0.1:{}:{}\n",
                    i + 1,
                    free_port(),
                    free_port()
                )
            })
            .collect();
        let mut procs = Vec::new();
        let mut cfgs = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            let dir = tempfile::Builder::new().prefix("ref-zk").tempdir()?;
            let data = dir.path().join("data");
            std::fs::create_dir_all(&data)?;
            std::fs::write(data.join("myid"), format!("{}\n", i + 1))?;
            let cfg = format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
                 forceSync=yes\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
                 extendedTypesEnabled=true\nmaxClientCnxns=0\n\
                 clientPort={}\nclientPortAddress=127.0.0.1\n{servers}{}",
                data.display(),
                client.port(),
                extra_cfg
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            );
            let cfg_path = dir.path().join("zoo.cfg");
            std::fs::write(&cfg_path, cfg)?;
            let mut cmd = RealZk::command(&cfg_path, &jvm, true);
            procs.push(Proc::spawn("zookeeper", dir, &mut cmd)?);
            cfgs.push(cfg_path);
        }
        for (p, c) in procs.iter_mut().zip(&clients) {
            RealZk::wait_serving(p, *c)?;
        }
        Ok(RealZkEnsemble {
            procs,
            clients,
            cfgs,
            jvm,
        })
    }

    /// Server `i`'s client address (0-based).
    pub fn client(&self, i: usize) -> SocketAddr {
        self.clients[i]
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }

    /// Starts server `i` again on its data dir and ports (after
    /// [`RealZkEnsemble::kill`]) without waiting for it: alone it cannot
    /// serve until a quorum forms.
    pub fn respawn(&mut self, i: usize) -> Result<(), RefError> {
        let mut cmd = RealZk::command(&self.cfgs[i], &self.jvm, true);
        self.procs[i].respawn(&mut cmd)
    }

    /// Server `i`'s log.
    pub fn log(&self, i: usize) -> String {
        self.procs[i].log()
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,...`, for ZooKeeper clients.
    pub fn connect_string(&self) -> String {
        self.clients
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().filter_map(Proc::pid).collect()
    }
}

/// Sends a ZooKeeper four-letter word and returns the whole answer.
pub fn four_letter(addr: SocketAddr, word: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A plain HTTP/1.1 GET; true on a 200 answer.
fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200")
}

/// Resident set size of a process in bytes (`VmRSS` of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("VmRSS: {e}"))
                })?;
            return Ok(kb * 1024);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no VmRSS line in /proc/<pid>/status",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_etcd_starts_and_is_healthy() {
        if !RealEtcd::available() {
            eprintln!("SKIP: etcd not installed");
            return;
        }
        let e = RealEtcd::start().expect("etcd starts");
        assert!(http_get_ok(e.addr(), "/health"));
        let pid = e.pid().expect("pid");
        assert!(rss_bytes(pid).expect("rss") > 0);
    }

    #[test]
    fn real_zk_starts_and_answers_srvr() {
        if !RealZk::available() {
            eprintln!("SKIP: zookeeper not installed");
            return;
        }
        let z = RealZk::start().expect("zookeeper starts");
        let srvr = four_letter(z.addr(), "srvr").expect("srvr");
        assert!(srvr.contains("Zookeeper version: 3.8"), "{srvr}");
        assert!(srvr.contains("Mode: standalone"), "{srvr}");
    }
}
