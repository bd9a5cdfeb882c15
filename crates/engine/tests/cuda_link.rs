//! The CUDA link, checked on a CPU: a binary built against a CUDA build of libtorch must load
//! `libtorch_cuda.so`, or CUDA reads as unavailable on the GPU machine and the run trains on its
//! CPU. Nothing references that library by symbol, so a linker flag lost in a build change
//! drops it silently (see `libtorch_link.rs`); this test fails CI then, not the device run.

use std::path::Path;

/// Whether the libtorch this crate was built against has CUDA (a CPU-only libtorch has no
/// `libtorch_cuda.so` to load).
fn libtorch_has_cuda() -> bool {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.libtorch/lib");
    lib.join("libtorch_cuda.so").exists()
}

#[test]
#[cfg(target_os = "linux")]
fn asking_for_cuda_finds_libtorch_cuda_mapped_into_the_process() {
    if !libtorch_has_cuda() {
        eprintln!("libtorch without CUDA: nothing to check");
        return;
    }
    // On a machine without a GPU the answer is false; what matters is where it came from.
    let _ = tch::Cuda::is_available();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    assert!(
        maps.lines().any(|line| line.ends_with("/libtorch_cuda.so")),
        "libtorch_cuda.so is not mapped: the binary lost its CUDA link (--no-as-needed \
         -ltorch_cuda in crates/engine/libtorch_link.rs)"
    );
}
