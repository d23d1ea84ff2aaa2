//! Generated etcd protobuf types and tonic server traits (see `build.rs`).
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// janus's import service (`proto/janus/import.proto`), server and client.
pub mod migration {
    tonic::include_proto!("janus.migration");
}

/// The encoded `FileDescriptorSet` of the protos, for the JSON gateway.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptor.bin"));
