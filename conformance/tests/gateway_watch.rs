//! The JSON gateway's watch stream, janus against a real etcd 3.4: one
//! HTTP/1.1 request whose chunked body carries a sequence of
//! `WatchRequest`s (create, progress, cancel) while the chunked response
//! carries newline-separated `{"result": ...}` objects. The same script runs
//! on both servers and the transcripts, with the member-specific header
//! fields (cluster/member id, raft term) removed, must be equal frame for
//! frame: framing, watch ids, created/canceled flags, events, prev_kv,
//! filters, progress responses and the compaction cancel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use janus_conformance::harness::Janus;
use janus_conformance::reference::RealEtcd;
use serde_json::{json, Value};

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One unary gateway call (`POST /v3/...`), answering the JSON body.
fn call(addr: SocketAddr, path: &str, body: &Value) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect");
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, rest) = resp.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest.as_bytes())
    } else {
        rest.to_string()
    };
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

fn dechunk(mut raw: &[u8]) -> String {
    let mut out = Vec::new();
    while let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[pos + 2..pos + 2 + size]);
        raw = &raw[pos + 2 + size + 2..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An open `/v3/watch` stream. The request body (one or more
/// `WatchRequest`s) is sent whole, as Patroni and curl send it: etcd 3.4's
/// gateway runs on Go's HTTP/1.1 server, which does not read a request body
/// once the response has begun, so a body is a script, not a conversation.
/// Responses come back as lines of the chunked response while the test acts.
struct WatchStream {
    rx: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl WatchStream {
    fn open(addr: SocketAddr, body: &str) -> WatchStream {
        let mut tx = TcpStream::connect(addr).expect("connect");
        write!(
            tx,
            "POST /v3/watch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send watch request");
        WatchStream {
            rx: BufReader::new(tx),
            pending: Vec::new(),
        }
    }

    fn requests(reqs: &[Value]) -> String {
        reqs.iter().map(|r| format!("{r}\n")).collect()
    }

    /// Response frames until the stream has been quiet for `quiet`.
    fn frames(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        self.rx
            .get_mut()
            .set_read_timeout(Some(quiet))
            .expect("timeout");
        loop {
            while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line);
                if !text.trim().is_empty() {
                    out.push(
                        serde_json::from_str(text.trim())
                            .unwrap_or_else(|e| panic!("watch frame is not JSON ({e}): {text}")),
                    );
                }
            }
            if Instant::now() > deadline {
                return out;
            }
            match self.read_chunk() {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return out,
            }
        }
    }

    /// One chunk of the response body (skipping the response head first).
    fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.rx.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let t = line.trim();
            if t.is_empty() || t.starts_with("HTTP/") || t.contains(':') {
                continue; // response head, or the blank line after a chunk
            }
            let size = usize::from_str_radix(t, 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0u8; size];
            self.rx.read_exact(&mut chunk).ok()?;
            return Some(chunk);
        }
    }
}

/// Drops what differs between any two members by construction.
fn normalize(mut v: Value) -> Value {
    if let Some(h) = v
        .pointer_mut("/result/header")
        .and_then(Value::as_object_mut)
    {
        h.remove("cluster_id");
        h.remove("member_id");
        h.remove("raft_term");
    }
    v
}

