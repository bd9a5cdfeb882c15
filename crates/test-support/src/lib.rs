//! What every crate's tests share, so each finds the same data the same way: the real sample
//! dataset and the PyTorch-made fixtures that `deploy/test.sh` prepares, the loopback S3
//! server's settings, generated image folders, how a finished command is checked, and how a test
//! waits for something to happen.

mod browser;
mod images;
pub mod mutations;
mod output;
mod s3;
mod wait;

pub use browser::{ColorScheme, LoadedPage, load_in_chromium, screenshot_in_chromium};
pub use images::{dark_and_light_dataset, noise_dataset, noise_dataset_named, sample_digits_at};
pub use output::{assert_success, output_text, train_locally};
pub use s3::{S3Settings, skip_requested};
pub use wait::{HANG_GUARD, POLL_INTERVAL, eventually, eventually_within};

use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// The MNIST sample (10 digit classes, one folder per class) built by `deploy/sample-data.sh`;
/// `EASEL_SAMPLE_DATA` points elsewhere. Panics saying how to build it.
pub fn sample_dataset() -> PathBuf {
    let dir = std::env::var_os("EASEL_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".easel-data/mnist-sample"));
    assert!(
        dir.join("0-zero").is_dir(),
        "the MNIST sample dataset is missing at {}: run `bash deploy/sample-data.sh` from the \
         repository root (deploy/test.sh does), or point EASEL_SAMPLE_DATA at a folder-per-class \
         copy",
        dir.display()
    );
    dir
}

/// What the TorchScript fixture `torchscript_setstate.pt` prints when its code runs (libtorch's
/// loader runs its `__setstate__`); seeing it anywhere means a reader ran uploaded code.
pub const TORCHSCRIPT_CODE_MARKER: &str = "EASEL-TORCHSCRIPT-CODE-RAN";

/// A file made by real PyTorch with `deploy/torch-fixtures.sh` (e.g. `vgg16_legacy.pth`).
pub fn torch_fixture(name: &str) -> PathBuf {
    let path = repo_root().join(".easel-data/torch-fixtures").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash deploy/torch-fixtures.sh` (deploy/test.sh does)",
        path.display()
    );
    path
}
