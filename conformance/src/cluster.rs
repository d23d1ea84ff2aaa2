//! Several real `janus` processes forming one cluster on loopback ports
//! chosen at run time, for fault tests: kill -9, SIGSTOP/SIGCONT, wipe and
//! rejoin, add members. Every process is killed and every data dir removed
//! on drop. Members listen on 127.0.0.1, or each on its own address inside
//! a network namespace of its own ([`ClusterOptions::net`], for real
//! partitions).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::chaos::netns::Net;
use crate::harness::{free_port, janus_binary};

/// One member process.
pub struct Member {
    pub name: String,
    pub etcd: SocketAddr,
    pub zk: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    /// The network namespace it runs in, if any.
    pub netns: Option<String>,
    log: PathBuf,
    child: Option<Child>,
    /// The test-only clock-jump file janus polls (see [`Member::jump_clocks`]).
    clock_file: PathBuf,
    /// Its current offsets (monotonic ms, wall ms).
    clock_offsets: (u64, i64),
}

impl Member {
    pub fn etcd_endpoint(&self) -> String {
        format!("http://{}", self.etcd)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Makes the member's clocks jump forward by `monotonic` (its lease
    /// clock) and by `wall_ms` (its wall clock, may be negative), through
    /// janus's test-only hook (`JANUS_TEST_CLOCK_JUMP_FILE`, polled every
    /// 100 ms; the cluster must have been started with
    /// [`ClusterOptions::clock_hook`]). The offsets add up and survive
    /// restarts. Returns once the file is written.
    pub fn jump_clocks(&mut self, monotonic: Duration, wall_ms: i64) -> std::io::Result<()> {
        self.clock_offsets.0 += monotonic.as_millis() as u64;
        self.clock_offsets.1 += wall_ms;
        let tmp = self.clock_file.with_extension("tmp");
        std::fs::write(
            &tmp,
            format!("{} {}\n", self.clock_offsets.0, self.clock_offsets.1),
        )?;
        std::fs::rename(&tmp, &self.clock_file)
    }
}

/// How a cluster's processes run.
#[derive(Default)]
pub struct ClusterOptions {
    /// The janus binary (default: the workspace's debug build, built on
    /// first use).
    pub bin: Option<PathBuf>,
    /// Extra flags for every member.
    pub extra: Vec<String>,
    /// Member `i` runs in `net.ns(i)` on `net.addr(i)`.
    pub net: Option<Net>,
    /// Where data dirs and logs go (default: the system temp dir).
    pub dir: Option<PathBuf>,
    /// Start members with janus's test-only clock-jump hook
    /// ([`Member::jump_clocks`]).
    pub clock_hook: bool,
}

/// A cluster of janus processes.
pub struct Cluster {
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
    initial_cluster: String,
    bin: PathBuf,
    extra: Vec<String>,
    clock_hook: bool,
    /// The namespaces members run in (dropped after the members).
    pub net: Option<Net>,
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

impl Cluster {
    /// Starts `n` members bootstrapping a new cluster.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ClusterOptions::default())
    }

    /// Starts `n` members with the given options.
    pub fn start_with(n: usize, opts: ClusterOptions) -> Cluster {
        Cluster::launch(n, opts, &|_, _| {})
    }

    /// Starts `n` members bootstrapping a new cluster from data dirs that
    /// `prepare(member, initial_cluster)` writes first (a snapshot
    /// restore).
    pub fn start_prepared(n: usize, prepare: impl Fn(&Member, &str)) -> Cluster {
        Cluster::launch(n, ClusterOptions::default(), &prepare)
    }

