//! A TorchScript archive as `model.pretrained` carries code that libtorch's loader runs (its
//! `__setstate__`). The fixture is a real `torch.jit.save` file whose `__setstate__` prints a
//! marker: `client validate` and `client train --local` refuse it, saying which formats are
//! read, and its code never runs.
// These commands run the engine: a submit-only build (`--no-default-features`) has none of them.
#![cfg(feature = "engine")]

use std::path::Path;
use std::process::{Command, Output};

use easel_test_support::{TORCHSCRIPT_CODE_MARKER, output_text, torch_fixture};

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

fn write_spec(dir: &Path) -> std::path::PathBuf {
    easel_test_support::dark_and_light_dataset(&dir.join("images"), 8, 32);
    let spec = dir.join("experiment.toml");
    let text = format!(
        "name = \"torchscript\"\n\
         [data]\npath = \"images\"\nvalidation_split = 0.25\nimage_size = 32\n\
         [model]\narchitecture = \"small_cnn\"\npretrained = \"{}\"\n\
         [train]\nepochs = 1\nbatch_size = 8\noptimizer = \"sgd\"\nlearning_rate = 0.01\nprecision = \"fp32\"\n\
         [local]\nsteps = 2\nimage_size = 32\nmax_images = 16\nbatch_size = 8\n",
        torch_fixture("torchscript_setstate.pt").display()
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

fn assert_refused_unrun(output: &Output) {
    let text = output_text(output);
    assert!(!output.status.success(), "{text}");
    assert!(
        !text.contains(TORCHSCRIPT_CODE_MARKER),
        "the archive's code ran: {text}"
    );
    assert!(
        text.contains("TorchScript archive") && text.contains("never runs code"),
        "the refusal says what the file is: {text}"
    );
    assert!(
        text.contains("safetensors") && text.contains("torch.save"),
        "the refusal names the formats that are read: {text}"
    );
}

#[test]
fn a_torchscript_archive_is_refused_by_validate_and_train_and_its_code_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path());
    assert_refused_unrun(&client().arg("validate").arg(&spec).output().unwrap());
    let run = dir.path().join("run");
    assert_refused_unrun(
        &client()
            .args(["train", "--local"])
            .arg(&spec)
            .arg("--out")
            .arg(&run)
            .args(["--device", "cpu"])
            .output()
            .unwrap(),
    );
    assert!(!run.join("report.json").exists());
}
