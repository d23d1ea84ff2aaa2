//! A connection-level shim that makes `:authority: http://HOST:PORT`
//! acceptable to the `h2` crate.
//!
//! etcdctl 3.4 dials its per-endpoint maintenance calls (`endpoint status`,
//! `endpoint hashkv`, `defrag`, `snapshot save`, `move-leader`, ...) as
//! `passthrough:///http://HOST:PORT`, so grpc-go puts the whole URL in the
//! `:authority` pseudo-header. Go's gRPC server ignores it; the `h2` crate
//! parses it as a URI authority, fails on the `/`, and resets the stream
//! with PROTOCOL_ERROR (`h2::server`, "malformed authority"). Patching or
//! forking h2 would put janus on a private copy of a core dependency, so
//! instead this wrapper sits between the socket and hyper and rewrites only
//! what h2 would reject: on HTTP/2 connections it decodes every header
//! block the client sends (HPACK, with the client's dynamic table), turns
//! an `:authority` holding a URL into its `HOST:PORT`, and re-encodes the
//! block for h2 with an encoder of its own (so the two dynamic tables stay
//! consistent on each side). Every other frame, and the server's writes,
//! pass through unchanged; HTTP/1 connections are passed through as read.
//!
//! The connection's first header block decides. A gRPC client puts one
//! authority on every stream of a connection (grpc-go's transport takes it
//! from its ClientConn), so when the first block's `:authority` is not a
//! URL, that block goes on as the client encoded it and the connection is
//! passed through from there on: decoding every block costs more than the
//! rest of a small request (the HPACK crate's Huffman decoder rebuilds its
//! tables per string; measured at a quarter of the server's CPU under
//! `janus-bench etcd put`). Only a connection that opened with a URL
//! authority is rewritten, block by block, for its whole life.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Largest frame payload we emit: the HTTP/2 default SETTINGS_MAX_FRAME_SIZE,
/// which every peer must accept.
const MAX_EMIT_PAYLOAD: usize = 16_384;
/// Largest frame or header block accepted from a client (h2 itself would
/// refuse more than its max frame size; this only bounds our buffer).
const MAX_BLOCK: usize = 1 << 20;

enum Mode {
    /// Not yet known whether the client speaks HTTP/2.
    Preface,
    /// HTTP/2, before the first header block: frames are parsed.
    Frames,
    /// HTTP/2 whose first `:authority` was a URL: every header block is
    /// rewritten.
    Rewrite,
    /// HTTP/1 (or anything else): bytes are handed on as read.
    Passthrough,
}

/// A header block being collected (HEADERS without END_HEADERS, then
/// CONTINUATION frames).
struct Pending {
    stream_id: u32,
    /// END_STREAM of the HEADERS frame.
    end_stream: bool,
    /// The HEADERS frame's priority fields, if it had them.
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// An I/O object whose reads have `:authority` URLs rewritten (see the
/// module docs). Writes go straight to the inner object.
pub struct AuthorityFix<IO> {
    io: IO,
    mode: Mode,
    /// Bytes read from the client, not yet processed.
    raw: BytesMut,
    /// Processed bytes, ready for hyper.
    out: BytesMut,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    eof: bool,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(io: IO) -> AuthorityFix<IO> {
        AuthorityFix {
            io,
            mode: Mode::Preface,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            pending: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            eof: false,
        }
    }

