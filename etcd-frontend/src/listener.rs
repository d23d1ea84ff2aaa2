//! The client port's accept loop: hyper (HTTP/1 and HTTP/2 on one port,
//! as etcd's cmux) over each TCP connection wrapped in
//! [`AuthorityFix`](crate::h2_authority::AuthorityFix) over a
//! [`WriteBatch`](crate::write_batch::WriteBatch), with graceful
//! shutdown. It does what `axum::serve` does, plus the wrapper, which
//! `axum::serve` (0.7) has no hook for.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::h2_authority::AuthorityFix;
use crate::write_batch::WriteBatch;

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// connections finish for at most `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Per-connection failures (reset before accept, fd
                    // limits) must not stop the listener; back off briefly.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Without TCP_NODELAY small replies wait for the peer's delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(|req: hyper::Request<Incoming>| req.map(axum::body::Body::new));
        let svc = TowerToHyperService::new(svc);
        let conn = Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(
                TokioIo::new(AuthorityFix::new(WriteBatch::new(tcp))),
                svc,
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("etcd listener: connections still open after shutdown grace period");
    }
    Ok(())
}
