//! Throughput figures, printed (a bench binary, `cargo bench -p easel-engine`):
//! - input pipeline: images/s decoding + resizing the MNIST sample from disk vs reading the
//!   decoded cache (ratio);
//! - training step images/s on the CPU: small CNN and VGG16 at 64x64, batch 8;
//! - on CUDA when available: VGG16 at 224 and 150, batch 128, fp32 vs bf16, NCHW vs
//!   channels-last, as ratios against fp32 NCHW in the same process.
//!
//! The sample comes from `deploy/sample-data.sh` (or `EASEL_SAMPLE_DATA`); without it the
//! pipeline figures are skipped.

use easel_engine::models::build_classifier;
use easel_engine::pipeline::{CacheStatus, DecodeTarget, channels_last, load_manifest};
use easel_engine::trainer::epoch::{Trainee, train_step};
use easel_engine::trainer::optimizer::{GroupRates, Hyperparameters, Optimizer, parameters_of};
use easel_engine::trainer::precision::{Bf16Copy, convolution_weights_channels_last};
use easel_spec::{Architecture, ModelSpec};
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--step") {
        return single_step_measurement(&args);
    }
    let info = easel_engine::runtime_info();
    println!(
        "libtorch {} | cuda {} ({} devices) | cpu threads {}",
        info.libtorch_version,
        info.cuda_available,
        info.cuda_device_count,
        tch::get_num_threads()
    );
    pipeline();
    println!("\ntraining step, CPU, fp32, SGD momentum");
    for (architecture, name) in [
        (Architecture::SmallCnn, "small_cnn"),
        (Architecture::Vgg16, "vgg16"),
    ] {
        let rate = step_rate(
            architecture,
            64,
            8,
            Device::Cpu,
            Mode {
                bf16: false,
                channels_last: false,
            },
            3,
            10,
        );
        println!("  {name:<10} 64x64 batch 8: {rate:8.1} images/s");
    }
    if tch::Cuda::is_available() {
        cuda();
    }
}

fn pipeline() {
    let dir = std::env::var_os("EASEL_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.easel-data/mnist-sample")
        });
    if !dir.is_dir() {
        println!(
            "input pipeline: skipped, no sample at {} (run deploy/sample-data.sh)",
            dir.display()
        );
        return;
    }
    let report = easel_dataset::scan(std::slice::from_ref(&dir), &Default::default())
        .expect("scan the sample");
    let manifest = &report.manifest;
    let source = report.source();
    let images = manifest.entries.len() as f64;
    let cache = tempfile::tempdir().expect("temporary cache");
    println!(
        "\ninput pipeline, {} images, resized to 64x64, {} rayon threads",
        manifest.entries.len(),
        rayon::current_num_threads()
    );
    let started = Instant::now();
    let decoded = load_manifest(manifest, source, decode_to(64, 64), None).expect("decode");
    let decode_rate = images / started.elapsed().as_secs_f64();
    assert_eq!(decoded.cache, CacheStatus::Disabled);
    let written = load_manifest(manifest, source, decode_to(64, 64), Some(cache.path()))
        .expect("write cache");
    assert_eq!(written.cache, CacheStatus::Written);
    let started = Instant::now();
    let hit =
        load_manifest(manifest, source, decode_to(64, 64), Some(cache.path())).expect("read cache");
    let cache_rate = images / started.elapsed().as_secs_f64();
    assert_eq!(hit.cache, CacheStatus::Hit);
    println!("  decode + resize from disk: {decode_rate:10.0} images/s");
    println!(
        "  from the decoded cache:    {cache_rate:10.0} images/s  ({:.1}x)",
        cache_rate / decode_rate
    );
}

/// The sample's images at `height`x`width`, under a pixel limit none of them reaches.
fn decode_to(height: u32, width: u32) -> DecodeTarget {
    DecodeTarget {
        height,
        width,
        max_pixels: 40_000_000,
    }
}

