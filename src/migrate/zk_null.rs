//! Which znodes hold null data (not empty data): ZooKeeper keeps the two
//! apart, but the client library reads both as an empty buffer, so this
//! asks the source itself, with a minimal jute client (one session,
//! getData requests pipelined, the reply's data length -1 meaning null).
//! Only nodes whose data the walk found empty are asked about.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// getData (ZooDefs.OpCode.getData), addAuth's reserved xid and opcode,
/// closeSession.
const OP_GET_DATA: i32 = 4;
const XID_AUTH: i32 = -4;
const OP_AUTH: i32 = 100;
const OP_CLOSE: i32 = -11;
/// Requests written before their replies are read.
const PIPELINE: usize = 256;
/// Largest reply accepted (ZooKeeper's default jute.maxbuffer plus room).
const MAX_FRAME: usize = 2 * 1024 * 1024;

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s);
}

async fn send(s: &mut TcpStream, body: &[u8]) -> anyhow::Result<()> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    s.write_all(&frame).await?;
    Ok(())
}

async fn recv(s: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let len = s.read_u32().await? as usize;
    if len > MAX_FRAME {
        bail!("reply of {len} bytes, above {MAX_FRAME}");
    }
    let mut b = vec![0; len];
    s.read_exact(&mut b).await?;
    Ok(b)
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The paths among `paths` whose data is null on the server at `host`.
pub async fn null_paths(
    host: &str,
    digest: Option<&str>,
    paths: &[String],
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if paths.is_empty() {
        return Ok(out);
    }
    let fut = async {
        let mut s = TcpStream::connect(host).await?;
        let mut c = Vec::new();
        c.extend_from_slice(&0i32.to_be_bytes()); // protocolVersion
        c.extend_from_slice(&0i64.to_be_bytes()); // lastZxidSeen
        c.extend_from_slice(&30_000i32.to_be_bytes()); // timeOut
        c.extend_from_slice(&0i64.to_be_bytes()); // sessionId
        put_str(&mut c, &[0; 16]); // passwd
        c.push(0); // readOnly
        send(&mut s, &c).await?;
        recv(&mut s).await?;
        if let Some(d) = digest {
            let mut a = Vec::new();
            a.extend_from_slice(&XID_AUTH.to_be_bytes());
            a.extend_from_slice(&OP_AUTH.to_be_bytes());
            a.extend_from_slice(&0i32.to_be_bytes());
            put_str(&mut a, b"digest");
            put_str(&mut a, d.as_bytes());
            send(&mut s, &a).await?;
            let r = recv(&mut s).await?;
            if be_i32(&r, 12).unwrap_or(-1) != 0 {
                bail!("digest authentication refused");
            }
        }
        for chunk in paths.chunks(PIPELINE) {
            for (i, p) in chunk.iter().enumerate() {
                let mut g = Vec::new();
                g.extend_from_slice(&(i as i32 + 1).to_be_bytes());
                g.extend_from_slice(&OP_GET_DATA.to_be_bytes());
                put_str(&mut g, p.as_bytes());
                g.push(0); // watch
                send(&mut s, &g).await?;
            }
            for p in chunk {
                let r = recv(&mut s).await?;
                // ReplyHeader: xid, zxid, err; then the data buffer.
                if be_i32(&r, 12) == Some(0) && be_i32(&r, 16) == Some(-1) {
                    out.insert(p.clone());
                }
            }
        }
        let mut close = Vec::new();
        close.extend_from_slice(&(PIPELINE as i32 + 1).to_be_bytes());
        close.extend_from_slice(&OP_CLOSE.to_be_bytes());
        let _ = send(&mut s, &close).await;
        Ok::<_, anyhow::Error>(out)
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .with_context(|| format!("null-data check on {host}: no answer"))?
        .with_context(|| format!("null-data check on {host}"))
}
