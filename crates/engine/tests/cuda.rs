//! Training on a CUDA device: bf16, channels-last, the dataset kept on the GPU.
//! Opt-in: `cargo test -p easel-engine --features cuda-tests --test cuda` on a machine with a GPU.
#![cfg(feature = "cuda-tests")]

mod support;

use easel_engine::{DeviceChoice, TrainEvent, TrainJob, TrainOutcome};
use std::sync::atomic::AtomicBool;
use support::{sample, spec, subset};

fn train_on_cuda(
    spec_text: &str,
    image_side: u32,
    epochs: u32,
    manifest: &easel_dataset::Manifest,
) -> (TrainOutcome, Vec<TrainEvent>) {
    assert!(
        tch::Cuda::is_available(),
        "cuda-tests need a CUDA device and a CUDA build of libtorch"
    );
    let mut spec = spec(epochs, "");
    let extra: toml::Table = toml::from_str(spec_text).unwrap();
    if let Some(model) = extra.get("model") {
        spec.model = model.clone().try_into().unwrap();
    }
    spec.data.image_size = easel_spec::ImageSize::Square(image_side);
    spec.train.precision = easel_spec::Precision::Bf16;
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let job = TrainJob {
        spec: &spec,
        manifest,
        source: &sample().source,
        device: DeviceChoice::Cuda(0),
        run_dir: dir.path(),
        cache_dir: None,
        cancel: &cancel,
    };
    let mut events = Vec::new();
    let outcome = easel_engine::train(&job, &mut |event| events.push(event)).expect("trains");
    (outcome, events)
}

#[test]
fn small_cnn_learns_digits_in_bf16_on_the_gpu() {
    let manifest = subset(&(0..10).collect::<Vec<_>>(), 300, 1);
    let (outcome, events) = train_on_cuda("", 28, 3, &manifest);
    let started = events.iter().find_map(|e| match e {
        TrainEvent::Started(info) => Some(info.device.clone()),
        _ => None,
    });
    assert!(
        started.unwrap_or_default().starts_with("cuda"),
        "{events:?}"
    );
    let TrainOutcome::Completed(report) = outcome else {
        panic!("run was not completed")
    };
    assert!(
        report.best_validation_accuracy > 0.8,
        "validation accuracy {}",
        report.best_validation_accuracy
    );
}

#[test]
fn vgg11_bn_trains_on_the_gpu() {
    let manifest = subset(&(0..10).collect::<Vec<_>>(), 200, 2);
    let model = r#"
[model]
architecture = "vgg11_bn"
head = [64]
pooling = "avg"
"#;
    // VGG's five pooling stages need at least 32 pixels.
    let (outcome, _) = train_on_cuda(model, 32, 2, &manifest);
    let TrainOutcome::Completed(report) = outcome else {
        panic!("run was not completed")
    };
    assert!(
        report.best_validation_accuracy > 0.5,
        "validation accuracy {}",
        report.best_validation_accuracy
    );
}