fn cuda() {
    let device = Device::Cuda(0);
    tch::Cuda::cudnn_set_benchmark(true);
    println!("\ntraining step, CUDA, VGG16 (head 32/64/128/64), batch 128, SGD momentum");
    for side in [224, 150] {
        let baseline = step_rate(
            Architecture::Vgg16,
            side,
            128,
            device,
            Mode {
                bf16: false,
                channels_last: false,
            },
            5,
            20,
        );
        println!("  {side}x{side} fp32 NCHW:            {baseline:8.0} images/s");
        for (label, mode) in [
            (
                "fp32 channels-last",
                Mode {
                    bf16: false,
                    channels_last: true,
                },
            ),
            (
                "bf16 NCHW",
                Mode {
                    bf16: true,
                    channels_last: false,
                },
            ),
            (
                "bf16 channels-last",
                Mode {
                    bf16: true,
                    channels_last: true,
                },
            ),
        ] {
            let rate = step_rate(Architecture::Vgg16, side, 128, device, mode, 5, 20);
            println!(
                "  {side}x{side} {label:<22} {rate:8.0} images/s  ({:.2}x fp32)",
                rate / baseline
            );
        }
    }
}

/// `throughput --step --side S --batch B [--device cpu|cuda] [--bf16] [--channels-last]
/// [--warmup N] [--steps N]`: one VGG16 training-step figure as a JSON line, for
/// `deploy/gpu-check.sh`, which sets it beside PyTorch's.
fn single_step_measurement(args: &[String]) {
    let value = |name: &str, default: &str| -> String {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let number = |name: &str, default: &str| -> i64 {
        value(name, default)
            .parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    };
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    let device = match value("--device", "cpu").as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(index) => Device::Cuda(index),
            None => panic!("--device takes cpu, cuda or cuda:N, not {other}"),
        },
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mode = Mode {
        bf16: flag("--bf16"),
        channels_last: flag("--channels-last"),
    };
    let started = Instant::now();
    let architecture = match value("--architecture", "vgg16").as_str() {
        "small_cnn" => Architecture::SmallCnn,
        "deep_cnn" => Architecture::DeepCnn,
        "vgg16" => Architecture::Vgg16,
        other => panic!("--architecture takes small_cnn, deep_cnn or vgg16, not {other}"),
    };
    let rate = step_rate(
        architecture,
        number("--side", "64"),
        number("--batch", "8"),
        device,
        mode,
        number("--warmup", "5") as usize,
        number("--steps", "20") as usize,
    );
    println!(
        "{{\"images_per_second\": {rate:.2}, \"seconds\": {:.2}}}",
        started.elapsed().as_secs_f64()
    );
}

#[derive(Clone, Copy)]
struct Mode {
    bf16: bool,
    channels_last: bool,
}

/// Images/s of full training steps (forward, backward, update) on random data.
fn step_rate(
    architecture: Architecture,
    side: i64,
    batch: i64,
    device: Device,
    mode: Mode,
    warmup: usize,
    steps: usize,
) -> f64 {
    tch::manual_seed(0);
    let model = ModelSpec {
        architecture,
        head: if architecture == Architecture::SmallCnn {
            vec![64, 128]
        } else {
            vec![32, 64, 128, 64]
        },
        ..ModelSpec::default()
    };
    let vs = VarStore::new(device);
    let net = build_classifier(&vs.root(), &model, 5, (side, side)).expect("model");
    if mode.channels_last {
        // As the trainer lays them out (`InitialModel::into_trainee`).
        convolution_weights_channels_last(&vs);
    }
    let optimizer = Optimizer::new(Hyperparameters::sgd(0.9), parameters_of(&vs));
    let bf16 = mode
        .bf16
        .then(|| Bf16Copy::new(&vs, &model, 5, (side, side), device).expect("bf16 copy"));
    let mut trainee = Trainee {
        vs,
        net,
        optimizer,
        bf16,
    };
    let x = Tensor::randn([batch, 3, side, side], (Kind::Float, device));
    let x = if mode.channels_last {
        channels_last(&x)
    } else {
        x
    };
    let y = Tensor::randint(5, [batch], (Kind::Int64, device));
    let rates = GroupRates {
        backbone: 1e-3,
        head: 1e-3,
    };
    let mut step = || train_step(&mut trainee, &x, &y, 0.0, rates).1;
    for _ in 0..warmup {
        let _ = step();
    }
    let _ = step().double_value(&[]);
    let started = Instant::now();
    let mut last = Tensor::zeros([], (Kind::Float, device));
    for _ in 0..steps {
        last = step();
    }
    let _ = last.double_value(&[]); // waits for the device
    (steps as i64 * batch) as f64 / started.elapsed().as_secs_f64()
}
