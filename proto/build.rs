//! Compiles `cluster.proto` into Rust, in pure Rust.
//!
//! protox parses the `.proto` file into a `FileDescriptorSet` (with source
//! info, so comments become doc comments); tonic-prost-build turns the set
//! into prost messages plus tonic service traits and clients. No `protoc`
//! binary is looked for or run: `compile_fds` takes the descriptors as they
//! are, and `PROTOC` is pointed at a path that does not exist so that any
//! code path that did try to run it would fail the build instead of quietly
//! depending on the machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto = manifest_dir.join("cluster.proto");

    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed=build.rs");

    // A build script is single-threaded: setting the variable is sound.
    std::env::set_var("PROTOC", "/nonexistent/quicmq-never-runs-protoc");

    let fds = protox::compile([&proto], [&manifest_dir])?;

    // The encoded descriptors, for tests and for gRPC server reflection.
    std::fs::write(
        out_dir.join("cluster_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Clients get no `connect(addr)` helper, so the generated code needs
        // no transport; callers build a channel and use `new`.
        .build_transport(false)
        // Payloads, keys and opaque Raft messages as `bytes::Bytes`:
        // decoding slices the received buffer instead of copying.
        .bytes(".quicmq.cluster.v1")
        .out_dir(&out_dir)
        .compile_fds(fds)?;
    Ok(())
}
