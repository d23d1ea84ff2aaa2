//! Failures of the ZooKeeper frontend itself (not ZooKeeper error codes:
//! those are mapped in [`crate::cmd::error_code`]).

/// Why serving stopped or a connection was dropped.
#[derive(Debug, thiserror::Error)]
pub enum ZkFrontendError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent bytes that are not a valid jute record.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A frame larger than `max_frame_bytes`.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    /// The connection's watch subscription ended (compacted while lagging).
    #[error("watch stream ended: {0}")]
    WatchLost(janus_core::KvError),
    #[error("core: {0}")]
    Core(#[from] janus_core::CoreError),
}
