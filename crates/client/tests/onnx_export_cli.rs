//! `client export --format onnx`, checked against ONNX Runtime: for every architecture Easel
//! trains, a run trained here is exported, and ONNX Runtime (Python, `deploy/onnx_predict.py`,
//! which prepares images from the model's metadata alone) gives the same most likely class as
//! `client predict` on every image and probabilities within 1e-4.
#![cfg(feature = "engine")]

use easel_test_support::{assert_success, repo_root, sample_digits_at, train_locally};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLASSES: usize = 5;
const PER_CLASS: usize = 6;
/// The images are written at the models' size, so no reader resizes them. 40 px: VGG's fourth
/// pool halves an odd 5 (floor mode), and the deep CNN flattens a 5x5 map (the order counts).
const SIDE: u32 = 40;
const TOLERANCE: f64 = 1e-4;

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

/// The python of the ONNX Runtime install `deploy/onnxruntime.sh` makes (once, in the cache).
fn onnxruntime_python() -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_root().join("deploy/onnxruntime.sh"))
        .output()
        .unwrap();
    PathBuf::from(assert_success(&output).trim())
}

fn images_of(dataset: &Path) -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(dataset)
        .unwrap()
        .flat_map(|class| std::fs::read_dir(class.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    images.sort();
    images
}

/// Trains `architecture` for one epoch on `dataset` into `dir/run`.
fn train(dir: &Path, dataset: &Path, architecture: &str, pooling: &str) -> PathBuf {
    let spec = dir.join(format!("{architecture}-{pooling}.toml"));
    std::fs::write(
        &spec,
        format!(
            "name = \"{architecture}\"\n\
             [data]\npath = \"{}\"\nvalidation_split = 0.2\nimage_size = {SIDE}\nseed = 3\n\
             [model]\narchitecture = \"{architecture}\"\nhead = [16]\npooling = \"{pooling}\"\n\
             [augment]\nflip = false\n\
             [train]\nepochs = 1\nbatch_size = 8\noptimizer = \"sgd\"\nlearning_rate = 0.01\n\
             momentum = 0.9\nprecision = \"fp32\"\n",
            dataset.display()
        ),
    )
    .unwrap();
    let run = dir.join(format!("run-{architecture}-{pooling}"));
    train_locally(env!("CARGO_BIN_EXE_client"), &spec, &run);
    run
}

/// Per image: `client predict`'s probability of each class.
fn easel_predictions(run: &Path, images: &[PathBuf]) -> Vec<HashMap<String, f64>> {
    let output = client()
        .args(["predict", "--json", "--device", "cpu", "--top"])
        .arg(CLASSES.to_string())
        .arg(run)
        .args(images)
        .output()
        .unwrap();
    let json: Vec<Value> = serde_json::from_str(&assert_success(&output)).unwrap();
    json.iter()
        .map(|prediction| {
            prediction["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ranked| {
                    let class = ranked["class"].as_str().unwrap().to_string();
                    (class, ranked["probability"].as_f64().unwrap())
                })
                .collect()
        })
        .collect()
}

/// Per image: ONNX Runtime's probability of each class.
fn onnx_predictions(python: &Path, model: &Path, images: &[PathBuf]) -> Vec<HashMap<String, f64>> {
    let output = Command::new(python)
        .arg(repo_root().join("deploy/onnx_predict.py"))
        .arg(model)
        .args(images)
        .output()
        .unwrap();
    assert_success(&output)
        .lines()
        .map(|line| {
            let json: Value = serde_json::from_str(line).unwrap();
            json["probabilities"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(class, p)| (class.clone(), p.as_f64().unwrap()))
                .collect()
        })
        .collect()
}

/// The most likely classes: every class within `TOLERANCE` of the highest probability (a tie
/// can go either way in two runtimes).
fn most_likely(probabilities: &HashMap<String, f64>) -> Vec<&str> {
    let highest = probabilities.values().copied().fold(f64::MIN, f64::max);
    probabilities
        .iter()
        .filter(|(_, p)| highest - **p <= TOLERANCE)
        .map(|(class, _)| class.as_str())
        .collect()
}

/// What differs between Easel's and ONNX Runtime's predictions of one model, image by image.
fn differences(
    images: &[PathBuf],
    easel: &[HashMap<String, f64>],
    onnx: &[HashMap<String, f64>],
) -> Vec<String> {
    assert_eq!(easel.len(), images.len());
    assert_eq!(onnx.len(), images.len());
    let mut found = Vec::new();
    for ((image, easel), onnx) in images.iter().zip(easel).zip(onnx) {
        let name = image.display();
        let easel_top = most_likely(easel);
        let onnx_top = most_likely(onnx);
        if !easel_top.iter().any(|class| onnx_top.contains(class)) {
            found.push(format!(
                "{name}: easel says {easel_top:?}, onnx {onnx_top:?}"
            ));
        }
        for (class, p) in easel {
            let q = onnx.get(class).copied().unwrap_or(f64::NAN);
            if (p - q).abs() > TOLERANCE || q.is_nan() {
                found.push(format!("{name}: P({class}) easel {p:.6}, onnx {q:.6}"));
            }
        }
    }
    found
}

#[test]
fn every_architecture_exports_to_onnx_and_onnx_runtime_predicts_as_easel_does() {
    let python = onnxruntime_python();
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("digits");
    sample_digits_at(&dataset, CLASSES, PER_CLASS, SIDE);
    let images = images_of(&dataset);
    assert_eq!(images.len(), CLASSES * PER_CLASS);
    let models = [
        ("small_cnn", "flatten"),
        ("deep_cnn", "flatten"),
        ("deep_cnn", "avg"),
        ("vgg11", "flatten"),
        ("vgg11_bn", "flatten"),
        ("vgg13", "flatten"),
        ("vgg13_bn", "flatten"),
        ("vgg16", "flatten"),
        ("vgg16_bn", "avg"),
        ("vgg19", "flatten"),
        ("vgg19_bn", "flatten"),
    ];
    let mut failures = Vec::new();
    for (architecture, pooling) in models {
        let run = train(dir.path(), &dataset, architecture, pooling);
        let model = dir.path().join(format!("{architecture}-{pooling}.onnx"));
        let exported = client()
            .arg("export")
            .arg(&run)
            .args(["--format", "onnx", "--out"])
            .arg(&model)
            .output()
            .unwrap();
        let said = assert_success(&exported);
        assert!(said.contains("wrote") && model.is_file(), "{said}");
        let easel = easel_predictions(&run, &images);
        let onnx = onnx_predictions(&python, &model, &images);
        failures.extend(
            differences(&images, &easel, &onnx)
                .into_iter()
                .map(|difference| format!("{architecture} ({pooling}): {difference}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_export_of_a_directory_without_a_run_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let output = client().arg("export").arg(dir.path()).output().unwrap();
    let text = easel_test_support::output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("spec.toml"), "names the missing file: {text}");
}
