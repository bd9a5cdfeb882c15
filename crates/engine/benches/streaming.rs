//! Step time of a dataset that does not stay in memory, as ratios against the same dataset held
//! resident, in one process (`cargo bench -p easel-engine --bench streaming`, `just
//! bench-streaming`):
//! - resident: the decoded pixels copied into memory;
//! - mapped, no prefetch: the decoded cache file mapped, its pages dropped from the page cache
//!   first, each step's gather faulting them in itself;
//! - streamed: the same cold mapping, batches gathered ahead by the batch thread.
//!
//! Dropping the file's pages (`posix_fadvise(DONTNEED)`) makes every read of the pass come from
//! the disk, as it would for a dataset larger than memory. `EASEL_BENCH_STREAM_MB` sets the
//! dataset's size (default 2048), `EASEL_BENCH_STREAM_STEPS` the steps timed (default 40).

use easel_engine::models::build_classifier;
use easel_engine::pipeline::cache::{CacheHeader, CacheWriter, cache_key, cache_path, read};
use easel_engine::pipeline::{Augment, BatchSource, DecodedDataset, Residency};
use easel_engine::trainer::epoch::{EpochPlan, Trainee, train_epoch};
use easel_engine::trainer::optimizer::{Hyperparameters, Optimizer, parameters_of};
use easel_spec::{Architecture, AugmentSpec, ModelSpec, TrainSpec};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::atomic::AtomicBool;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SIDE: u32 = 64;
const BATCH: usize = 64;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let megabytes = env_number("EASEL_BENCH_STREAM_MB", 2048);
    let steps = env_number("EASEL_BENCH_STREAM_STEPS", 40);
    let image_bytes = 3 * u64::from(SIDE) * u64::from(SIDE);
    let images = (megabytes << 20) / image_bytes;
    let dir = tempfile::tempdir().expect("temporary folder");
    let header = CacheHeader {
        key: cache_key("streaming bench", SIDE, SIDE),
        images,
        height: SIDE,
        width: SIDE,
    };
    let path = cache_path(dir.path(), &header.key);
    let writer = CacheWriter::create(&path, &header).expect("create the cache file");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut image = vec![0u8; image_bytes as usize];
    for index in 0..images as usize {
        rng.fill(image.as_mut_slice());
        writer.write_image(index, &image).expect("write an image");
    }
    drop(writer.finish().expect("finish the cache file"));
    let labels = Tensor::randint(5, [images as i64], (Kind::Int64, Device::Cpu));
    let dataset = |pixels: Tensor| DecodedDataset {
        images: pixels,
        labels: labels.shallow_clone(),
        height: SIDE,
        width: SIDE,
    };
    // A fresh mapping each time: pages mapped into this process would survive the drop below.
    let map = || {
        read(&path, &header)
            .expect("read the cache file")
            .expect("the cache file matches")
    };
    println!(
        "streaming: {images} images of {SIDE}x{SIDE} ({megabytes} MiB), small CNN, batch {BATCH}, \
         {steps} steps in shuffled order, CPU, {} threads",
        tch::get_num_threads()
    );

    let resident = dataset(map().copy());
    images_per_second(&resident, Residency::OnDevice, 5); // warm-up
    let baseline = images_per_second(&resident, Residency::OnDevice, steps);
    println!("  resident in memory:         {baseline:8.1} images/s");
    drop(resident);
    for (label, residency) in [
        ("mapped, cold, no prefetch", Residency::OnDevice),
        ("streamed, cold, prefetched", Residency::Streamed),
    ] {
        drop_cached_pages(&path);
        let rate = images_per_second(&dataset(map()), residency, steps);
        println!(
            "  {label:<27} {rate:8.1} images/s  ({:.2}x resident)",
            rate / baseline
        );
    }
}

/// Drops the file's pages from the page cache, so the next pass reads it from the disk.
fn drop_cached_pages(path: &std::path::Path) {
    let file = std::fs::File::open(path).expect("open the cache file");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
}

fn images_per_second(data: &DecodedDataset, residency: Residency, steps: u64) -> f64 {
    let source = BatchSource::with_residency(data, Device::Cpu, false, residency).expect("source");
    tch::manual_seed(0);
    let model = ModelSpec {
        architecture: Architecture::SmallCnn,
        head: vec![64, 128],
        ..ModelSpec::default()
    };
    let vs = VarStore::new(Device::Cpu);
    let net =
        build_classifier(&vs.root(), &model, 5, (i64::from(SIDE), i64::from(SIDE))).expect("model");
    let optimizer = Optimizer::new(Hyperparameters::sgd(0.9), parameters_of(&vs));
    let mut trainee = Trainee {
        vs,
        net,
        optimizer,
        bf16: None,
    };
    let train = TrainSpec::default();
    let augment = Augment::from_spec(&AugmentSpec::default(), SIDE, SIDE);
    let mut order: Vec<i64> = (0..source.len() as i64).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
    order.truncate(steps as usize * BATCH);
    let cancel = AtomicBool::new(false);
    let plan = EpochPlan {
        train: &train,
        augment: &augment,
        train_indices: &order,
        batch_size: BATCH,
        steps_per_epoch: steps,
        total_steps: steps,
        backbone_lr_scale: 1.0,
        cancel: &cancel,
        features: None,
    };
    let totals = train_epoch(&mut trainee, &source, &plan, 3, 1, &mut 0, &mut |_| {})
        .expect("train")
        .expect("not cancelled");
    totals.images as f64 / totals.seconds
}
