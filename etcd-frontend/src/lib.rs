//! janus-etcd
