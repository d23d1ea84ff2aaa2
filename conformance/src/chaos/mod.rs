//! Fault runs against a real janus cluster, shared by the linearizability
//! test and the `janus-chaos` campaign: [`workload`] drives clients of both
//! protocols and records what they saw ([`record`]), [`check`] decides
//! whether the recording is correct.
pub mod campaign;
pub mod check;
pub mod etcd_leases;
pub mod netns;
pub mod record;
pub mod workload;
pub mod zk_watch_order;
