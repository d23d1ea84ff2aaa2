//! janus-zk: the ZooKeeper 3.8 client wire protocol on top of janus-core.
//!
//! Shape (after tokio's mini-redis): [`server`] runs the accept loop and
//! builds what connections share ([`shared`]); [`connection`] owns one
//! client socket (framing, session, watches, ordered replies). Each request
//! goes through four steps:
//!
//! 1. decode: [`proto`] turns the frame into a [`proto::Request`];
//! 2. prepare: [`cmd::prepare`] makes a write a [`cmd::write::PreparedWrite`]
//!    (a [`cmd::write::WriteProposal`], or a reply decided from the request
//!    alone); other requests run through [`cmd::dispatch`];
//! 3. propose: the proposal's command goes to `Node::propose`;
//! 4. render: [`cmd::write::ReplyShape::render`] turns core's answer into the
//!    jute reply.
//!
//! `cmd/` has one file per group of opcodes. Core decides every tree rule;
//! this crate only translates.

pub mod cmd;
pub mod config;
pub mod connection;
pub mod error;
pub mod fourlw;
pub mod latency;
pub mod proto;
pub mod read_only;
pub mod sasl;
pub mod server;
pub mod session;
pub mod shared;
pub mod watches;

pub use config::{Tls, ZkConfig};
pub use error::ZkFrontendError;
pub use server::serve;