/// The script; returns a transcript of labelled, normalized frames.
fn script(addr: SocketAddr) -> Vec<(String, Vec<Value>)> {
    let quiet = Duration::from_millis(400);
    let mut t: Vec<(String, Vec<Value>)> = Vec::new();
    let put = |k: &str, v: &str| call(addr, "/v3/kv/put", &json!({"key": b64(k), "value": b64(v)}));
    let range =
        |lo: &str, hi: &str| json!({"create_request": {"key": b64(lo), "range_end": b64(hi)}});

    // A watch from the current revision of a fresh store.
    let mut a = WatchStream::open(
        addr,
        &WatchStream::requests(&[json!({"create_request": {
            "key": b64("/w/"), "range_end": b64("/w0"), "start_revision": "1"}})]),
    );
    t.push(("create from rev 1".into(), a.frames(quiet)));
    put("/w/a", "1");
    t.push(("put /w/a".into(), a.frames(quiet)));

    // Several requests in one body: two watchers (the second with prev_kv
    // and a no-delete filter), a progress request, a cancel of the first.
    let mut b = WatchStream::open(
        addr,
        &WatchStream::requests(&[
            range("/w/", "/w0"),
            json!({"progress_request": {}}),
            json!({"create_request": {"key": b64("/w/a"), "prev_kv": true, "filters": ["NODELETE"]}}),
            json!({"cancel_request": {"watch_id": "0"}}),
        ]),
    );
    t.push(("create, progress, create, cancel".into(), b.frames(quiet)));
    put("/w/a", "2");
    t.push((
        "overwrite /w/a (watcher 1, prev_kv)".into(),
        b.frames(quiet),
    ));
    t.push(("overwrite /w/a (stream a)".into(), a.frames(quiet)));
    call(addr, "/v3/kv/deleterange", &json!({"key": b64("/w/a")}));
    t.push(("delete /w/a (filtered on b)".into(), b.frames(quiet)));
    t.push(("delete /w/a (stream a)".into(), a.frames(quiet)));
    put("/w/b", "3");
    t.push(("put /w/b (watcher 0 canceled)".into(), b.frames(quiet)));
    put("/other", "x");
    t.push((
        "put /w/b, then /other outside (stream a)".into(),
        a.frames(quiet),
    ));

    // A watch from a compacted revision is created, then canceled with the
    // compact revision.
    let rev = call(addr, "/v3/kv/range", &json!({"key": b64("/w/a")}))["header"]["revision"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    call(
        addr,
        "/v3/kv/compaction",
        &json!({"revision": rev, "physical": true}),
    );
    let mut c = WatchStream::open(
        addr,
        &WatchStream::requests(&[json!({"create_request": {
            "key": b64("/w/"), "range_end": b64("/w0"), "start_revision": "2"}})]),
    );
    t.push(("create from compacted rev".into(), c.frames(quiet)));

    // A watch from a future revision waits for it.
    let next: i64 = rev.parse::<i64>().unwrap_or(0) + 2;
    let mut d = WatchStream::open(
        addr,
        &WatchStream::requests(&[json!({"create_request": {
            "key": b64("/w/"), "range_end": b64("/w0"), "start_revision": next.to_string()}})]),
    );
    t.push(("create from future rev".into(), d.frames(quiet)));
    put("/w/c", "5");
    t.push(("put at future-1".into(), d.frames(quiet)));
    put("/w/d", "6");
    t.push(("put at future".into(), d.frames(quiet)));

    // A body that is not JSON: an error object.
    let mut e = WatchStream::open(addr, "{bad\n");
    t.push(("bad json".into(), e.frames(quiet)));

    t.into_iter()
        .map(|(label, frames)| (label, frames.into_iter().map(normalize).collect()))
        .collect()
}

#[test]
fn gateway_watch_stream_matches_etcd() {
    let etcd = match RealEtcd::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let janus = Janus::start();
    let want = script(etcd.addr());
    let got = script(janus.etcd_addr());
    for (label, frames) in &want {
        eprintln!(
            "{label}: {}",
            serde_json::to_string(frames).unwrap_or_default()
        );
    }
    let mut diffs = Vec::new();
    for ((label, w), (_, g)) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!(
                "{label}:\n  etcd : {}\n  janus: {}",
                serde_json::to_string(w).unwrap_or_default(),
                serde_json::to_string(g).unwrap_or_default()
            ));
        }
    }
    // Guard against a script that records nothing on either side.
    assert!(
        want.iter().filter(|(_, f)| !f.is_empty()).count() >= 8,
        "etcd transcript too thin: {want:?}"
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
