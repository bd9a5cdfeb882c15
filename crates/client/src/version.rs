//! `client --version`: the crate version plus what the binary can train with. Whether CUDA works
//! is only known on the machine running the binary, and asking initialises the CUDA driver, so it
//! is asked only when the user wants the version, not on every command.

/// Prints the long version and returns true when the only argument is `--version`/`-V`.
pub fn print_if_asked() -> bool {
    let mut args = std::env::args().skip(1);
    let asked = matches!(args.next().as_deref(), Some("--version" | "-V")) && args.next().is_none();
    if asked {
        println!("client {} ({})", env!("CARGO_PKG_VERSION"), runtime());
    }
    asked
}

#[cfg(feature = "engine")]
fn runtime() -> String {
    easel_engine::runtime_info().to_string()
}

#[cfg(not(feature = "engine"))]
fn runtime() -> String {
    "libtorch: not linked (submit-only build)".to_string()
}
