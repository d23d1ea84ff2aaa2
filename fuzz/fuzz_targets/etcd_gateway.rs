//! The etcd JSON gateway's request bodies: the first byte picks an
//! endpoint, the rest is the body of a POST to it. Every answer must come
//! (bad JSON is a 400, not a hang or a panic), and the gateway must keep
//! answering a plain range afterwards.
#![no_main]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATHS: &[&str] = &[
    "/v3/kv/range",
    "/v3/kv/put",
    "/v3/kv/deleterange",
    "/v3/kv/txn",
    "/v3/kv/compaction",
    "/v3/watch",
    "/v3/lease/grant",
    "/v3/lease/revoke",
    "/v3/lease/timetolive",
    "/v3/lease/leases",
    "/v3/lease/keepalive",
    "/v3/cluster/member/list",
    "/v3/maintenance/status",
    "/v3/auth/authenticate",
    "/v3/auth/user/add",
    "/v3/auth/role/grant",
    "/v3/lock/lock",
    "/v3/election/campaign",
    "/v3/election/leader",
];

async fn post(addr: SocketAddr, path: &str, body: &[u8], idle: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("etcd connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    let mut out = Vec::new();
    if s.write_all(&req).await.is_err() {
        return out;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(idle, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let srv = common::server();
    srv.rt.block_on(async {
        let path = PATHS[pick as usize % PATHS.len()];
        let _ = post(srv.etcd, path, body, Duration::from_millis(50)).await;
        let ok = tokio::time::timeout(
            Duration::from_secs(5),
            post(
                srv.etcd,
                "/v3/kv/range",
                b"{\"key\":\"Zm9v\"}",
                Duration::from_secs(2),
            ),
        )
        .await
        .expect("the gateway stopped answering");
        assert!(
            ok.starts_with(b"HTTP/1.1 200"),
            "a plain range failed after {path}: {}",
            String::from_utf8_lossy(&ok)
        );
    });
});
