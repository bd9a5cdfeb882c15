//! What caching a frozen backbone's features saves, as ratios against the same epochs trained on
//! images, in one process (`cargo bench -p easel-engine --bench feature_cache`):
//! - on images (the baseline): every epoch runs the frozen backbone forward;
//! - cached: the features of every image and of its mirror computed once, then epochs that run
//!   the head alone.
//!
//! VGG16 with random weights (the cost does not depend on them) at 32x32 on random images, flips
//! on, on CUDA when available and else the CPU. `EASEL_BENCH_FEATURE_IMAGES` sets the images
//! (default 256), `EASEL_BENCH_FEATURE_EPOCHS` the epochs (default 3).

use easel_engine::models::{build_classifier, set_backbone_trainable};
use easel_engine::pipeline::{Augment, BatchSource, DecodedDataset, channels_last_on};
use easel_engine::trainer::epoch::{EpochPlan, Trainee, steps_per_epoch, train_epoch};
use easel_engine::trainer::feature_cache::FeatureCache;
use easel_engine::trainer::optimizer::{Hyperparameters, Optimizer, parameters_of};
use easel_spec::{Architecture, AugmentSpec, ModelSpec, TrainSpec};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SIDE: u32 = 32;
const BATCH: usize = 32;
const CLASSES: i64 = 5;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds spent computing the features (none on images) and each epoch's seconds.
struct Timings {
    caching: f64,
    epochs: Vec<f64>,
}

impl Timings {
    /// Seconds of an epoch after the first, on average.
    fn later_epoch(&self) -> f64 {
        let later = &self.epochs[1..];
        later.iter().sum::<f64>() / later.len().max(1) as f64
    }
}

fn main() {
    let images = env_number("EASEL_BENCH_FEATURE_IMAGES", 256) as i64;
    let epochs = env_number("EASEL_BENCH_FEATURE_EPOCHS", 3).max(2) as u32;
    let device = Device::cuda_if_available();
    let side = i64::from(SIDE);
    let data = DecodedDataset {
        images: Tensor::randint(256, [images, 3, side, side], (Kind::Uint8, Device::Cpu)),
        labels: Tensor::randint(CLASSES, [images], (Kind::Int64, Device::Cpu)),
        height: SIDE,
        width: SIDE,
    };
    let source = BatchSource::new(&data, device, channels_last_on(device)).expect("source");
    let augment = Augment::from_spec(&AugmentSpec::default(), SIDE, SIDE);
    println!(
        "feature cache: VGG16 frozen, head 32/64/128/64, {images} images of {SIDE}x{SIDE}, flips, \
         batch {BATCH}, {epochs} epochs, {device:?}, {} threads",
        tch::get_num_threads()
    );

    run_epochs(&source, &augment, 1, false); // warm-up
    let baseline = run_epochs(&source, &augment, epochs, false);
    let cached = run_epochs(&source, &augment, epochs, true);
    let on_images = baseline.later_epoch();
    println!("  on images:       {on_images:8.3} s an epoch");
    println!(
        "  caching:         {:8.3} s  ({:.2}x an epoch on images)",
        cached.caching,
        cached.caching / on_images
    );
    println!(
        "  cached, epoch 1: {:8.3} s  ({:.2}x, caching included)",
        cached.caching + cached.epochs[0],
        (cached.caching + cached.epochs[0]) / baseline.epochs[0]
    );
    println!(
        "  cached, later:   {:8.3} s  ({:.3}x)",
        cached.later_epoch(),
        cached.later_epoch() / on_images
    );
}

fn run_epochs(source: &BatchSource, augment: &Augment, epochs: u32, cached: bool) -> Timings {
    tch::manual_seed(0);
    let model = ModelSpec {
        architecture: Architecture::Vgg16,
        head: vec![32, 64, 128, 64],
        freeze_backbone: true,
        ..ModelSpec::default()
    };
    let side = i64::from(SIDE);
    let vs = VarStore::new(source.device());
    let net = build_classifier(&vs.root(), &model, CLASSES, (side, side)).expect("model");
    set_backbone_trainable(&vs, false);
    let train = TrainSpec::default();
    let optimizer = Optimizer::new(Hyperparameters::of(&train), parameters_of(&vs));
    let mut trainee = Trainee {
        vs,
        net,
        optimizer,
        bf16: None,
    };
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let features = cached.then(|| {
        FeatureCache::build(&trainee, source, augment, BATCH, &cancel).expect("features cached")
    });
    let caching = started.elapsed().as_secs_f64();
    let indices: Vec<i64> = (0..source.len() as i64).collect();
    let steps = steps_per_epoch(indices.len(), BATCH);
    let plan = EpochPlan {
        train: &train,
        augment,
        train_indices: &indices,
        batch_size: BATCH,
        steps_per_epoch: steps,
        total_steps: steps * u64::from(epochs),
        backbone_lr_scale: 1.0,
        cancel: &cancel,
        features: features.as_ref(),
    };
    let mut global_step = 0;
    let epochs = (1..=epochs)
        .map(|epoch| {
            train_epoch(
                &mut trainee,
                source,
                &plan,
                1,
                epoch,
                &mut global_step,
                &mut |_| {},
            )
            .expect("train")
            .expect("not cancelled")
            .seconds
        })
        .collect();
    Timings { caching, epochs }
}
