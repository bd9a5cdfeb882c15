include!("../engine/libtorch_link.rs");

/// Compiles `csrc/*.cpp` against the headers of the libtorch tch links, the
/// way torch-sys compiles its own C++ (C++17, the new libstdc++ ABI that PyTorch's wheels use
/// unless `LIBTORCH_CXX11_ABI` says otherwise, as torch-sys reads it).
fn main() {
    link_libtorch();
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys exports the libtorch lib folder (DEP_TCH_LIBTORCH_LIB)");
    // Where torch-sys looks: `LIBTORCH_INCLUDE` when set, else the install holding `lib/` (a
    // libtorch archive, or the `torch` folder of a PyTorch wheel, `LIBTORCH_USE_PYTORCH` too).
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    let root = std::env::var("LIBTORCH_INCLUDE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(&lib).join(".."));
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(root.join("include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        // libtorch's headers warn in ways this file cannot fix.
        .warnings(false)
        .file("csrc/cpu_block_cache.cpp")
        .file("csrc/multi_tensor_update.cpp")
        .file("csrc/pinned.cpp")
        .compile("easel_aten");
}
