include!("libtorch_link.rs");

fn main() {
    link_libtorch();
    emit_libtorch_version();
}

/// Records the libtorch version this crate was built against, for `runtime_info()`.
/// A pip install has `torch/version.py` (`__version__ = '2.11.0+cu130'`) one level above `lib/`;
/// a standalone libtorch archive has a `build-version` file there.
fn emit_libtorch_version() {
    let version = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .ok()
        .and_then(|lib| {
            let root = std::path::Path::new(&lib).join("..");
            let version_py = root.join("version.py");
            let build_version = root.join("build-version");
            // Only a file that exists: cargo runs a build script again on every build while a
            // file it names is missing (a pip install has no `build-version`).
            for file in [&version_py, &build_version] {
                if file.exists() {
                    println!("cargo:rerun-if-changed={}", file.display());
                }
            }
            std::fs::read_to_string(&version_py)
                .ok()
                .and_then(|text| {
                    text.lines().find_map(|line| {
                        let value = line.trim().strip_prefix("__version__")?.trim();
                        let value = value.strip_prefix('=')?.trim();
                        Some(value.trim_matches(|c| c == '\'' || c == '"').to_string())
                    })
                })
                .or_else(|| {
                    std::fs::read_to_string(&build_version)
                        .ok()
                        .map(|s| s.trim().to_string())
                })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=EASEL_LIBTORCH_VERSION={version}");
}
