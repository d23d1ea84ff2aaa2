//! What every connection of one ZooKeeper endpoint shares: the member, the
//! configuration, the live-connection registry, counters and latency, and
//! the signal that a session moved to another connection. The accept loop
//! (`server.rs`) builds it once; connections (`connection.rs`) and the
//! four-letter words (`fourlw.rs`) read it, so neither of those needs the
//! other.

use std::sync::atomic::{AtomicU64, Ordering};

use janus_core::Node;
use tokio::sync::broadcast;

use crate::session::Registry;
use crate::ZkConfig;

/// State shared by every connection of one endpoint.
pub struct Shared {
    pub node: Node,
    pub cfg: ZkConfig,
    /// Live connections, for `cons`/`stat`/`wchs`/`dump`.
    pub registry: Registry,
    /// Requests answered since start (`srvr`'s "Received"/"Sent").
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub started: std::time::Instant,
    /// Request latency since start (`srvr`, `mntr`, `/metrics`).
    pub latency: crate::latency::Latency,
    /// (session, connection id) each time a connection establishes a
    /// session: an older connection of that session on this member closes,
    /// as ZooKeeper closes the previous connection of a reconnecting
    /// session (`DisconnectReason.CLIENT_RECONNECT`).
    pub taken: broadcast::Sender<(i64, u64)>,
}

impl Shared {
    /// The state of a new endpoint: no connections, counters at zero.
    pub fn new(node: Node, cfg: ZkConfig) -> Shared {
        Shared {
            node,
            cfg,
            registry: Registry::default(),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            started: std::time::Instant::now(),
            latency: crate::latency::Latency::default(),
            taken: broadcast::channel(1024).0,
        }
    }

    pub fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }
}
