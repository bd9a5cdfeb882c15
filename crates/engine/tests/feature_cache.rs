//! Frozen-backbone feature caching on the real sample: the head trains on features computed
//! once, with the results of an uncached run. (What it saves is measured by the `feature_cache`
//! bench; that a cached epoch never runs the backbone, by the cache's unit tests.)

mod support;

use easel_spec::{Architecture, ImageSize, Optimizer, PretrainedWeights};
use std::path::PathBuf;
use support::{spec, subset, timeless, train};

/// torchvision-layout VGG weights saved by PyTorch in the legacy format (deploy/torch-fixtures.sh).
fn legacy_weights(name: &str) -> PathBuf {
    easel_test_support::torch_fixture(&format!("{name}_legacy.pth"))
}

fn frozen_spec(
    architecture: Architecture,
    weights: &str,
    cache: bool,
) -> easel_spec::ExperimentSpec {
    let mut spec = spec(3, "");
    spec.data.image_size = ImageSize::Square(32);
    spec.model.architecture = architecture;
    spec.model.head = vec![32, 64, 128, 64];
    spec.model.dropout = 0.2;
    spec.model.pretrained = Some(PretrainedWeights::File(legacy_weights(weights)));
    spec.model.freeze_backbone = true;
    spec.augment.flip = true;
    spec.train.optimizer = Optimizer::Sgd;
    spec.train.learning_rate = 0.01;
    spec.train.momentum = 0.9;
    spec.train.cache_frozen_features = cache;
    spec
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1e-3)
}

#[test]
fn a_frozen_backbone_trains_from_features_cached_once_as_from_images() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2, 3, 4], 60, 3);
    let cached_dir = tempfile::tempdir().unwrap();
    let cached = train(
        &frozen_spec(Architecture::Vgg16, "vgg16", true),
        &manifest,
        cached_dir.path(),
        None,
        None,
    );
    let uncached_dir = tempfile::tempdir().unwrap();
    let uncached = train(
        &frozen_spec(Architecture::Vgg16, "vgg16", false),
        &manifest,
        uncached_dir.path(),
        None,
        None,
    );

    let cached_notes = cached.notes();
    let caches_built: Vec<&String> = cached_notes
        .iter()
        .filter(|note| note.starts_with("features cached:"))
        .collect();
    assert_eq!(
        caches_built.len(),
        1,
        "computed once for every epoch: {cached_notes:?}"
    );
    assert!(
        cached_notes.iter().any(|note| note
            .starts_with("features cached: 300 images and their mirror images, 512x1x1 each")),
        "{cached_notes:?}"
    );
    assert!(
        !uncached
            .notes()
            .iter()
            .any(|note| note.contains("features cached")),
        "cache_frozen_features = false trains on images"
    );

    // The same draws (flips, dropout) in the same order: the same run, up to rounding.
    let (with, without) = (timeless(&cached.epochs()), timeless(&uncached.epochs()));
    assert_eq!(with.len(), 3);
    assert_eq!(without.len(), 3);
    for (a, b) in with.iter().zip(&without) {
        assert!(close(a.train_loss, b.train_loss, 1e-4), "{a:?}\n{b:?}");
        assert!(
            close(a.validation_loss, b.validation_loss, 1e-4),
            "{a:?}\n{b:?}"
        );
        assert!(
            (a.validation_accuracy - b.validation_accuracy).abs() <= 1.0 / 60.0,
            "{a:?}\n{b:?}"
        );
    }
    let head = |dir: &std::path::Path| {
        tch::Tensor::read_safetensors(dir.join("weights/last.safetensors")).unwrap()
    };
    let uncached_weights: std::collections::HashMap<_, _> =
        head(uncached_dir.path()).into_iter().collect();
    for (name, tensor) in head(cached_dir.path()) {
        assert!(
            tensor.allclose(&uncached_weights[&name], 1e-3, 1e-5, false),
            "{name} differs"
        );
    }
}

