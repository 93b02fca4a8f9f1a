//! Generates the gRPC code from `proto/` with a pure-Rust protobuf compiler: no system `protoc`.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/paraph/v1/common.proto",
        "proto/paraph/v1/admin.proto",
        "proto/paraph/v1/circuit.proto",
        "proto/paraph/v1/document.proto",
        "proto/paraph/v1/signature.proto",
        "proto/paraph/v1/delegation.proto",
        "proto/paraph/v1/audit.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    // The descriptor set (with imports and comments) that reflection serves and
    // `paraph api descriptor` writes for integrators.
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("paraph.v1.binpb"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // The servers decode requests with paraph's codec, which answers a malformed request
    // INVALID_ARGUMENT; the clients keep prost's, for which a malformed answer is INTERNAL. Two
    // passes: the messages with the servers, then the clients alone over those messages.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .codec_path("crate::grpc::codec::RequestCodec")
        .compile_fds(fds.clone())?;
    let clients = out.join("clients");
    std::fs::create_dir_all(&clients)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .extern_path(".paraph.v1", "crate::proto")
        .out_dir(&clients)
        .compile_fds(fds)?;
    Ok(())
}
