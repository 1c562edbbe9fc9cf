//! Compiles the `.proto` contract into Rust types with prost.

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(
        &[
            "proto/courier/v1/gateway.proto",
            "proto/courier/v1/content.proto",
            "proto/courier/cluster/v1/cluster.proto",
        ],
        &["proto"],
    )
}
