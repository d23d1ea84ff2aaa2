//! How janus opens TCP sockets: every listener (peer, etcd client, metrics,
//! ZooKeeper) and every outgoing peer connection, so that a member killed
//! with -9 can be started again at once on the same ports.
//!
//! Why both sides set `SO_REUSEADDR` (measured on Linux, not assumed):
//! - A listener without it cannot bind a port while connections it had
//!   accepted linger in TIME_WAIT, which is what a member restarted right
//!   after a crash meets. std's and tokio's (mio's) `bind` happen to set it
//!   on Unix; janus sets it itself so the rule does not hang on a library
//!   detail.
//! - A listener *with* it still cannot bind a port that is the local end of
//!   an outgoing connection in TIME_WAIT, unless that outgoing socket had
//!   `SO_REUSEADDR` too (the kernel's bind-conflict check asks both
//!   sockets). A member's outgoing peer links use ephemeral ports, and a
//!   restarted member's peer port can be one of them: seen as `cannot listen
//!   for peers on ...: Address already in use`. So outgoing peer connections
//!   set it as well; it has no other effect on a connecting socket.
//!
//! etcd (Go's net package) and ZooKeeper (Java's ServerSocketChannel with
//! `setReuseAddress(true)`) listen with `SO_REUSEADDR` as well.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Backlog of every listener (tokio's default for `TcpListener::bind`).
const BACKLOG: u32 = 1024;

fn socket_for(addr: &SocketAddr) -> io::Result<TcpSocket> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    Ok(s)
}

/// A listener on `addr` with `SO_REUSEADDR`. Must be called inside a tokio
/// runtime (the listener registers with its reactor).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket_for(&addr)?;
    s.bind(addr)?;
    s.listen(BACKLOG)
}

/// An outgoing connection to `host:port` with `SO_REUSEADDR` set before
/// connecting, trying each resolved address in turn.
pub async fn connect(hostport: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{hostport} resolves to no address"),
    );
    for addr in tokio::net::lookup_host(hostport).await? {
        match socket_for(&addr)?.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    /// An outgoing connection that this side closes first leaves its local
    /// port in TIME_WAIT; a listener must still bind that port number.
    /// Another process (or test thread) may take the freed port number in
    /// between, so up to three fresh ports are tried: without
    /// `SO_REUSEADDR` on the outgoing socket every attempt fails.
    #[tokio::test]
    async fn listener_binds_the_port_of_an_outgoing_connection_in_time_wait() {
        let mut errors = Vec::new();
        for _ in 0..3 {
            match bind_over_time_wait().await {
                Ok(()) => return,
                Err(e) => errors.push(e),
            }
        }
        panic!("bind over a TIME_WAIT outgoing port: {errors:?}");
    }

    async fn bind_over_time_wait() -> std::io::Result<()> {
        let server = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let target = server.local_addr().expect("addr").to_string();
        let client = connect(&target).await.expect("connect");
        let port = client.local_addr().expect("local").port();
        let (mut accepted, _) = server.accept().await.expect("accept");
        drop(client); // active close: the client's port goes to TIME_WAIT
        let mut buf = [0u8; 1];
        assert_eq!(accepted.read(&mut buf).await.expect("eof"), 0);
        drop(accepted);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        listen(addr).map(drop)
    }

    /// A listener closed with accepted connections in TIME_WAIT (the server
    /// closed them first, as a killed process's kernel does) can be bound
    /// again at once.
    #[tokio::test]
    async fn listener_rebinds_its_port_while_accepted_connections_linger() {
        let server = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = server.local_addr().expect("addr");
        let mut client = connect(&addr.to_string()).await.expect("connect");
        let (accepted, _) = server.accept().await.expect("accept");
        drop(accepted); // server side closes first: TIME_WAIT on the listener's port
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.expect("eof"), 0);
        drop(client);
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        listen(addr).expect("rebind while TIME_WAIT lingers");
    }
}
