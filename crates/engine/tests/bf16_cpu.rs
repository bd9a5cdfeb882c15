//! bf16 training on the CPU runs the code CUDA runs: the bf16 copy computes, the fp32 master
//! weights learn, batch norm keeps fp32 statistics, checkpoints resume exactly, the frozen
//! backbone's cached features are bf16, and the results are fp32's within bf16's rounding.

mod support;

use easel_spec::{Architecture, ImageSize, Optimizer, Precision, PretrainedWeights};
use std::collections::HashMap;
use std::path::Path;
use support::{spec, subset, timeless, train};
use tch::{Kind, Tensor};

fn vgg_spec(
    architecture: Architecture,
    weights: &str,
    precision: Precision,
) -> easel_spec::ExperimentSpec {
    let mut spec = spec(2, "");
    spec.data.image_size = ImageSize::Square(32);
    spec.model.architecture = architecture;
    spec.model.head = vec![64];
    spec.model.dropout = 0.2;
    spec.model.pretrained = Some(PretrainedWeights::File(easel_test_support::torch_fixture(
        &format!("{weights}_legacy.pth"),
    )));
    spec.augment.flip = true;
    spec.train.optimizer = Optimizer::Sgd;
    spec.train.learning_rate = 0.01;
    spec.train.momentum = 0.9;
    spec.train.precision = precision;
    spec
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("weights/last.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn relative_gap(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-6)
}

#[test]
fn vgg11_bn_trains_in_bf16_on_the_cpu_resumes_exactly_and_matches_fp32() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2, 3, 4], 40, 3);
    let bf16_spec = vgg_spec(Architecture::Vgg11Bn, "vgg11_bn", Precision::Bf16);
    let (whole, parts, plain) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let uninterrupted = train(&bf16_spec, &manifest, whole.path(), None, None);
    assert!(
        uninterrupted
            .notes()
            .iter()
            .any(|note| note.starts_with("computing in bf16 on the CPU")
                || note.starts_with("computing in bf16 on a CPU without native bf16")),
        "{:?}",
        uninterrupted.notes()
    );

    // Cancelled after the first epoch (its checkpoint), then resumed: the uninterrupted run.
    train(&bf16_spec, &manifest, parts.path(), None, Some(1));
    let resumed = train(&bf16_spec, &manifest, parts.path(), None, None);
    assert_eq!(
        timeless(&uninterrupted.epochs()[1..]),
        timeless(&resumed.epochs()),
        "the resumed epoch is the uninterrupted run's second"
    );
    let (whole_weights, resumed_weights) = (weights(whole.path()), weights(parts.path()));
    for (name, tensor) in &whole_weights {
        assert!(tensor.equal(&resumed_weights[name]), "{name} after resume");
    }

    // The master weights and batch norm's statistics stay fp32, and the statistics moved.
    let pretrained = easel_engine::weights::read_named_tensors(&easel_test_support::torch_fixture(
        "vgg11_bn_legacy.pth",
    ))
    .unwrap();
    for (name, tensor) in &whole_weights {
        assert_eq!(tensor.kind(), Kind::Float, "{name}");
    }
    let running_var = &whole_weights["features.1.running_var"];
    assert!(!running_var.allclose(&pretrained["features.1.running_var"], 1e-6, 1e-8, false));

    // The same run in fp32: the first epoch within bf16's rounding of it; after that SGD's
    // trajectories part (10 steps at momentum 0.9 amplify rounding), so both must learn alike.
    let fp32 = train(
        &vgg_spec(Architecture::Vgg11Bn, "vgg11_bn", Precision::Fp32),
        &manifest,
        plain.path(),
        None,
        None,
    );
    let (low, full) = (uninterrupted.epochs(), fp32.epochs());
    assert_eq!(low.len(), 2);
    assert!(
        relative_gap(low[0].train_loss, full[0].train_loss) < 0.1,
        "{low:?}\n{full:?}"
    );
    for run in [&low, &full] {
        assert!(
            run[1].train_loss < run[0].train_loss * 0.7 && run[1].train_accuracy > 0.5,
            "learns: {run:?}"
        );
    }
    assert!(
        (low[1].train_accuracy - full[1].train_accuracy).abs() <= 0.15,
        "{low:?}\n{full:?}"
    );
}

#[test]
fn a_frozen_backbone_caches_bf16_features_on_the_cpu_and_trains_as_from_images() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2, 3, 4], 30, 4);
    let mut cached_spec = vgg_spec(Architecture::Vgg16, "vgg16", Precision::Bf16);
    cached_spec.model.freeze_backbone = true;
    let mut uncached_spec = cached_spec.clone();
    uncached_spec.train.cache_frozen_features = false;
    let (cached_dir, uncached_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cached = train(&cached_spec, &manifest, cached_dir.path(), None, None);
    let uncached = train(&uncached_spec, &manifest, uncached_dir.path(), None, None);

    let cached_notes = cached.notes();
    assert!(
        cached_notes.iter().any(|note| note
            .starts_with("features cached: 150 images and their mirror images, 512x1x1 each")),
        "{cached_notes:?}"
    );
    // bf16 features take 2 bytes a value: 2 views x 150 images x 512 x 2 bytes = 0.3 MB.
    assert!(
        cached_notes.iter().any(|note| note.contains("0.3 MB")),
        "{cached_notes:?}"
    );
    for (a, b) in cached.epochs().iter().zip(&uncached.epochs()) {
        assert!(
            relative_gap(a.train_loss, b.train_loss) < 0.02,
            "{a:?}\n{b:?}"
        );
        assert!(
            relative_gap(a.validation_loss, b.validation_loss) < 0.02,
            "{a:?}\n{b:?}"
        );
    }
}

#[test]
fn the_bf16_copy_keeps_batch_norm_in_fp32_and_convolution_weights_channels_last() {
    use easel_engine::models::build_classifier;
    use easel_engine::trainer::precision::Bf16Copy;
    use tch::Device;
    use tch::nn::VarStore;
    let model = easel_spec::ModelSpec {
        architecture: Architecture::Vgg11Bn,
        ..easel_spec::ModelSpec::default()
    };
    let master = VarStore::new(Device::Cpu);
    build_classifier(&master.root(), &model, 5, (32, 32)).unwrap();
    let copy = Bf16Copy::new(&master, &model, 5, (32, 32), Device::Cpu).unwrap();
    let variables = copy.var_store().variables();
    let masters = master.variables();
    // features.0 is a convolution, features.1 its batch norm; classifier.0 a dense layer.
    let conv = &variables["features.0.weight"];
    assert_eq!(conv.kind(), Kind::BFloat16);
    assert!(!conv.is_contiguous(), "channels-last, not NCHW");
    assert!(conv.permute([0, 2, 3, 1]).is_contiguous());
    assert!(
        conv.to_kind(Kind::Float)
            .allclose(&masters["features.0.weight"], 1e-2, 1e-2, false)
    );
    for name in ["weight", "bias", "running_mean", "running_var"] {
        let tensor = &variables[&format!("features.1.{name}")];
        assert_eq!(tensor.kind(), Kind::Float, "features.1.{name}");
        assert!(tensor.equal(&masters[&format!("features.1.{name}")]));
    }
    assert_eq!(variables["classifier.0.weight"].kind(), Kind::BFloat16);
    assert!(
        masters["features.0.weight"].is_contiguous(),
        "the master stays NCHW"
    );
}
