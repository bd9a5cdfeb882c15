//! `client evaluate RUN_DIR DATA --split test`: only the images the run held out, found in DATA by
//! their content, with the accuracy the run itself measured on them; a run without a test split,
//! or data lacking some of its test images, is refused with the reason.
#![cfg(feature = "engine")]

use easel_test_support::{assert_success, dark_and_light_dataset, output_text, train_locally};
use std::path::Path;
use std::process::Command;

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

fn train(dir: &Path, data: &Path, test_split: f64) -> std::path::PathBuf {
    let spec = dir.join(format!("spec-{test_split}.toml"));
    std::fs::write(
        &spec,
        format!(
            "[data]\npath = \"{}\"\nvalidation_split = 0.25\ntest_split = {test_split}\n\
             image_size = 32\nseed = 3\n\
             [model]\narchitecture = \"small_cnn\"\nhead = [16]\n[augment]\nflip = false\n\
             [train]\nepochs = 1\nbatch_size = 8\nprecision = \"fp32\"\n",
            data.display()
        ),
    )
    .unwrap();
    let run = dir.join(format!("run-{test_split}"));
    train_locally(env!("CARGO_BIN_EXE_client"), &spec, &run);
    run
}

/// How many test images the run announced when it started (`events.jsonl`).
fn test_images(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["kind"] == "started").then(|| event["test_images"].as_u64())?
        })
        .expect("a started event with the test images")
}

#[test]
fn evaluate_on_the_test_split_measures_the_held_out_images_the_run_measured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dark_and_light_dataset(&data, 20, 32);
    let run = train(dir.path(), &data, 0.2);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();

    let output = client()
        .args(["evaluate", "--json", "--device", "cpu", "--split", "test"])
        .arg(&run)
        .arg(&data)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&assert_success(&output)).unwrap();
    assert_eq!(json["split"], "test");
    let held_out = test_images(&run);
    assert!(held_out > 0);
    assert_eq!(json["images"], held_out);
    let accuracy = json["accuracy"].as_f64().unwrap();
    let measured = report["test_accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - measured).abs() < 1e-9,
        "{accuracy} vs the run's {measured}"
    );
    let text = assert_success(
        &client()
            .args(["evaluate", "--device", "cpu", "--split", "test"])
            .arg(&run)
            .arg(&data)
            .output()
            .unwrap(),
    );
    assert!(text.contains("held out: the run's test images"), "{text}");

    // The same images but the dark ones: half the test images are not there.
    let light_only = dir.path().join("light-only");
    dark_and_light_dataset(&light_only, 20, 32);
    std::fs::remove_dir_all(light_only.join("dark")).unwrap();
    let refused = client()
        .args(["evaluate", "--device", "cpu", "--split", "test"])
        .arg(&run)
        .arg(&light_only)
        .output()
        .unwrap();
    let text = output_text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "the data has {} of the run's {held_out} test images (first: dark/",
            held_out / 2
        )),
        "{text}"
    );
}

#[test]
fn a_run_without_a_test_split_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dark_and_light_dataset(&data, 12, 32);
    let run = train(dir.path(), &data, 0.0);
    let output = client()
        .args(["evaluate", "--device", "cpu", "--split", "test"])
        .arg(&run)
        .arg(&data)
        .output()
        .unwrap();
    let text = output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("kept no test images"), "{text}");
}
