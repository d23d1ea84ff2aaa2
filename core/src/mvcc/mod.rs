//! Multi-version storage with etcd semantics.
//!
//! Every write gets a revision `(main, sub)`: `main` is the store revision of
//! the command (one per command that changes something), `sub` numbers the
//! writes inside it (a txn or ZooKeeper multi writes several keys at one
//! main revision). Records live on disk in the `revs` keyspace by revision;
//! the in-memory [`key_index::KeyIndex`] maps each key to its revisions, so a
//! read at any revision finds the right record with one point lookup.
pub mod key_index;
pub mod range;
pub mod record;
pub mod revision;
pub mod write;

pub use key_index::{KeyIndex, Live};
pub use record::Record;
pub use revision::Rev;
