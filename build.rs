//! Compiles `proto/*.proto` with protox (pure Rust, no `protoc` needed) and prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fraudmesh/v1/endorsement.proto",
        "proto/fraudmesh/v1/sighting.proto",
        "proto/fraudmesh/v1/sync.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
