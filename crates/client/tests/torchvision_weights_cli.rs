//! A user with only torchvision's published weights file (the legacy, pre-1.6 `torch.save`
//! format) reaches the VGG16 transfer-learning path of `configs/vgg16-art.toml` without Python: `client validate` and
//! `client train --local` read the file as it is. The fixtures are state_dicts PyTorch 2.11
//! itself saved in that format, in torchvision's VGG16 and VGG11_bn layouts.
// These commands run the engine: a submit-only build (`--no-default-features`) has none of them.
#![cfg(feature = "engine")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

use easel_test_support::assert_success as check;

fn legacy_weights(name: &str) -> PathBuf {
    easel_test_support::torch_fixture(&format!("{name}_legacy.pth"))
}

/// Two classes of textured 32x32 images, dark and light.
fn write_dataset(root: &Path, per_class: u32) {
    easel_test_support::dark_and_light_dataset(root, per_class, 32);
}

fn write_spec(dir: &Path, architecture: &str, weights: &Path, frozen: bool) -> PathBuf {
    let spec = dir.join("experiment.toml");
    let text = format!(
        "name = \"legacy-{architecture}\"\n\
         [data]\npath = \"images\"\nvalidation_split = 0.25\nimage_size = 32\n\
         [model]\narchitecture = \"{architecture}\"\nhead = [32, 64, 128, 64]\n\
         pretrained = \"{}\"\nfreeze_backbone = {frozen}\n\
         [train]\nepochs = 2\nbatch_size = 8\noptimizer = \"sgd\"\nlearning_rate = 0.01\nprecision = \"fp32\"\n\
         [augment]\nflip = true\n\
         [local]\nsteps = 4\nimage_size = 32\nmax_images = 16\nbatch_size = 8\n",
        weights.display()
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// validate, then train --local; returns the run's events.jsonl.
fn validate_and_train(architecture: &str, weights: &str, frozen: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&dir.path().join("images"), 24);
    let spec = write_spec(dir.path(), architecture, &legacy_weights(weights), frozen);
    let validated = check(&client().arg("validate").arg(&spec).output().unwrap());
    assert!(validated.contains("pretrained from"), "{validated}");
    let run = dir.path().join("run");
    check(
        &client()
            .args(["train", "--local"])
            .arg(&spec)
            .arg("--out")
            .arg(&run)
            .args(["--device", "cpu", "--no-cache"])
            .output()
            .unwrap(),
    );
    assert!(run.join("report.json").is_file());
    assert!(run.join("weights/best.safetensors").is_file());
    std::fs::read_to_string(run.join("events.jsonl")).unwrap()
}

#[test]
fn torchvision_legacy_vgg16_weights_validate_and_train_frozen() {
    let events = validate_and_train("vgg16", "vgg16", true);
    assert!(
        events.contains("pretrained backbone: 26 tensors (14714688 values)"),
        "{events}"
    );
    assert!(events.contains("features cached: 48 images"), "{events}");
}

#[test]
fn torchvision_legacy_vgg11_bn_weights_validate_and_train() {
    let events = validate_and_train("vgg11_bn", "vgg11_bn", false);
    assert!(
        events.contains("pretrained backbone: 48 tensors"),
        "{events}"
    );
    assert!(
        events.contains("ignored 8 batch-norm num_batches_tracked counters"),
        "{events}"
    );
}
