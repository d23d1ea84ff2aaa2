//! ZooKeeper tree semantics kept by core (D1–D5).
mod types;
pub use types::*;
