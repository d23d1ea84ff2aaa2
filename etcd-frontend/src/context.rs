//! What every etcd service shares: the node and the configuration.

use std::sync::Arc;
use std::time::Duration;

use janus_core::Node;

use crate::pb::etcdserverpb as pb;
use crate::status::ApiError;
use crate::EtcdConfig;

/// The etcd version janus reports (Status, `/version`): the API generation
/// it implements, which clients use to pick features.
pub const ETCD_VERSION: &str = "3.4.31";
/// The cluster version reported by `/version`.
pub const CLUSTER_VERSION: &str = "3.4.0";

/// etcd's minimum lease TTL with default timing: ceil(1.5 × election
/// timeout of 1 s) seconds (`lessor.minLeaseTTL`).
pub const MIN_LEASE_TTL: i64 = 2;
/// etcd's `lease.MaxLeaseTTL` in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Shared by all services of one listener; cheap to clone.
#[derive(Clone)]
pub struct Shared(Arc<Inner>);

pub struct Inner {
    pub node: Node,
    pub cfg: EtcdConfig,
    /// How often watchers created with `progress_notify` get an empty
    /// progress response (`EtcdConfig::watch_progress_notify_interval`).
    pub progress_interval: Duration,
    /// Set once the server shuts down: long-lived streams (watch,
    /// keepalive) end so graceful shutdown does not wait on them forever.
    pub stop: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Shared {
    pub fn new(node: Node, cfg: EtcdConfig) -> Shared {
        let progress_interval = cfg
            .watch_progress_notify_interval
            .max(Duration::from_millis(1));
        let (stop, _) = tokio::sync::watch::channel(false);
        Shared(Arc::new(Inner {
            node,
            cfg,
            progress_interval,
            stop,
        }))
    }

    /// Resolves once the server is shutting down.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    /// A full response header. `revision: None` takes the current store
    /// revision, as etcd's `header.fill` does when a response carries none.
    pub fn header(&self, revision: Option<i64>) -> Option<pb::ResponseHeader> {
        let h = self.node.header();
        Some(pb::ResponseHeader {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: revision.unwrap_or(h.revision),
            raft_term: h.raft_term,
        })
    }

    /// The cluster's raised alarms (replicated by core) in etcd's form.
    pub fn alarms(&self) -> Vec<pb::AlarmMember> {
        self.node
            .alarms()
            .into_iter()
            .map(|a| pb::AlarmMember {
                member_id: a.member_id,
                alarm: a.kind as i32,
            })
            .collect()
    }

    /// etcd's quota check before a write that may grow the database
    /// (`quotaKVServer`); core decides ([`janus_core::alarm`]). `cost` is
    /// etcd's quota cost of the request (0 for a txn that puts nothing:
    /// those still run under the alarm).
    pub async fn check_quota(&self, cost: usize) -> Result<(), ApiError> {
        Ok(self.node.check_quota(cost as u64).await?)
    }
}
