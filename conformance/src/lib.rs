//! janus-conformance: proves janus right and fast against the real servers.
//!
//! - [`harness`]: the one shared way tests start a real `janus` process on
//!   ports chosen at run time.
pub mod harness;
