// Shared by the build scripts of every crate whose binaries or tests touch libtorch
// (`include!`d, because link arguments reach only the binaries of the crate that prints them).
//
// - `--as-needed` would drop libtorch_cuda.so (nothing references it by symbol), leaving CUDA
//   "unavailable" at run time, so it is linked explicitly with --no-as-needed when present.
// - The rpath lets the binaries find libtorch with an empty environment.
// `DEP_TCH_LIBTORCH_LIB` is exported by torch-sys (`links = "tch"`) to direct dependents only.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // Resolve the repository's `.libtorch` link so binaries keep working if the checkout moves.
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| lib.into());
    let lib = lib.display();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&format!("{lib}/libtorch_cuda.so")).exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
