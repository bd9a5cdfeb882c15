//! Training on a CUDA device: bf16, channels-last, the dataset kept on the GPU.
//! Opt-in: `cargo test -p easel-engine --features cuda-tests --test cuda` on a machine with a GPU.
#![cfg(feature = "cuda-tests")]

mod support;

use easel_engine::pipeline::{BatchSource, Residency, load_manifest};
use easel_engine::{DeviceChoice, TrainEvent, TrainJob, TrainOutcome};
use std::sync::atomic::AtomicBool;
use support::{decode_to, sample, spec, subset};

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
    if let Some(cache) = extra
        .get("train")
        .and_then(|train| train.get("cache_frozen_features"))
        .and_then(toml::Value::as_bool)
    {
        spec.train.cache_frozen_features = cache;
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
        owner: "",
        price_per_hour: None,
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

#[test]
fn a_frozen_backbone_trains_from_cached_bf16_features_on_the_gpu() {
    let manifest = subset(&(0..10).collect::<Vec<_>>(), 50, 3);
    let frozen = |cache: bool| {
        format!(
            r#"
[model]
architecture = "vgg11"
head = [64]
freeze_backbone = true
[train]
cache_frozen_features = {cache}
"#
        )
    };
    let (cached, cached_events) = train_on_cuda(&frozen(true), 32, 3, &manifest);
    let (uncached, _) = train_on_cuda(&frozen(false), 32, 3, &manifest);
    assert!(
        cached_events.iter().any(|e| matches!(e, TrainEvent::Note { message }
            if message.starts_with("features cached: 500 images") && message.contains("on cuda:0"))),
        "{cached_events:?}"
    );
    let (TrainOutcome::Completed(cached), TrainOutcome::Completed(uncached)) = (cached, uncached)
    else {
        panic!("runs were not completed")
    };
    // bf16 features: the same run within bf16 rounding.
    let (a, b) = (&cached.final_metrics, &uncached.final_metrics);
    assert!(
        (a.train_loss - b.train_loss).abs() < 0.05 * b.train_loss.max(0.1),
        "{a:?}\n{b:?}"
    );
}

#[test]
fn batches_streamed_through_pinned_memory_equal_the_resident_ones_on_the_gpu() {
    assert!(tch::Cuda::is_available(), "cuda-tests need a CUDA device");
    let manifest = subset(&[0, 1], 20, 5);
    let loaded = load_manifest(&manifest, &sample().source, decode_to(12, 12), None).unwrap();
    let device = tch::Device::Cuda(0);
    let resident =
        BatchSource::with_residency(&loaded.data, device, true, Residency::OnDevice).unwrap();
    let streamed =
        BatchSource::with_residency(&loaded.data, device, true, Residency::Streamed).unwrap();
    let order: Vec<i64> = (0..40).rev().collect();
    // Two passes: the second one's pinned blocks are the first one's, reused.
    for _ in 0..2 {
        let mut pass = streamed.batches(&order, 16, 3).unwrap();
        let mut seen = 0;
        while let Some((x, y)) = pass.next_batch(None).unwrap() {
            assert_eq!((x.device(), y.device()), (device, device));
            let count = x.size()[0] as usize;
            let expected = resident.batch(&resident.indices(&order[seen..seen + count]), None);
            assert!(x.equal(&expected.0), "images of batch at {seen} differ");
            assert!(y.equal(&expected.1), "labels of batch at {seen} differ");
            seen += count;
        }
        assert_eq!(seen, 40);
    }
}
