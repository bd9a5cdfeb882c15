//! Generates ONNX's messages from `proto/onnx/onnx.proto` with prost; `protox` compiles the file
//! (pure Rust), so building needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("onnx/onnx.proto").display()
    );
    let descriptors = protox::compile(["onnx/onnx.proto"], [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