    /// Moves what can be processed from `raw` to `out`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    let all = self.raw.split();
                    self.out.unsplit(all);
                    return Ok(());
                }
                Mode::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    let p = self.raw.split_to(PREFACE.len());
                    self.out.unsplit(p);
                    self.mode = Mode::Frames;
                }
                Mode::Frames | Mode::Rewrite => {
                    if self.raw.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let len =
                        u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]) as usize;
                    if len > MAX_BLOCK {
                        return Err(invalid("HTTP/2 frame too large"));
                    }
                    if self.raw.len() < FRAME_HEADER + len {
                        return Ok(());
                    }
                    let frame = self.raw.split_to(FRAME_HEADER + len);
                    self.frame(frame)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: BytesMut) -> io::Result<()> {
        let typ = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match typ {
            HEADERS if self.pending.is_none() => {
                let mut p = payload;
                let mut pad = 0usize;
                if flags & PADDED != 0 {
                    let (&n, rest) = p
                        .split_first()
                        .ok_or_else(|| invalid("HEADERS frame without its pad length"))?;
                    pad = n as usize;
                    p = rest;
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    if p.len() < 5 {
                        return Err(invalid("HEADERS frame without its priority fields"));
                    }
                    let mut f = [0u8; 5];
                    f.copy_from_slice(&p[..5]);
                    priority = Some(f);
                    p = &p[5..];
                }
                if pad > p.len() {
                    return Err(invalid("HEADERS padding longer than the frame"));
                }
                let pending = Pending {
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    block: p[..p.len() - pad].to_vec(),
                };
                self.collect(pending, flags & END_HEADERS != 0)
            }
            CONTINUATION => match self.pending.take() {
                Some(mut pending) if pending.stream_id == stream_id => {
                    if pending.block.len() + payload.len() > MAX_BLOCK {
                        return Err(invalid("HTTP/2 header block too large"));
                    }
                    pending.block.extend_from_slice(payload);
                    self.collect(pending, flags & END_HEADERS != 0)
                }
                _ => Err(invalid("CONTINUATION frame out of sequence")),
            },
            _ if self.pending.is_some() => Err(invalid("header block interrupted by a frame")),
            _ => {
                self.out.unsplit(frame);
                Ok(())
            }
        }
    }

    fn collect(&mut self, pending: Pending, complete: bool) -> io::Result<()> {
        if !complete {
            self.pending = Some(pending);
            return Ok(());
        }
        let mut headers = self
            .decoder
            .decode(&pending.block)
            .map_err(|e| invalid(&format!("HPACK: {e:?}")))?;
        let mut fixed_any = false;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" {
                if let Some(fixed) = host_port_of_url(value) {
                    *value = fixed;
                    fixed_any = true;
                }
            }
        }
        if matches!(self.mode, Mode::Frames) {
            if !fixed_any {
                // Nothing re-encoded yet, so h2's table is the client's:
                // the block and everything after it go on as sent.
                self.emit_headers(&pending, &pending.block);
                self.mode = Mode::Passthrough;
                return Ok(());
            }
            self.mode = Mode::Rewrite;
        }
        let block = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        self.emit_headers(&pending, &block);
        Ok(())
    }

    /// Writes a HEADERS frame (and CONTINUATION frames if the block is
    /// large) carrying `block`.
    fn emit_headers(&mut self, p: &Pending, block: &[u8]) {
        let prio_len = if p.priority.is_some() { 5 } else { 0 };
        let first_room = MAX_EMIT_PAYLOAD - prio_len;
        let (first, mut rest) = block.split_at(block.len().min(first_room));
        let mut flags = 0;
        if p.end_stream {
            flags |= END_STREAM;
        }
        if p.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.frame_header(prio_len + first.len(), HEADERS, flags, p.stream_id);
        if let Some(prio) = p.priority {
            self.out.put_slice(&prio);
        }
        self.out.put_slice(first);
        while !rest.is_empty() {
            let (chunk, more) = rest.split_at(rest.len().min(MAX_EMIT_PAYLOAD));
            let flags = if more.is_empty() { END_HEADERS } else { 0 };
            self.frame_header(chunk.len(), CONTINUATION, flags, p.stream_id);
            self.out.put_slice(chunk);
            rest = more;
        }
    }

    fn frame_header(&mut self, len: usize, typ: u8, flags: u8, stream_id: u32) {
        let l = (len as u32).to_be_bytes();
        self.out.put_slice(&l[1..]);
        self.out.put_u8(typ);
        self.out.put_u8(flags);
        self.out.put_u32(stream_id);
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// `http://HOST:PORT[/...]` → `HOST:PORT`; `None` for anything without a
/// scheme (left as the client sent it).
fn host_port_of_url(value: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(value).ok()?;
    let (_, rest) = s.rsplit_once("://")?;
    let host = rest.split('/').next().unwrap_or("");
    Some(host.as_bytes().to_vec())
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // What is left is an incomplete frame: hand it on as is
                // and let h2 report the truncation.
                let rest = this.raw.split();
                this.out.unsplit(rest);
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if matches!(this.mode, Mode::Passthrough) && this.raw.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.raw.extend_from_slice(rb.filled());
            this.process()?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn headers_frame(block: &[u8], flags: u8, stream: u32) -> Vec<u8> {
        let mut f = (block.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(HEADERS);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(block);
        f
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let mut fix = AuthorityFix::new(&input[..]);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        out
    }

    #[test]
    fn urls_become_host_port() {
        assert_eq!(
            host_port_of_url(b"http://127.0.0.1:2379"),
            Some(b"127.0.0.1:2379".to_vec())
        );
        assert_eq!(
            host_port_of_url(b"passthrough:///https://h:1/x"),
            Some(b"h:1".to_vec())
        );
        assert_eq!(host_port_of_url(b"127.0.0.1:2379"), None);
    }

    #[tokio::test]
    async fn authority_url_is_rewritten_and_the_tables_stay_in_step() {
        // The client encodes two requests with one dynamic table, the
        // second referring to the first's entries.
        let mut client = loona_hpack::Encoder::new();
        let req = |path: &'static [u8]| {
            vec![
                (&b":method"[..], &b"POST"[..]),
                (b":scheme", b"http"),
                (b":path", path),
                (b":authority", b"http://127.0.0.1:2379"),
                (b"content-type", b"application/grpc"),
            ]
        };
        let b1 = client.encode(req(b"/etcdserverpb.Maintenance/Status"));
        let b2 = client.encode(req(b"/etcdserverpb.Maintenance/HashKV"));
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(&b1, END_HEADERS, 1));
        // A non-header frame in between passes unchanged (a DATA frame).
        let data = [0, 0, 2, 0, END_STREAM, 0, 0, 0, 1, 7, 7];
        input.extend_from_slice(&data);
        // The second block split over HEADERS + CONTINUATION.
        let (x, y) = b2.split_at(b2.len() / 2);
        input.extend(headers_frame(x, END_STREAM, 3));
        let mut cont = (y.len() as u32).to_be_bytes()[1..].to_vec();
        cont.extend_from_slice(&[CONTINUATION, END_HEADERS, 0, 0, 0, 3]);
        cont.extend_from_slice(y);
        input.extend(cont);

        let out = through(input).await;
        assert_eq!(&out[..24], PREFACE);
        // What h2 would decode, with a decoder of its own.
        let mut server = loona_hpack::Decoder::new();
        let mut frames = &out[24..];
        let mut seen = Vec::new();
        while !frames.is_empty() {
            let len = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
            let (f, rest) = frames.split_at(FRAME_HEADER + len);
            if f[3] == HEADERS {
                assert_ne!(f[4] & END_HEADERS, 0);
                let h = server.decode(&f[FRAME_HEADER..]).expect("decodes");
                seen.push((f[4] & END_STREAM, h));
            } else {
                assert_eq!(f, &data[..]);
            }
            frames = rest;
        }
        assert_eq!(seen.len(), 2);
        for (_, h) in &seen {
            let auth = h
                .iter()
                .find(|(n, _)| n == b":authority")
                .expect("authority");
            assert_eq!(auth.1, b"127.0.0.1:2379");
        }
        assert_eq!(seen[1].0, END_STREAM);
        let path = seen[1].1.iter().find(|(n, _)| n == b":path").expect("path");
        assert_eq!(path.1, b"/etcdserverpb.Maintenance/HashKV");
    }

    #[tokio::test]
    async fn a_connection_opened_with_a_plain_authority_passes_through() {
        let mut client = loona_hpack::Encoder::new();
        let b1 = client.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/etcdserverpb.KV/Put"),
            (b":authority", b"127.0.0.1:2379"),
        ]);
        // Later blocks are not decoded (not even a malformed one).
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(&b1, END_HEADERS, 1));
        input.extend(headers_frame(&[0xff, 0xff, 0xff], END_HEADERS, 3));
        assert_eq!(through(input.clone()).await, input);
    }

    #[tokio::test]
    async fn http1_passes_through() {
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(req.clone()).await, req);
    }

    #[tokio::test]
    async fn garbage_header_blocks_are_errors_not_panics() {
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
            END_HEADERS,
            1,
        ));
        let mut fix = AuthorityFix::new(&input[..]);
        let mut out = Vec::new();
        assert!(fix.read_to_end(&mut out).await.is_err());
    }
}
