//! Compiles etcd's protos with protox (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic servers. The encoded descriptor set
//! is kept in OUT_DIR too: the JSON gateway uses it for proto3 JSON mapping.
//! janus's own import service is compiled apart, with a client as well.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/rpc.proto",
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/v3lock.proto",
        "proto/v3election.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("etcd_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;
    // janus's own import service: the `janus migrate` client uses it too.
    let import = "proto/janus/import.proto";
    println!("cargo:rerun-if-changed={import}");
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile([import], ["proto"])?)?;
    Ok(())
}
