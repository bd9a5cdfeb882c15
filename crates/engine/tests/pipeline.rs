//! The input pipeline and the laptop commands on the real MNIST sample.

mod support;

use easel_engine::pipeline::{CacheStatus, load_manifest};
use easel_engine::{Error, TrainJob};
use std::sync::atomic::AtomicBool;
use support::{decode_to, sample, spec, subset};

#[test]
fn the_second_load_reads_the_decoded_cache_without_decoding() {
    let manifest = subset(&[0, 1, 2], 30, 9);
    let cache = tempfile::tempdir().unwrap();
    let source = &sample().source;
    let first = load_manifest(&manifest, source, decode_to(20, 24), Some(cache.path())).unwrap();
    assert_eq!(first.cache, CacheStatus::Written);
    assert_eq!(first.decoded_images, 90);
    assert_eq!(first.data.images.size(), vec![90, 3, 20, 24]);
    let second = load_manifest(&manifest, source, decode_to(20, 24), Some(cache.path())).unwrap();
    assert_eq!(second.cache, CacheStatus::Hit);
    assert_eq!(second.decoded_images, 0);
    assert!(second.data.images.equal(&first.data.images));
    assert!(second.data.labels.equal(&first.data.labels));
    // Another size is another cache entry.
    let other = load_manifest(&manifest, source, decode_to(16, 16), Some(cache.path())).unwrap();
    assert_eq!(other.cache, CacheStatus::Written);
}

#[test]
fn an_image_above_the_pixel_limit_is_refused_by_name() {
    let manifest = subset(&[0, 1], 5, 10);
    let mut spec = spec(1, "");
    spec.data.max_image_pixels = 28 * 28 - 1;
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let job = TrainJob {
        spec: &spec,
        manifest: &manifest,
        source: &sample().source,
        device: easel_engine::DeviceChoice::Cpu,
        run_dir: dir.path(),
        cache_dir: None,
        owner: "",
        price_per_hour: None,
        cancel: &cancel,
    };
    let err = easel_engine::train(&job, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::ImageTooLarge { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&manifest.entries[0].path), "{message}");
    assert!(
        message.contains("28x28 = 784 pixels, above the limit of 783"),
        "{message}"
    );
}

#[test]
fn the_proof_of_concept_overfits_a_batch() {
    let mut spec = spec(3, "");
    spec.local.steps = 15;
    spec.local.image_size = 32;
    spec.local.max_images = 60;
    let mut steps = Vec::new();
    let report = easel_engine::proof_of_concept(
        &spec,
        &sample().manifest,
        &sample().source,
        &mut |step, loss| steps.push((step, loss)),
    )
    .unwrap();
    assert_eq!(steps.len(), 15);
    assert_eq!(report.images_used, 60);
    assert!(report.loss_finite && report.loss_fell, "{report:?}");
    assert!(report.last_loss < report.first_loss * 0.7, "{report:?}");
}

#[test]
fn estimate_sizes_the_run_and_refuses_an_image_too_small_for_vgg() {
    let mut spec = spec(3, "");
    spec.model.architecture = easel_spec::Architecture::Vgg16;
    spec.data.image_size = easel_spec::ImageSize::Square(150);
    let estimate = easel_engine::estimate(&spec, 5, 1000).unwrap();
    assert_eq!(estimate.feature_map, [512, 4, 4]);
    assert_eq!(estimate.steps_per_epoch, 32);
    assert_eq!(estimate.total_steps, 96);
    assert!(estimate.parameters > 14_000_000);
    spec.data.image_size = easel_spec::ImageSize::Square(28);
    let err = easel_engine::estimate(&spec, 5, 1000).unwrap_err();
    assert!(matches!(err, Error::ImageTooSmall { .. }));
    assert!(err.to_string().contains("vgg16"), "{err}");
}

#[test]
fn runtime_info_names_the_libtorch_build() {
    let info = easel_engine::runtime_info();
    assert!(info.libtorch_version.starts_with("2.11.0"), "{info:?}");
}