#[test]
fn a_batch_norm_backbone_is_not_cached_and_says_why() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1], 20, 3);
    let mut spec = frozen_spec(Architecture::Vgg11Bn, "vgg11_bn", true);
    spec.train.epochs = 1;
    let dir = tempfile::tempdir().unwrap();
    let run = train(&spec, &manifest, dir.path(), None, None);
    let notes = run.notes();
    assert!(
        notes.iter().any(|note| note
            == "frozen backbone features not cached: the backbone has batch norm or dropout, so its output changes from step to step"),
        "{notes:?}"
    );
}

/// Two runs on the same images with the same frozen backbone, differing in their heads and
/// learning rates (a head search): the first computes the features and shares them, the second
/// reads them and trains as it would have on features of its own.
#[test]
fn runs_that_agree_on_the_backbone_compute_its_features_once() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2], 30, 3);
    let cache = tempfile::tempdir().unwrap();
    let base = frozen_spec(Architecture::Vgg16, "vgg16", true);
    let first_dir = tempfile::tempdir().unwrap();
    let first = train(&base, &manifest, first_dir.path(), Some(cache.path()), None);
    let first_notes = first.notes();
    assert!(
        first_notes
            .iter()
            .any(|n| n.starts_with("features cached:"))
            && first_notes
                .iter()
                .any(|n| n.starts_with("frozen backbone features shared")),
        "{first_notes:?}"
    );

    let mut other_head = base.clone();
    other_head.model.head = vec![16];
    other_head.train.learning_rate = 0.02;
    let second_dir = tempfile::tempdir().unwrap();
    let second = train(
        &other_head,
        &manifest,
        second_dir.path(),
        Some(cache.path()),
        None,
    );
    let second_notes = second.notes();
    let writer = first_dir.path().display().to_string();
    assert!(
        second_notes.iter().any(|n| n
            .starts_with("frozen backbone features reused from the run in ")
            && n.contains(&writer)),
        "{second_notes:?}"
    );
    assert!(
        !second_notes
            .iter()
            .any(|n| n.starts_with("features cached:")),
        "no backbone pass: {second_notes:?}"
    );

    // The same run with features of its own (no shared cache): the same results, up to rounding.
    let alone_dir = tempfile::tempdir().unwrap();
    let alone = train(&other_head, &manifest, alone_dir.path(), None, None);
    for (a, b) in timeless(&second.epochs())
        .iter()
        .zip(&timeless(&alone.epochs()))
    {
        assert!(close(a.train_loss, b.train_loss, 1e-4), "{a:?}\n{b:?}");
        assert!(
            close(a.validation_loss, b.validation_loss, 1e-4),
            "{a:?}\n{b:?}"
        );
    }

    // A run whose augmentation changes its images every epoch trains on images, whatever the
    // shared file holds.
    let mut crops = base.clone();
    crops.augment.random_crop = 0.1;
    crops.train.epochs = 1;
    let crops_dir = tempfile::tempdir().unwrap();
    let cropped = train(
        &crops,
        &manifest,
        crops_dir.path(),
        Some(cache.path()),
        None,
    );
    let cropped_notes = cropped.notes();
    assert!(
        cropped_notes
            .iter()
            .any(|n| n.starts_with("frozen backbone features not cached: random crops")),
        "{cropped_notes:?}"
    );
    assert!(
        !cropped_notes.iter().any(|n| n.contains("features reused")),
        "{cropped_notes:?}"
    );

    // A run that disagrees on what the features depend on (no flips: no mirror images) computes
    // its own.
    let mut no_flips = base.clone();
    no_flips.augment.flip = false;
    let third_dir = tempfile::tempdir().unwrap();
    let third = train(
        &no_flips,
        &manifest,
        third_dir.path(),
        Some(cache.path()),
        None,
    );
    assert!(
        third
            .notes()
            .iter()
            .any(|n| n.starts_with("features cached:")),
        "{:?}",
        third.notes()
    );
}
