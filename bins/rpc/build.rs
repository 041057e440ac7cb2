//! Compiles `proto/cairn/admin/v1/admin.proto` with protox (pure Rust: no
//! system `protoc` needed) and generates the tonic client, and the server
//! stubs when the `server` feature is on.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary can be reused from a clone at
    // another path (a shared target directory), so nothing path-like may be
    // baked in at its compile time.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("cairn/admin/v1/admin.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(std::env::var_os("CARGO_FEATURE_SERVER").is_some())
        .compile_fds(fds)?;
    Ok(())
}
