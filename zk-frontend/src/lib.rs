//! janus-zk: the ZooKeeper 3.8 client wire protocol on top of janus-core.
//!
//! Shape (after tokio's mini-redis): [`proto`] turns bytes into jute records
//! and back, [`connection`] owns one client socket (framing, session,
//! watches, ordered replies), `cmd/` has one file per group of opcodes that
//! turn a decoded request into core calls and a reply, and [`server`] runs
//! the accept loop. Core decides every tree rule; this crate only translates.

pub mod cmd;
pub mod config;
pub mod connection;
pub mod error;
pub mod fourlw;
pub mod latency;
pub mod proto;
pub mod server;
pub mod session;
pub mod watches;

pub use config::{Tls, ZkConfig};
pub use error::ZkFrontendError;
pub use server::serve;
