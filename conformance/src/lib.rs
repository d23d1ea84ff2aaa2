//! janus-conformance: proves janus right and fast against the real servers.
//!
//! - [`harness`]: the one shared way tests start a real `janus` process on
//!   ports chosen at run time; [`cluster`]: several of them as one cluster.
//! - [`reference`]: the same for the reference servers, real etcd 3.4 and
//!   real ZooKeeper 3.8 (Debian packages).
//! - [`differential`]: scenario files run against the reference servers
//!   and janus, compared as normalized transcripts.
//! - [`linearizability`]: a Wing-Gong/porcupine-style checker for histories
//!   of register operations, partitioned per register.
//! - [`chaos`]: fault runs (workload, recording, checks) for the
//!   linearizability test and the `janus-chaos` campaign.
//! - [`bench`]: the `janus-bench` driver's workloads, statistics and plots.
pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod differential;
pub mod harness;
pub mod linearizability;
pub mod reference;
