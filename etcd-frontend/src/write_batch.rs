//! One socket write for the responses of a connection that complete
//! together.
//!
//! hyper serves each HTTP/2 stream in a task of its own. When a stream's
//! response is ready, its task hands the frames to the connection's task,
//! which tokio runs next (its LIFO slot), and h2 writes and flushes that
//! one response. Under load, the answers of one apply group reach many
//! streams of a connection at once, so the connection wrote them with one
//! `writev` each: 0.9 per put at 64 clients over 8 connections (counted
//! with `perf stat -e syscalls:sys_enter_writev`). On loopback each write
//! also runs the receiver's TCP processing in the sender's context.
//!
//! [`WriteBatch`] keeps what h2 writes in a buffer. At the first flush with
//! something buffered it yields once instead: it wakes its own task, which
//! tokio then queues behind the tasks already woken (a task that wakes
//! itself while being polled is re-queued as a yield, not into the LIFO
//! slot). Those are the other streams whose responses are ready; their
//! frames join the buffer, and the next flush writes everything with one
//! call. With nothing else ready the yield costs one more poll of the
//! connection, no system call.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes beyond which a write goes to the socket first, and a
/// write at least this large with nothing buffered goes straight through
/// (no copy of large range responses or snapshots).
const LIMIT: usize = 256 * 1024;

/// An I/O object whose writes are buffered until a flush that follows a
/// yield (see the module docs). Reads go straight to the inner object.
pub struct WriteBatch<IO> {
    io: IO,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed to `io` (a partial write).
    sent: usize,
    /// The flush yielded once since `buf` was last written out.
    yielded: bool,
}

impl<IO> WriteBatch<IO> {
    pub fn new(io: IO) -> WriteBatch<IO> {
        WriteBatch {
            io,
            buf: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }
}

impl<IO: AsyncWrite + Unpin> WriteBatch<IO> {
    /// Writes the whole buffer to the inner object.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        self.buf.clear();
        if self.buf.capacity() > LIMIT {
            // One large burst must not pin its buffer for the connection's life.
            self.buf = Vec::new();
        }
        self.yielded = false;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteBatch<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteBatch<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if this.buf.is_empty() && len >= LIMIT {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            if !this.yielded {
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Responses written before a flush stay off the socket until it, then
    /// reach the peer in one socket write. The pause gives loopback time
    /// to deliver a write that went through (it then shows up early).
    #[tokio::test]
    async fn writes_before_a_flush_go_out_together() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let mut w = WriteBatch::new(server);
        w.write_all(b"one;").await.expect("write");
        w.write_all(b"two;").await.expect("write");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut got = vec![0u8; 64];
        let early = client.try_read(&mut got);
        assert!(
            matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "bytes reached the peer before the flush: {early:?}"
        );
        w.flush().await.expect("flush");
        client.readable().await.expect("readable");
        let n = client.try_read(&mut got).expect("read");
        assert_eq!(&got[..n], b"one;two;");
    }

    /// A flush with bytes buffered yields once (the task is woken again,
    /// nothing written yet), then writes.
    #[tokio::test]
    async fn the_first_flush_yields_once() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteBatch::new(a);
        w.write_all(b"x").await.expect("write");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_pending());
        assert!(matches!(
            Pin::new(&mut w).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let mut got = [0u8; 1];
        b.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"x");
        // Nothing buffered: a flush goes straight to the inner object.
        assert!(matches!(
            Pin::new(&mut w).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    /// Shutdown writes what is buffered first; large writes pass through.
    #[tokio::test]
    async fn shutdown_drains_and_large_writes_pass() {
        let (a, mut b) = tokio::io::duplex(4 * LIMIT);
        let mut w = WriteBatch::new(a);
        let big = vec![7u8; LIMIT];
        w.write_all(&big).await.expect("write");
        w.write_all(b"tail").await.expect("write");
        w.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(got.len(), LIMIT + 4);
        assert_eq!(&got[LIMIT..], b"tail");
    }
}
