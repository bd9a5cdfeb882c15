//! The laptop workflow end to end with the real binary on a tiny generated dataset:
//! validate -> train --local -> evaluate -> predict, and the "image too small" refusal.
// These commands run the engine: a submit-only build (`--no-default-features`) has none of them.
#![cfg(feature = "engine")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

fn check(output: &Output) {
    easel_test_support::assert_success(output);
}

/// Two classes a small CNN separates at once: dark and light 16x16 images with some texture.
fn write_dataset(root: &Path, per_class: u32) {
    easel_test_support::dark_and_light_dataset(root, per_class, 16);
}

fn write_spec(dir: &Path, architecture: &str, image_size: u32) -> PathBuf {
    let spec = dir.join("experiment.toml");
    let text = format!(
        "name = \"tiny\"\n\
         [data]\npath = \"images\"\nvalidation_split = 0.25\nimage_size = {image_size}\n\
         [model]\narchitecture = \"{architecture}\"\nhead = [16]\n\
         [train]\nepochs = 2\nbatch_size = 8\noptimizer = \"adam\"\nlearning_rate = 0.003\nprecision = \"fp32\"\n\
         [augment]\nflip = false\n\
         [local]\nsteps = 8\nimage_size = 16\nmax_images = 16\nbatch_size = 8\n"
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

#[test]
fn image_size_too_small_for_the_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&dir.path().join("images"), 4);
    let spec = write_spec(dir.path(), "vgg16", 16);
    let output = client().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("error: image size 16x16 is too small for vgg16"),
        "{text}"
    );
    assert!(text.contains("proof of concept skipped"), "{text}");
}

#[test]
fn a_model_too_large_for_memory_is_refused_by_validate_and_train_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&dir.path().join("images"), 4);
    let spec = write_spec(dir.path(), "small_cnn", 16);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("head = [16]", "head = [2000000000]");
    std::fs::write(&spec, text).unwrap();
    let validated = client().arg("validate").arg(&spec).output().unwrap();
    let said = String::from_utf8_lossy(&validated.stdout);
    assert_eq!(validated.status.code(), Some(1), "{said}");
    assert!(said.contains("does not fit in memory"), "{said}");
    assert!(said.contains("make model.head"), "{said}");
    let trained = client()
        .args(["train", "--local"])
        .arg(&spec)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&trained.stderr);
    assert_eq!(trained.status.code(), Some(1), "{said}");
    assert!(said.contains("does not fit in memory"), "{said}");
}

#[test]
fn validate_train_evaluate_predict_on_a_tiny_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_dataset(&images, 12);
    let spec = write_spec(dir.path(), "small_cnn", 16);

    let validated = client()
        .args(["validate", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    check(&validated);
    let report: serde_json::Value = serde_json::from_slice(&validated.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["dataset"]["images"], 24);
    assert_eq!(report["split"]["validation"], 6);
    assert_eq!(report["estimate"]["steps_per_epoch"], 3);
    assert_eq!(report["proof_of_concept"]["loss_fell"], true);
    assert!(!dir.path().join("runs").exists());

    let run = dir.path().join("runs/tiny");
    let cache = dir.path().join("cache");
    let trained = client()
        .args(["train", "--local", "--device", "cpu", "--cache-dir"])
        .arg(&cache)
        .arg(&spec)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    check(&trained);
    for artifact in [
        "spec.toml",
        "manifest.json",
        "classes.json",
        "metrics.jsonl",
        "report.json",
        "weights/best.safetensors",
        "events.jsonl",
    ] {
        assert!(
            run.join(artifact).is_file(),
            "{artifact} missing from the run directory"
        );
    }
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let kinds: Vec<String> = events
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(kinds.iter().any(|kind| kind == "started"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|kind| *kind == "epoch").count(),
        2,
        "{kinds:?}"
    );

    let evaluated = client()
        .args(["evaluate", "--json", "--device", "cpu"])
        .arg(&run)
        .arg(&images)
        .output()
        .unwrap();
    check(&evaluated);
    let evaluation: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    assert_eq!(evaluation["images"], 24);
    assert!(
        evaluation["accuracy"].as_f64().unwrap() > 0.75,
        "{evaluation:#}"
    );

    let dark = images.join("dark/000.png");
    let light = images.join("light/000.png");
    let predicted = client()
        .args(["predict", "--json", "--top", "1", "--device", "cpu"])
        .arg(&run)
        .arg(&dark)
        .arg(&light)
        .output()
        .unwrap();
    check(&predicted);
    let predictions: serde_json::Value = serde_json::from_slice(&predicted.stdout).unwrap();
    assert_eq!(predictions[0]["class"], "dark", "{predictions:#}");
    assert_eq!(predictions[1]["class"], "light", "{predictions:#}");
    assert_eq!(predictions[0]["top"].as_array().unwrap().len(), 1);
}

#[test]
fn ctrl_c_keeps_a_checkpoint_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&dir.path().join("images"), 12);
    let spec = write_spec(dir.path(), "small_cnn", 16);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("epochs = 2", "epochs = 60");
    std::fs::write(&spec, text).unwrap();
    let run = dir.path().join("run");
    let train = || {
        let mut command = client();
        command
            .args(["train", "--local", "--device", "cpu", "--no-cache"])
            .arg(&spec)
            .arg("--out")
            .arg(&run);
        command
    };
    let epochs_logged = || {
        std::fs::read_to_string(run.join("events.jsonl"))
            .map(|events| {
                events
                    .lines()
                    .filter(|line| line.contains("\"kind\":\"epoch\""))
                    .count()
            })
            .unwrap_or(0)
    };

    let mut child = train()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while epochs_logged() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no epoch finished in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "Ctrl-C ends the run with status 130"
    );
    let kept = epochs_logged();
    assert!(kept < 60, "the run stopped early ({kept} epochs logged)");
    assert!(run.join("checkpoints/last.ckpt").is_file());

    let resumed = train().output().unwrap();
    check(&resumed);
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(
        events.contains("resumed after epoch"),
        "the second run resumes from the checkpoint"
    );
    assert_eq!(
        epochs_logged(),
        60,
        "each epoch is trained once over both runs"
    );
}
