//! Generates the protobuf types from `proto/` with protox (pure Rust: no protoc needed); the
//! replication service only with the `grpc` feature.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let records = [
        "alertmanager/nflogpb/nflog.proto",
        "alertmanager/silencepb/silence.proto",
    ];
    let cluster = "tocsin/cluster/v1/cluster.proto";
    for f in records.iter().chain([&cluster]) {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    prost_build::Config::new().compile_fds(protox::compile(records, [&root])?)?;
    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(protox::compile([cluster], [&root])?)?;
    }
    Ok(())
}
