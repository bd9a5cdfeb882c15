//! CPU training steps, Easel against PyTorch eager, in one run (`cargo bench -p easel-engine
//! --bench cpu_step`, or `just bench-cpu`): small_cnn, deep_cnn and VGG16 (frozen and not) at
//! 150 px, batch 32, SGD momentum 0.9 (or Adam, `--optimizer adam`) on random data.
//!
//! Easel's step is the trainer's own (the trainee it builds, the precision `auto` resolves to,
//! the layout its batches and weights have, the fused optimizer update), beside the same step
//! updating parameter by parameter, the same step with libtorch's own CPU allocator instead of
//! the trainer's block cache, Easel in fp32 NCHW with per-parameter updates and libtorch's
//! allocator (what it did before layouts, precision, the update and the allocator were chosen
//! for the CPU) and PyTorch eager in NCHW and channels-last, fp32 and bf16
//! autocast (`benches/cpu_step_pytorch.py`, run with the PyTorch libtorch comes from). bf16 is
//! timed where the CPU computes it natively (or with `--bf16-anyway`): elsewhere it is emulated,
//! many times slower. Variants alternate within each repeat; the median of the repeats is shown,
//! as images/s and as a ratio against PyTorch eager channels-last fp32.
//!
//! Flags: `--side 150 --batch 32 --warmup 2 --steps 10 --repeats 3 --models
//! small_cnn,deep_cnn,vgg16_frozen,vgg16 --optimizer sgd|adam --bf16-anyway --variants NAME,...`
//! (names: easel, easel-per-parameter, easel-no-block-cache, easel-nchw, eager-nchw, eager-cl,
//! eager-bf16-nchw, eager-bf16-cl; all by default, eager-cl always, as the baseline).

use easel_engine::DeviceChoice;
use easel_engine::compute_precision::{ComputePrecision, native_bf16_cpu};
use easel_engine::pipeline::{channels_last, channels_last_on};
use easel_engine::trainer::epoch::train_step;
use easel_engine::trainer::model_setup::InitialModel;
use easel_engine::trainer::optimizer::{GroupRates, UpdateKernel};
use easel_spec::{ExperimentSpec, Precision};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

struct Options {
    side: i64,
    batch: i64,
    warmup: usize,
    steps: usize,
    repeats: usize,
    models: Vec<String>,
    bf16_anyway: bool,
    /// `sgd` (momentum 0.9) or `adam`, on both sides.
    optimizer: String,
    /// Names of the variants to time (`Variant::name`); empty = all.
    variants: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// The trainer's choices on this CPU.
    Easel,
    /// The trainer's choices, but the optimizer updating parameter by parameter.
    EaselPerParameter,
    /// The trainer's choices, but libtorch's own CPU allocator (freed blocks go back to the
    /// system, so every step faults its activations in again).
    EaselWithoutBlockCache,
    /// fp32, NCHW inputs and weights, per-parameter updates, libtorch's allocator: what Easel did
    /// on the CPU before it chose layouts, precision, the update and the allocator.
    EaselFp32Nchw,
    Eager {
        channels_last: bool,
        bf16: bool,
    },
}

impl Variant {
    fn label(self, easel: &ComputePrecision, easel_channels_last: bool) -> String {
        match self {
            Variant::Easel => format!(
                "easel ({}, {})",
                if easel.bf16 { "bf16" } else { "fp32" },
                if easel_channels_last {
                    "channels-last"
                } else {
                    "NCHW"
                }
            ),
            Variant::EaselPerParameter => "easel, per-parameter update".to_owned(),
            Variant::EaselWithoutBlockCache => "easel, no CPU block cache".to_owned(),
            Variant::EaselFp32Nchw => "easel before (NCHW, per-param, no cache)".to_owned(),
            Variant::Eager {
                channels_last,
                bf16,
            } => format!(
                "pytorch eager {} {}",
                if bf16 { "bf16" } else { "fp32" },
                if channels_last {
                    "channels-last"
                } else {
                    "NCHW"
                }
            ),
        }
    }

    /// The variant's name for `--variants`.
    fn name(self) -> &'static str {
        match self {
            Variant::Easel => "easel",
            Variant::EaselPerParameter => "easel-per-parameter",
            Variant::EaselWithoutBlockCache => "easel-no-block-cache",
            Variant::EaselFp32Nchw => "easel-nchw",
            Variant::Eager {
                channels_last,
                bf16,
            } => match (bf16, channels_last) {
                (false, false) => "eager-nchw",
                (false, true) => "eager-cl",
                (true, false) => "eager-bf16-nchw",
                (true, true) => "eager-bf16-cl",
            },
        }
    }

    fn bf16(self, easel: &ComputePrecision) -> bool {
        match self {
            Variant::Easel | Variant::EaselPerParameter | Variant::EaselWithoutBlockCache => {
                easel.bf16
            }
            Variant::EaselFp32Nchw => false,
            Variant::Eager { bf16, .. } => bf16,
        }
    }
}

