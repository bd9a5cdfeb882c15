//! `client validate` and `client --version` as a user runs them: the real binary, real files.
// These commands run the engine: a submit-only build (`--no-default-features`) has none of them.
#![cfg(feature = "engine")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn repo_config(name: &str) -> String {
    std::fs::read_to_string(repo().join("configs").join(name)).unwrap()
}

/// The MNIST sample built by `deploy/sample-data.sh`.
fn sample_dir() -> PathBuf {
    easel_test_support::sample_dataset()
}

/// `client validate --json SPEC` run in `dir`: its exit code and its JSON report.
fn validate_json(
    dir: &Path,
    spec: impl AsRef<std::ffi::OsStr>,
) -> (Option<i32>, serde_json::Value) {
    let output = client()
        .current_dir(dir)
        .args(["validate", "--json"])
        .arg(spec)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap();
    (output.status.code(), report)
}

/// Every file under `dir`, to show a command wrote nothing.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Replaces the one line equal to `old` (trimmed) and returns its 1-based number.
fn replace_line(text: &mut String, old: &str, new: &str) -> usize {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let matches: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim() == old)
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "`{old}` should appear exactly once in the example"
    );
    lines[matches[0]] = new.to_string();
    *text = lines.join("\n") + "\n";
    matches[0] + 1
}

#[test]
fn broken_vgg16_spec_reports_every_problem_with_its_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    let mut text = repo_config("vgg16-art.toml");
    let data_line = replace_line(
        &mut text,
        "path = \"../data/art\"",
        "path = \"../data/art\"",
    );
    let unknown_line = replace_line(&mut text, "pooling = \"flatten\"", "poolling = \"flatten\"");
    let epochs_line = replace_line(&mut text, "epochs = 30", "epochs = -30");
    let type_line = replace_line(&mut text, "batch_size = 32", "batch_size = \"thirty-two\"");
    let spec = configs.join("vgg16-art.toml");
    std::fs::write(&spec, &text).unwrap();
    let before = files_under(dir.path());

    let output = client()
        .current_dir(dir.path())
        .args(["validate", "configs/vgg16-art.toml"])
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let missing = std::path::absolute(configs.join("../data/art")).unwrap();
    let expected = [
        format!(
            "configs/vgg16-art.toml:{data_line}:8: data.path: dataset folder not found: {}",
            missing.display()
        ),
        format!(
            "configs/vgg16-art.toml:{unknown_line}:1: model.poolling: unknown key `poolling` (did you mean `pooling`?)"
        ),
        format!(
            "configs/vgg16-art.toml:{epochs_line}:10: train.epochs: must be at least 1, got -30"
        ),
        format!(
            "configs/vgg16-art.toml:{type_line}:14: train.batch_size: expected an integer, found string \"thirty-two\""
        ),
        "4 problems in configs/vgg16-art.toml; nothing else was checked".to_string(),
    ];
    assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        files_under(dir.path()),
        before,
        "validate must not write anything"
    );
}

#[test]
fn broken_spec_problems_come_out_as_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("exp.toml");
    std::fs::write(&spec, "[data]\npath = \"images\"\n[train]\nepochs = 0\n").unwrap();
    let (code, json) = validate_json(dir.path(), &spec);
    assert_eq!(code, Some(1));
    assert_eq!(json["ok"], false);
    let errors = json["spec_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{json:#}");
    assert_eq!(errors[0]["path"], "data.path");
    assert_eq!(errors[1]["path"], "train.epochs");
    assert_eq!(errors[1]["line"], 4);
    assert_eq!(errors[1]["column"], 10);
    assert_eq!(errors[1]["message"], "must be at least 1, got 0");
}

#[test]
fn version_names_libtorch_with_an_empty_environment() {
    let output = client().env_clear().arg("--version").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!(
            "client {} (libtorch 2.11.0",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(text.contains("CUDA available: "), "{text}");
}

/// The shipped CPU demo validates against the sample dataset (`deploy/sample-data.sh`).
#[test]
fn demo_spec_validates_on_the_sample_dataset() {
    sample_dir();
    let (code, report) = validate_json(&repo(), "configs/demo-cpu.toml");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["dataset"]["classes"].as_array().unwrap().len(), 10);
    assert_eq!(report["dataset"]["images"], 5000);
    assert_eq!(report["proof_of_concept"]["loss_fell"], true);
}

