//! `client --version`: the crate version plus what the binary can train with. The libtorch
//! version is fixed at build time, but whether CUDA works is only known on the machine running
//! the binary, so the text is computed at run time (once) and leaked to give clap its
//! `&'static str`.

use std::sync::OnceLock;

pub fn long_version() -> &'static str {
    static TEXT: OnceLock<&'static str> = OnceLock::new();
    TEXT.get_or_init(|| {
        Box::leak(format!("{} ({})", env!("CARGO_PKG_VERSION"), runtime()).into_boxed_str())
    })
}

#[cfg(feature = "engine")]
fn runtime() -> String {
    let info = easel_engine::runtime_info();
    if info.cuda_available {
        format!(
            "libtorch {}, CUDA available: yes, {} device(s), cuDNN: {}",
            info.libtorch_version,
            info.cuda_device_count,
            if info.cudnn_available { "yes" } else { "no" }
        )
    } else {
        format!("libtorch {}, CUDA available: no", info.libtorch_version)
    }
}

#[cfg(not(feature = "engine"))]
fn runtime() -> String {
    "libtorch: not linked (submit-only build)".to_string()
}
