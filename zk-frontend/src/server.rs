//! Accept loop: one task per connection, a semaphore bounding how many run
//! at once, and graceful shutdown through one broadcast signal (mini-redis).

use std::sync::Arc;

use janus_core::Node;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tracing::{debug, info, warn};

use crate::connection::Connection;
use crate::shared::Shared;
use crate::{ZkConfig, ZkFrontendError};

/// Serves until `shutdown` resolves.
///
/// Each accepted socket gets its own task; at most `cfg.max_connections` run
/// at once (the rest wait in the kernel's accept queue, which is what
/// ZooKeeper's `maxClientCnxns` approximates). On shutdown, every connection
/// is told through a broadcast channel and the call returns once they have
/// all finished their current request.
pub async fn serve(
    node: Node,
    cfg: ZkConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ZkFrontendError> {
    let limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let (notify_tx, _) = broadcast::channel::<()>(1);
    let shared = Arc::new(Shared::new(node, cfg));
    crate::fourlw::register_metrics(&shared);
    info!(addr = ?listener.local_addr().ok(), "ZooKeeper endpoint listening");
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Transient accept errors (EMFILE, ECONNABORTED) must not
                    // stop the endpoint; back off briefly instead.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        let stop = notify_tx.subscribe();
        let acceptor = shared
            .cfg
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.0.current()));
        tasks.spawn(async move {
            let (stream, tls_ids): (crate::connection::Stream, _) = match acceptor {
                None => (Box::new(socket), Vec::new()),
                Some(a) => {
                    match janus_core::tls::accept(&a, socket).await {
                        Ok(tls) => {
                            // rustls verified the chain against the trusted
                            // CA before the handshake finished.
                            let ids = match tls.get_ref().1.peer_certificates() {
                                None | Some([]) => Vec::new(),
                                Some([leaf, ..]) => match janus_core::znode::x509::ids(
                                    leaf.as_ref(),
                                    shared.cfg.x509_super_user.as_deref(),
                                ) {
                                    Some(ids) => ids,
                                    None => {
                                        debug!(%peer, "client certificate has no readable subject");
                                        return;
                                    }
                                },
                            };
                            (Box::new(tls), ids)
                        }
                        Err(e) => {
                            debug!(%peer, error = %e, "TLS connection refused");
                            return;
                        }
                    }
                }
            };
            let conn = Connection::new(shared, stream, peer, stop, tls_ids);
            if let Err(e) = conn.run().await {
                debug!(%peer, error = %e, "connection closed");
            }
            drop(permit);
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    let _ = notify_tx.send(());
    while tasks.join_next().await.is_some() {}
    Ok(())
}
