//! janus-core: the replicated, revisioned store behind both protocols.
pub mod command;
pub mod engine;
mod error;
pub mod kv;
pub mod znode;

pub use error::{CoreError, KvError, ZkError};
pub mod node;
pub mod watch;

pub use command::{Applied, Command, CommandResult};
pub use node::{Header, Node, NodeConfig, Status, Watcher};