    fn launch(n: usize, opts: ClusterOptions, prepare: &dyn Fn(&Member, &str)) -> Cluster {
        let dir = match &opts.dir {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let net = opts.net;
        let members: Vec<Member> = (0..n)
            .map(|i| Cluster::new_member(dir.path(), &format!("m{i}"), i, net.as_ref()))
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &members {
            prepare(m, &initial_cluster);
        }
        let mut c = Cluster {
            members,
            dir,
            initial_cluster,
            bin: opts.bin.unwrap_or_else(|| janus_binary().to_path_buf()),
            extra: opts.extra,
            clock_hook: opts.clock_hook,
            net,
        };
        for i in 0..n {
            c.spawn(i, "new");
        }
        for i in 0..n {
            c.wait_up(i);
        }
        c
    }

    fn new_member(dir: &Path, name: &str, i: usize, net: Option<&Net>) -> Member {
        let (ip, netns): (IpAddr, _) = match net {
            Some(n) if i < n.len() => (n.addr(i).into(), Some(n.ns(i))),
            _ => ([127, 0, 0, 1].into(), None),
        };
        Member {
            name: name.to_string(),
            etcd: SocketAddr::new(ip, free_port()),
            zk: SocketAddr::new(ip, free_port()),
            peer: SocketAddr::new(ip, free_port()),
            data_dir: dir.join(name).join("data"),
            netns,
            log: dir.join(format!("{name}.log")),
            child: None,
            clock_file: dir.join(format!("{name}.clock")),
            clock_offsets: (0, 0),
        }
    }

    fn spawn(&mut self, i: usize, state: &str) {
        self.spawn_with(i, state, &[]);
    }

    /// Starts member `i` (not running) with `extra` flags after the
    /// cluster's own, without waiting for it (it may be expected to exit).
    pub fn spawn_with(&mut self, i: usize, state: &str, extra: &[&str]) {
        let initial = self.initial_cluster.clone();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("log");
        let log2 = log.try_clone().expect("log");
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        if self.clock_hook {
            cmd.env("JANUS_TEST_CLOCK_JUMP_FILE", &m.clock_file);
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.etcd_endpoint()])
            .args(["--advertise-client-urls", &m.etcd_endpoint()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--listen-zk-addr", &m.zk.to_string()])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--zk-tick-ms", "500"])
            .args(&self.extra)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn janus");
        m.child = Some(child);
    }

    /// Waits until member `i` accepts connections on both client ports.
    pub fn wait_up(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = &mut self.members[i];
            if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                panic!("member {} exited with {st}; log:\n{}", m.name, m.log());
            }
            let up =
                |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok();
            if up(&m.etcd) && up(&m.zk) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {} did not start; log:\n{}",
                m.name,
                m.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// All etcd endpoints (running or not).
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.etcd_endpoint()).collect()
    }

    /// `host:port,host:port,...` of every ZooKeeper endpoint.
    pub fn zk_connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| m.zk.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGTERM member `i` and wait for it: a clean stop, which syncs its
    /// store (a test that edits the data dir afterwards sees everything).
    pub fn terminate(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            signal(c.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The exit status of member `i` if its process has exited on its own.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.members[i].child.as_mut()?.try_wait().ok()?
    }

    /// SIGSTOP / SIGCONT member `i` (a member that hears and says nothing).
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, "-STOP");
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, "-CONT");
        }
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "new");
        self.wait_up(i);
    }

    /// Kills member `i`, wipes its data dir and starts it empty as a member
    /// of an existing cluster (it must be caught up by a snapshot). The
    /// member must have been removed and added back first (etcd's procedure
    /// for a member that lost its data).
    pub fn wipe_and_rejoin(&mut self, i: usize) {
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.members[i].data_dir);
        self.spawn(i, "existing");
        self.wait_up(i);
    }

    /// Prepares a new member (not started): its peer URL is what `member
    /// add` needs.
    pub fn prepare_member(&mut self, name: &str) -> usize {
        let i = self.members.len();
        let m = Cluster::new_member(self.dir.path(), name, i, self.net.as_ref());
        self.initial_cluster
            .push_str(&format!(",{}={}", m.name, m.peer_url()));
        self.members.push(m);
        self.members.len() - 1
    }

    /// Starts a prepared member joining the existing cluster.
    pub fn start_joining(&mut self, i: usize) {
        self.spawn(i, "existing");
        self.wait_up(i);
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("==== {} ====\n{}", m.name, m.log()))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in &self.members {
                let log = m.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("==== {} (last lines) ====", m.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
        // For a post-mortem of a campaign whose checks failed after the
        // cluster was gone.
        if let Some(keep) = std::env::var_os("JANUS_KEEP_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for m in &self.members {
                let _ = std::fs::copy(&m.log, keep.join(format!("{}.log", m.name)));
            }
        }
    }
}