/// The VGG16 art example (`configs/vgg16-art.toml`), unchanged but for its data, validates end to end (proof of
/// concept at the reduced size, estimate of the full run). Five digit classes of the sample stand
/// in for the five art classes, which are not shipped.
#[test]
fn vgg16_example_validates_and_estimates_the_full_run() {
    let sample = sample_dir();
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    for class in ["0-zero", "1-one", "2-two", "3-three", "4-four"] {
        let target = dir.path().join("data/art").join(class);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(sample.join(class)).unwrap().take(60) {
            let path = entry.unwrap().path();
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        configs.join("vgg16-art.toml"),
        repo_config("vgg16-art.toml"),
    )
    .unwrap();

    let (code, report) = validate_json(dir.path(), "configs/vgg16-art.toml");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["dataset"]["images"], 300);
    assert_eq!(report["proof_of_concept"]["loss_fell"], true);
    assert_eq!(report["proof_of_concept"]["loss_finite"], true);
    let estimate = &report["estimate"];
    // VGG16's convolutional base (14,714,688) plus the 32-64-128-64 head on a 512x4x4 map.
    let parameters = estimate["parameters"].as_u64().unwrap();
    assert!(parameters > 14_714_688, "{estimate:#}");
    assert_eq!(estimate["feature_map"], serde_json::json!([512, 4, 4]));
    assert!(
        estimate["steps_per_epoch"].as_u64().unwrap() > 0,
        "{estimate:#}"
    );
}

#[test]
fn a_dataset_in_object_storage_is_left_to_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("exp.toml");
    std::fs::write(
        &spec,
        "name = \"digits\"\n[data]\npath = \"s3://bucket/datasets/digits\"\n",
    )
    .unwrap();
    let output = client().arg("validate").arg(&spec).output().unwrap();
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "dataset   s3://bucket/datasets/digits: in object storage; the worker scans it when the job starts"
        ),
        "{text}"
    );
    assert!(!text.contains("proof of concept "), "{text}");

    let (code, json) = validate_json(dir.path(), &spec);
    assert_eq!(code, Some(0));
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["object_store_dataset"], "s3://bucket/datasets/digits");
    assert!(json["dataset"].is_null() && json["proof_of_concept"].is_null());

    // Beside a local folder it is a spec problem, with its line.
    std::fs::write(
        &spec,
        "[data]\npaths = [\"s3://bucket/digits\", \"more\"]\n",
    )
    .unwrap();
    let (code, json) = validate_json(dir.path(), &spec);
    assert_eq!(code, Some(1));
    let errors = json["spec_errors"].as_array().unwrap();
    assert_eq!(errors[0]["path"], "data.paths[0]", "{json:#}");
    assert_eq!(errors[0]["line"], 2);
}

/// A `[sweep]` beside the demo spec: every trial checked and estimated, the dataset scanned once,
/// and the proof of concept trained once per distinct model (epochs and learning rates do not
/// change what it trains).
#[test]
fn a_sweep_validates_every_trial_and_tries_each_distinct_model_once() {
    let sample = sample_dir();
    let dir = tempfile::tempdir().unwrap();
    let demo = repo_config("demo-cpu.toml").replace(
        "path = \"../.easel-data/mnist-sample\"",
        &format!("path = \"{}\"", sample.display()),
    );
    std::fs::write(
        dir.path().join("sweep.toml"),
        format!(
            "{demo}\n[sweep]\n[sweep.grid]\n\"train.epochs\" = [1, 2]\n\
             \"model.dropout\" = [0.0, 0.2]\n"
        ),
    )
    .unwrap();
    let (code, report) = validate_json(dir.path(), "sweep.toml");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{report:#}");
    let stands_for: Vec<u64> = trials
        .iter()
        .map(|t| t["proof_of_concept_of_trial"].as_u64().unwrap())
        .collect();
    // Keys in name order: model.dropout varies slowest. Trials 2 and 4 (two epochs) have the
    // models of trials 1 and 3.
    assert_eq!(stands_for, [1, 1, 3, 3], "{report:#}");
    assert!(
        trials
            .iter()
            .all(|t| t["estimate"]["total_steps"].as_u64().unwrap() > 0)
    );
    assert_eq!(trials[3]["params"]["train.epochs"], 2);
    assert_eq!(trials[3]["params"]["model.dropout"], 0.2);
    assert_eq!(report["dataset"]["images"], 5000);
}

#[test]
fn a_bad_sweep_is_refused_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("sweep.toml"),
        "[data]\npath = \"data\"\n[sweep]\n[sweep.grid]\n\"train.batch_size\" = [16, 0]\n\
         \"model.dropout\" = []\n",
    )
    .unwrap();
    let (code, report) = validate_json(dir.path(), "sweep.toml");
    assert_eq!(code, Some(1), "{report:#}");
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        problems,
        ["sweep.toml: sweep.grid.\"model.dropout\": an empty list tries nothing"],
        "the sweep table's own problems come first"
    );

    std::fs::write(
        dir.path().join("sweep.toml"),
        "[data]\npath = \"data\"\n[sweep]\n[sweep.grid]\n\"train.batch_size\" = [16, 0]\n",
    )
    .unwrap();
    let (code, report) = validate_json(dir.path(), "sweep.toml");
    assert_eq!(code, Some(1), "{report:#}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("trial 2 (train.batch_size = 0): train.batch_size"),
        "{problems}"
    );
}
