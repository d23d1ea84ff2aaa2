//! The ZooKeeper connection state machine: after a valid handshake, the
//! input is sent as a sequence of frames (`[len: u16 BE][payload]`, each
//! given a correct 4-byte length prefix) or, if it starts with 0xFF, as raw
//! bytes. Replies are read until the server closes or goes quiet; then a
//! fresh client must still get a handshake answered.
#![no_main]

mod common;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

fn frames(data: &[u8]) -> Vec<u8> {
    if let Some(raw) = data.strip_prefix(&[0xFF]) {
        return raw.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let srv = common::server();
    srv.rt.block_on(async {
        let mut s = common::zk_handshake(srv.zk).await;
        let bytes = frames(data);
        if s.write_all(&bytes).await.is_ok() {
            common::drain(&mut s, Duration::from_millis(30)).await;
        }
        drop(s);
        drop(common::zk_handshake(srv.zk).await);
    });
});
