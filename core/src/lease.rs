//! Leases in the state machine: grant and revoke (with the deletion of the
//! attached keys at one revision). Expiry is not decided here: the leader
//! proposes revokes (D9, see node.rs); the state machine only knows TTLs.

use std::collections::BTreeSet;

use crate::engine::Space;
use crate::kv::{LeaseGrantResponse, LeaseInfo};
use crate::state::{Fail, Lease, LeaseRecord, State, Wtx};
use crate::KvError;

/// etcd's MaxLeaseTTL: 9,000,000,000 seconds.
pub const MAX_LEASE_TTL_MS: i64 = 9_000_000_000_000;

/// Seconds for a TTL kept in milliseconds, rounded up.
pub fn ttl_secs(ttl_ms: i64) -> i64 {
    (ttl_ms + 999) / 1000
}

impl State {
    pub fn apply_lease_grant(
        &mut self,
        w: &mut Wtx,
        id: i64,
        ttl_ms: i64,
    ) -> Result<LeaseGrantResponse, Fail> {
        if id == 0 {
            // 0 means "pick one"; proposers replace it by a positive id
            // (D4: session ids stay positive). A negative id an etcd client
            // chose itself is granted, as etcd does.
            return Err(KvError::LeaseNotFound.into());
        }
        if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists.into());
        }
        if ttl_ms > MAX_LEASE_TTL_MS {
            return Err(KvError::LeaseTtlTooLarge.into());
        }
        let ttl_ms = ttl_ms.max(1);
        self.leases.insert(
            id,
            Lease {
                ttl_ms,
                keys: BTreeSet::new(),
                zk_fifo: Default::default(),
            },
        );
        let rec = postcard::to_stdvec(&LeaseRecord {
            ttl_ms,
            zk_fifo: Default::default(),
        })
        .unwrap_or_default();
        w.batch.put(Space::Leases, id.to_be_bytes().to_vec(), rec);
        Ok(LeaseGrantResponse {
            id,
            ttl: ttl_secs(ttl_ms),
        })
    }

    pub fn apply_lease_revoke(&mut self, w: &mut Wtx, id: i64) -> Result<(), Fail> {
        let Some(lease) = self.leases.get(&id) else {
            return Err(KvError::LeaseNotFound.into());
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        for k in keys {
            self.delete_key(w, &k)?;
        }
        self.leases.remove(&id);
        w.batch.remove(Space::Leases, id.to_be_bytes().to_vec());
        self.hub.lease_revoked(id);
        Ok(())
    }

    /// Lease facts without the remaining TTL (the node adds it).
    pub fn lease_info(&self, id: i64, keys: bool) -> Option<LeaseInfo> {
        let l = self.leases.get(&id)?;
        Some(LeaseInfo {
            id,
            granted_ttl: ttl_secs(l.ttl_ms),
            ttl: ttl_secs(l.ttl_ms),
            keys: if keys {
                l.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }
}
