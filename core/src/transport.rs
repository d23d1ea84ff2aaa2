//! What the raft loop needs from a transport, as a trait, so that the same
//! loop runs over real TCP ([`crate::peer::Peers`]) in production and over a
//! simulated, seeded network in the deterministic cluster simulation
//! ([`crate::sim`]). Inbound traffic does not go through this trait: a
//! transport hands what it receives to the loop as [`crate::peer::PeerEvent`]s.

use std::time::Duration;

use futures::future::BoxFuture;
use raft::prelude::Message;

use crate::corrupt_check::{PeerHash, PeerHashError};
use crate::lease_forward::Renewal;
use crate::CoreError;

/// A snapshot's data, chunk by chunk, read lazily from a consistent view.
pub type Chunks = Box<dyn Iterator<Item = Result<Vec<u8>, CoreError>> + Send>;

/// The outbound half of a member's transport. Every call must return
/// without blocking on the network: a message that cannot be sent is
/// dropped (raft retransmits), never waited for.
pub trait Outbox: Send + Sync {
    /// Sends a raft message (not a snapshot) to `m.to`; unknown recipients
    /// are ignored.
    fn send_raft(&self, m: &Message);

    /// Sends a `MsgSnapshot` and its data. The transport must eventually
    /// report the outcome to this member's raft loop as
    /// `PeerEvent::SnapshotSent`, so that raft leaves the snapshot state.
    fn send_snapshot(&self, m: Message, chunks: Chunks);

    /// Forwards a client's lease keepalive to the leader `to` and resolves
    /// with its answer (D9, [`crate::lease_forward`]). A transport without
    /// member-to-member requests answers that the peer cannot be reached.
    fn renew_lease(&self, to: u64, _lease: i64) -> BoxFuture<'static, Result<Renewal, String>> {
        Box::pin(std::future::ready(Err(format!(
            "no requests to peer {to:x} on this transport"
        ))))
    }

    /// Makes the set of reachable peers match the member list
    /// (id, first peer URL); this member's own id is skipped.
    fn set_members(&self, members: &[(u64, String)]);

    /// Takes the data of a received snapshot, by its (index, term), once
    /// raft asks to install it.
    fn take_staged(&self, index: u64, term: u64) -> Option<Vec<u8>>;

    /// Stops sending and receiving (member stop). Idempotent.
    fn shutdown(&self) {}

    /// Asks peer `to` for its HashKV at `revision` (the corruption check,
    /// [`crate::corrupt_check`]). A transport without member-to-member
    /// requests answers that the peer cannot be reached, which the check
    /// skips, as etcd skips a peer it cannot ask.
    fn hash_kv(
        &self,
        to: u64,
        _revision: i64,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<PeerHash, PeerHashError>> {
        Box::pin(std::future::ready(Err(PeerHashError::Unreachable(
            format!("no requests to peer {to:x} on this transport"),
        ))))
    }
}
