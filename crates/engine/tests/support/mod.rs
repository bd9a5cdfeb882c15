//! Shared by the engine's integration tests: the real MNIST sample (built by
//! `deploy/sample-data.sh`), small subsets of it, specs, and a recorded training run.
#![allow(dead_code)]

use easel_dataset::{LocalSource, Manifest, ScanOptions, scan, stratified_subset};
use easel_engine::pipeline::DecodeTarget;
use easel_engine::{DeviceChoice, EpochMetrics, TrainEvent, TrainJob, TrainOutcome};
use easel_spec::ExperimentSpec;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

/// libtorch has one process-wide random generator (initialisation, dropout, augmentation), and
/// the test harness runs tests on parallel threads: tests that compare runs bit for bit hold this
/// lock so no other test draws from the generator meanwhile.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `EASEL_SAMPLE_DATA`, else `<repo>/.easel-data/mnist-sample`.
pub fn sample_dir() -> PathBuf {
    easel_test_support::sample_dataset()
}

pub struct Sample {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub source: LocalSource,
}

/// The whole sample, scanned once per test binary.
pub fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = sample_dir();
        let report =
            scan(std::slice::from_ref(&dir), &ScanOptions::default()).expect("scan the sample");
        assert_eq!(
            report.manifest.classes.len(),
            10,
            "the sample has 10 digit classes"
        );
        Sample {
            dir,
            source: report.source().clone(),
            manifest: report.manifest,
        }
    })
}

/// A stratified subset of `per_class` images of each class in `classes` (by index), keeping
/// only those classes (renumbered, in order).
pub fn subset(classes: &[usize], per_class: usize, seed: u64) -> Manifest {
    let full = &sample().manifest;
    let indices: Vec<usize> = (0..full.entries.len())
        .filter(|&i| classes.contains(&(full.entries[i].class as usize)))
        .collect();
    let kept = full.select(&indices);
    let picked = stratified_subset(&kept, per_class * classes.len(), seed);
    let chosen = kept.select(&picked);
    let names: Vec<String> = classes.iter().map(|&c| full.classes[c].clone()).collect();
    let entries = chosen
        .entries
        .into_iter()
        .map(|mut e| {
            let name = &full.classes[e.class as usize];
            e.class = names.iter().position(|n| n == name).expect("kept class") as u32;
            e
        })
        .collect();
    Manifest::new(names, entries)
}

/// The sample's images at `height`x`width`, under a pixel limit none of them reaches.
pub fn decode_to(height: u32, width: u32) -> DecodeTarget {
    DecodeTarget {
        height,
        width,
        max_pixels: 40_000_000,
    }
}

/// A small-CNN spec on 28x28 digits; `train_extra` is TOML appended to the `[train]` table.
pub fn spec(epochs: u32, train_extra: &str) -> ExperimentSpec {
    let text = format!(
        r#"
name = "digits"
[data]
path = "{}"
image_size = 28
validation_split = 0.2
test_split = 0.1
seed = 7
[model]
architecture = "small_cnn"
head = [64, 128]
[augment]
flip = false
[train]
epochs = {epochs}
batch_size = 32
optimizer = "adam"
learning_rate = 0.002
precision = "fp32"
seed = 11
{train_extra}
"#,
        sample_dir().display()
    );
    toml::from_str(&text).expect("test spec parses")
}

pub struct Recorded {
    pub outcome: TrainOutcome,
    pub events: Vec<TrainEvent>,
}

impl Recorded {
    /// The messages of the run's notes, in order.
    pub fn notes(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Note { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn epochs(&self) -> Vec<EpochMetrics> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Epoch(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Trains on the CPU, recording every event; `cancel_after_epoch` raises the cancel flag when
/// that epoch's metrics arrive.
pub fn train(
    spec: &ExperimentSpec,
    manifest: &Manifest,
    run_dir: &Path,
    cache_dir: Option<&Path>,
    cancel_after_epoch: Option<u32>,
) -> Recorded {
    let cancel = AtomicBool::new(false);
    let job = TrainJob {
        spec,
        manifest,
        source: &sample().source,
        device: DeviceChoice::Cpu,
        run_dir,
        cache_dir,
        owner: "",
        price_per_hour: None,
        cancel: &cancel,
    };
    let mut events = Vec::new();
    let outcome = easel_engine::train(&job, &mut |event| {
        if let (TrainEvent::Epoch(m), Some(k)) = (&event, cancel_after_epoch)
            && m.epoch == k
        {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        events.push(event);
    })
    .expect("training runs");
    Recorded { outcome, events }
}

/// Metrics without the wall-clock fields, for exact comparisons between runs.
pub fn timeless(metrics: &[EpochMetrics]) -> Vec<EpochMetrics> {
    metrics
        .iter()
        .map(|m| EpochMetrics {
            images_per_second: 0.0,
            seconds: 0.0,
            ..m.clone()
        })
        .collect()
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
