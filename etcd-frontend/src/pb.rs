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

/// The encoded `FileDescriptorSet` of the three protos, for the JSON gateway.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptor.bin"));