fn main() {
    let options = parse_options();
    let auto = ComputePrecision::resolve(Precision::Auto, Device::Cpu);
    let easel_channels_last = channels_last_on(Device::Cpu);
    let python = python_with_torch();
    // What the trainer does before its first step: install the CPU block cache.
    DeviceChoice::Cpu.resolve().expect("the CPU");
    let block_cache = easel_aten::cpu_block_cache_counts().capacity_bytes;
    println!(
        "CPU training step, {}x{} batch {}, {} | cpu threads {} | native bf16: {} | \
         easel computes in {}",
        options.side,
        options.side,
        options.batch,
        options.optimizer,
        tch::get_num_threads(),
        native_bf16_cpu().unwrap_or("none"),
        auto.reason
    );
    let mut variants = vec![
        Variant::Easel,
        Variant::EaselPerParameter,
        Variant::EaselWithoutBlockCache,
        Variant::EaselFp32Nchw,
    ];
    for bf16 in [false, true] {
        for channels_last in [false, true] {
            variants.push(Variant::Eager {
                channels_last,
                bf16,
            });
        }
    }
    let timed: Vec<Variant> = variants
        .into_iter()
        .filter(|variant| !variant.bf16(&auto) || auto.bf16 || options.bf16_anyway)
        .filter(|variant| {
            let name = variant.name();
            options.variants.is_empty()
                || name == "eager-cl"
                || options.variants.iter().any(|wanted| wanted == name)
        })
        .collect();
    for model in &options.models {
        println!("\n{model}");
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); timed.len()];
        for _ in 0..options.repeats {
            for (variant, samples) in timed.iter().zip(&mut rates) {
                let cached = matches!(variant, Variant::Easel | Variant::EaselPerParameter);
                easel_aten::set_cpu_block_cache_capacity(if cached { block_cache } else { 0 });
                let rate = match variant {
                    Variant::Easel => easel_rate(model, &options, Precision::Auto, None, true),
                    Variant::EaselPerParameter => {
                        easel_rate(model, &options, Precision::Auto, None, false)
                    }
                    Variant::EaselWithoutBlockCache => {
                        easel_rate(model, &options, Precision::Auto, None, true)
                    }
                    Variant::EaselFp32Nchw => {
                        easel_rate(model, &options, Precision::Fp32, Some(false), false)
                    }
                    Variant::Eager {
                        channels_last,
                        bf16,
                    } => eager_rate(&python, model, &options, *channels_last, *bf16),
                };
                samples.push(rate);
            }
        }
        let medians: Vec<f64> = rates.iter().map(|samples| median(samples)).collect();
        let baseline = timed
            .iter()
            .position(|v| {
                *v == Variant::Eager {
                    channels_last: true,
                    bf16: false,
                }
            })
            .map(|i| medians[i]);
        for (variant, rate) in timed.iter().zip(&medians) {
            let ratio = baseline.map_or(String::new(), |b| format!("{:5.2}x", rate / b));
            println!(
                "  {:<42} {rate:8.1} images/s  {ratio}",
                variant.label(&auto, easel_channels_last)
            );
        }
        if !auto.bf16 && !options.bf16_anyway {
            println!(
                "  bf16 variants skipped: no native bf16 on this CPU (--bf16-anyway times them)"
            );
        }
    }
}

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: &str| -> String {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let number = |name: &str, default: &str| -> usize {
        value(name, default)
            .parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    };
    Options {
        side: number("--side", "150") as i64,
        batch: number("--batch", "32") as i64,
        warmup: number("--warmup", "2"),
        steps: number("--steps", "10"),
        repeats: number("--repeats", "3").max(1),
        models: value("--models", "small_cnn,deep_cnn,vgg16_frozen,vgg16")
            .split(',')
            .map(str::to_owned)
            .collect(),
        bf16_anyway: args.iter().any(|arg| arg == "--bf16-anyway"),
        optimizer: match value("--optimizer", "sgd").as_str() {
            name @ ("sgd" | "adam") => name.to_owned(),
            other => panic!("--optimizer takes sgd or adam, not {other}"),
        },
        variants: value("--variants", "")
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// The spec of a bench model: the configs' heads, 5 classes, `optimizer` (SGD with momentum 0.9).
fn spec_of(model: &str, options: &Options, precision: Precision) -> ExperimentSpec {
    let (side, batch, optimizer) = (options.side, options.batch, &options.optimizer);
    let (architecture, head, frozen) = match model {
        "small_cnn" => ("small_cnn", "[64, 128]", false),
        "deep_cnn" => ("deep_cnn", "[64, 128]", false),
        "vgg16" => ("vgg16", "[32, 64, 128, 64]", false),
        "vgg16_frozen" => ("vgg16", "[32, 64, 128, 64]", true),
        other => panic!("--models takes small_cnn, deep_cnn, vgg16, vgg16_frozen, not {other}"),
    };
    let text = format!(
        "[data]\npath = \"images\"\nimage_size = {side}\n\
         [model]\narchitecture = \"{architecture}\"\nhead = {head}\ndropout = 0.2\n\
         freeze_backbone = {frozen}\n\
         [train]\nbatch_size = {batch}\noptimizer = \"{optimizer}\"\nlearning_rate = 0.001\n\
         momentum = 0.9\ncache_frozen_features = false\n"
    );
    // Parsed without the spec's checks: a frozen backbone here has random weights, not
    // pretrained ones, which makes no difference to a step's time.
    let mut spec: ExperimentSpec = toml::from_str(&text).expect("bench spec");
    spec.train.precision = precision;
    spec
}

/// Images/s of the trainer's training step; `channels_last_layout` overrides the trainer's layout (of
/// inputs and weights), `fused` picks the optimizer's update.
fn easel_rate(
    model: &str,
    options: &Options,
    precision: Precision,
    channels_last_layout: Option<bool>,
    fused: bool,
) -> f64 {
    let spec = spec_of(model, options, precision);
    let hw = (options.side, options.side);
    let initial = InitialModel::build(&spec, 5, hw, Device::Cpu, &mut |_| {}).expect("model");
    let precision = ComputePrecision::resolve(spec.train.precision, Device::Cpu);
    let frozen = spec.model.freeze_backbone;
    let mut trainee = initial
        .into_trainee(&spec, &precision, frozen, None)
        .expect("trainee");
    if !fused {
        trainee.optimizer.set_kernel(UpdateKernel::PerParameter);
    }
    if channels_last_layout == Some(false) {
        // Weights back to NCHW (no update has made optimizer state in their layout yet).
        let _no_grad = tch::no_grad_guard();
        for (_, weights) in trainee.vs.variables() {
            weights.shallow_clone().set_data(&weights.contiguous());
        }
    }
    tch::manual_seed(0);
    let x = Tensor::randn(
        [options.batch, 3, options.side, options.side],
        tch::kind::FLOAT_CPU,
    );
    let x = if channels_last_layout.unwrap_or_else(|| channels_last_on(Device::Cpu)) {
        channels_last(&x)
    } else {
        x
    };
    let y = Tensor::randint(5, [options.batch], (Kind::Int64, Device::Cpu));
    let rates = GroupRates {
        backbone: 1e-3,
        head: 1e-3,
    };
    let mut step = || train_step(&mut trainee, &x, &y, 0.0, rates).1;
    for _ in 0..options.warmup {
        let _ = step();
    }
    let started = Instant::now();
    let mut last = Tensor::new();
    for _ in 0..options.steps {
        last = step();
    }
    let _ = last.double_value(&[]);
    (options.steps as i64 * options.batch) as f64 / started.elapsed().as_secs_f64()
}

fn eager_rate(
    python: &(String, PathBuf),
    model: &str,
    options: &Options,
    channels_last: bool,
    bf16: bool,
) -> f64 {
    let (architecture, frozen) = match model.strip_suffix("_frozen") {
        Some(base) => (base, true),
        None => (model, false),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/cpu_step_pytorch.py");
    let mut command = Command::new(&python.0);
    command
        .env("PYTHONPATH", &python.1)
        .env("OMP_NUM_THREADS", tch::get_num_threads().to_string())
        .args(["-W", "ignore", script, "--architecture", architecture])
        .args(["--side", &options.side.to_string()])
        .args(["--batch", &options.batch.to_string()])
        .args(["--warmup", &options.warmup.to_string()])
        .args(["--steps", &options.steps.to_string()])
        .args(["--optimizer", &options.optimizer]);
    for (on, flag) in [
        (frozen, "--frozen"),
        (channels_last, "--channels-last"),
        (bf16, "--bf16"),
    ] {
        if on {
            command.arg(flag);
        }
    }
    let output = command.output().expect("run python3");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(line.trim()).expect("a JSON line");
    value["images_per_second"]
        .as_f64()
        .expect("images_per_second")
}

/// `python3` and the folder holding the PyTorch libtorch came from (`.libtorch` is its `torch/`).
fn python_with_torch() -> (String, PathBuf) {
    let libtorch = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.libtorch"));
    let site = libtorch
        .canonicalize()
        .ok()
        .and_then(|torch| torch.parent().map(PathBuf::from))
        .expect(".libtorch: run `bash deploy/setup-libtorch.sh`");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    (python, site)
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
