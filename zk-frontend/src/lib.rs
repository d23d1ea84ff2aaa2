//! janus-zk
