//! One in-process janus member (real node on a tmpfs data dir, real
//! frontends on loopback ports chosen by the kernel) shared by every input
//! of a network fuzz target. A panic anywhere in the server aborts the
//! process (libfuzzer-sys's panic hook), so it counts as a crash.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Server {
    pub rt: tokio::runtime::Runtime,
    pub zk: SocketAddr,
    pub etcd: SocketAddr,
    _dir: tempfile::TempDir,
}

/// tmpfs when there is one: the fuzz loop writes through raft and the WAL.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("janus-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

pub fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        // libFuzzer's C main skips Rust's start-up, which ignores SIGPIPE:
        // without this, a write to a connection the server closed (what a
        // malformed frame must cause) kills the fuzzer.
        // SAFETY: setting a signal disposition to SIG_IGN, before any
        // thread of ours writes to a socket.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let dir = scratch();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (zk, etcd) = rt.block_on(async {
            let node =
                janus_core::Node::start(janus_core::NodeConfig::single(dir.path().join("data")))
                    .expect("node");
            let zl = janus_core::sockets::listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let el = janus_core::sockets::listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let (zk, etcd) = (zl.local_addr().unwrap(), el.local_addr().unwrap());
            let zcfg = janus_zk::ZkConfig {
                listen: zk,
                ..Default::default()
            };
            let ecfg = janus_etcd::EtcdConfig {
                listen: etcd,
                ..Default::default()
            };
            let n2 = node.clone();
            tokio::spawn(async move {
                janus_zk::serve(n2, zcfg, zl, std::future::pending())
                    .await
                    .expect("zk serve");
            });
            tokio::spawn(async move {
                janus_etcd::serve(node, ecfg, el, std::future::pending())
                    .await
                    .expect("etcd serve");
            });
            (zk, etcd)
        });
        Server {
            rt,
            zk,
            etcd,
            _dir: dir,
        }
    })
}

/// Reads whatever the server sends until it closes or stays silent for
/// `idle`.
pub async fn drain(s: &mut TcpStream, idle: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(idle, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// A valid ZooKeeper ConnectRequest frame (new session, 10 s timeout).
pub fn connect_frame() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes()); // protocol version
    body.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&0i64.to_be_bytes()); // session id
    body.extend_from_slice(&16i32.to_be_bytes());
    body.extend_from_slice(&[0u8; 16]); // password
    body.push(0); // read-only
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

/// Connects and completes a ZooKeeper handshake; panics (a fuzz failure)
/// if the server does not answer within 5 s: it must keep serving new
/// clients whatever an earlier input did.
pub async fn zk_handshake(addr: SocketAddr) -> TcpStream {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("zk connect");
        s.write_all(&connect_frame()).await.expect("send connect");
        let mut len = [0u8; 4];
        s.read_exact(&mut len)
            .await
            .expect("connect response length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.expect("connect response");
        assert!(body.len() >= 20, "short ConnectResponse");
        s
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("the ZooKeeper endpoint stopped answering new clients")
}
