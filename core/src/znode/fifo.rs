//! FIFO order of a ZooKeeper connection's writes.
//!
//! ZooKeeper guarantees that a client's requests apply in the order it sent
//! them *on one connection*; janus pipelines writes through the log, where
//! an earlier write can be lost (a leader change drops it) while a later one
//! commits. So every write a connection proposes carries the connection's
//! id and its number on that connection (1, 2, ...), and the state machine
//! applies it only if it directly follows the last write applied from the
//! same connection, or is the connection's first. A write refused here is
//! answered `OutOfOrder` (ConnectionLoss on the wire), so the client
//! reconnects and learns what happened.
//!
//! The order is per connection, not per session: after a reconnect the
//! client resends what it had not seen answered, on a new connection whose
//! numbering starts again at 1 (the first version kept one counter per
//! session, which refused such legitimate resends whenever the new
//! connection read a stale counter, e.g. on a lagging follower, or the old
//! connection's last write applied after the new one read it). A session
//! remembers its most recently used connections only; a connection evicted
//! from that table has its next write refused, which is safe.

use serde::{Deserialize, Serialize};

/// Connections of one session remembered at once.
const REMEMBERED: usize = 8;

/// The last write number applied per recent connection of one session,
/// most recently used last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fifo {
    conns: Vec<(u64, u64)>,
}

impl Fifo {
    /// Whether write number `seq` of connection `conn` may apply now.
    /// `seq == 0` is an unsequenced write (always allowed).
    pub fn allows(&self, conn: u64, seq: u64) -> bool {
        if seq == 0 {
            return true;
        }
        match self.conns.iter().find(|(c, _)| *c == conn) {
            Some((_, last)) => seq == last + 1,
            None => seq == 1,
        }
    }

    /// Records that write `seq` of `conn` was decided (applied or answered
    /// with a ZooKeeper error).
    pub fn advance(&mut self, conn: u64, seq: u64) {
        if seq == 0 {
            return;
        }
        self.conns.retain(|(c, _)| *c != conn);
        if self.conns.len() >= REMEMBERED {
            self.conns.remove(0);
        }
        self.conns.push((conn, seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_per_connection() {
        let mut f = Fifo::default();
        assert!(f.allows(7, 1) && !f.allows(7, 2));
        f.advance(7, 1);
        assert!(f.allows(7, 2) && !f.allows(7, 3) && !f.allows(7, 1));
        // A new connection starts at 1, whatever the old one did.
        assert!(f.allows(9, 1) && !f.allows(9, 2));
        f.advance(9, 1);
        // The old connection's pipelined write still follows its own order.
        assert!(f.allows(7, 2));
        f.advance(7, 2);
        assert!(f.allows(9, 2));
        assert!(f.allows(1, 0), "unsequenced");
    }

    #[test]
    fn only_recent_connections_are_remembered() {
        let mut f = Fifo::default();
        for c in 0..REMEMBERED as u64 + 1 {
            f.advance(c, 3);
        }
        assert!(!f.allows(0, 4), "evicted: its next write is refused");
        assert!(f.allows(1, 4), "still remembered");
    }
}
