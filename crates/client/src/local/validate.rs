//! `client validate experiment.toml`: everything that can be checked on the laptop before
//! paying for a GPU. The spec (every problem at once, with lines), the dataset (classes, counts,
//! skipped and unreadable files, duplicates), whether the model fits the image size, what the
//! full run will cost, and a proof-of-concept training of a few CPU steps whose loss must be
//! finite and falling. Writes nothing.

use crate::format::{bytes, count, millions};
use crate::spec_data::scan_spec_data;
use easel_dataset::{Manifest, ScanReport, Split};
use easel_engine::{Estimate, PocReport};
use easel_spec::{ExperimentSpec, SpecErrors};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The experiment spec (experiment.toml).
    pub spec: PathBuf,
    /// Print one JSON object instead of the report (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Everything `validate` found, as printed by `--json`.
#[derive(Debug, Default, Serialize)]
struct Outcome {
    ok: bool,
    spec: String,
    /// Every problem, one line each (spec problems as `file:line:column: key: message`).
    problems: Vec<String>,
    spec_errors: Vec<SpecErrorJson>,
    warnings: Vec<String>,
    dataset: Option<DatasetSummary>,
    /// The spec's `data.path` when it is an object-store URL: the worker scans that dataset,
    /// so there is no local scan, split, estimate or proof of concept.
    #[serde(skip_serializing_if = "Option::is_none")]
    object_store_dataset: Option<String>,
    split: Option<SplitSummary>,
    estimate: Option<Estimate>,
    proof_of_concept: Option<PocReport>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct SpecErrorJson {
    path: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

#[derive(Debug, Serialize)]
struct DatasetSummary {
    roots: Vec<String>,
    images: usize,
    bytes: u64,
    classes: Vec<ClassCount>,
    hidden_skipped: usize,
    non_images: usize,
    unreadable: usize,
    oversized: usize,
    duplicate_groups: usize,
}

#[derive(Debug, Serialize)]
struct ClassCount {
    name: String,
    images: usize,
}

#[derive(Debug, Serialize)]
struct SplitSummary {
    train: usize,
    validation: usize,
    test: usize,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let human = !args.json;
    let mut outcome = Outcome {
        spec: args.spec.display().to_string(),
        ..Outcome::default()
    };

    let spec = match easel_spec::load_experiment(&args.spec) {
        Ok(spec) => spec,
        Err(errors) => {
            record_spec_errors(&mut outcome, &errors);
            if human {
                println!("{errors}");
                println!(
                    "{} in {}; nothing else was checked",
                    plural(errors.len(), "problem"),
                    args.spec.display()
                );
            }
            return finish(outcome, started, human);
        }
    };
    if human {
        println!(
            "spec      {}: `{}`, {}",
            args.spec.display(),
            spec.name,
            describe_model(&spec)
        );
    }

    if let Some(url) = spec.data.object_store_url() {
        if human {
            println!(
                "dataset   {url}: in object storage; the worker scans it when the job starts \
                 (no local scan or proof of concept)"
            );
        }
        outcome.object_store_dataset = Some(url.to_owned());
        return finish(outcome, started, human);
    }

    let scan = match scan_spec_data(&spec) {
        Ok(scan) => scan,
        Err(error) => {
            add_problem(&mut outcome, human, format!("{error:#}"));
            return finish(outcome, started, human);
        }
    };
    let summary = summarize(&scan);
    outcome.warnings.extend(scan.warnings());
    let dataset_errors = scan.errors();
    if human {
        print_dataset(&summary, &outcome.warnings, &dataset_errors);
    }
    outcome.problems.extend(dataset_errors);
    outcome.dataset = Some(summary);
    if !outcome.problems.is_empty() {
        return finish(outcome, started, human);
    }

    let manifest = &scan.manifest;
    let split = match easel_dataset::split(
        manifest,
        spec.data.validation_split,
        spec.data.test_split,
        spec.data.seed,
    ) {
        Ok(split) => split,
        Err(error) => {
            add_problem(
                &mut outcome,
                human,
                format!("cannot split the dataset: {error}"),
            );
            return finish(outcome, started, human);
        }
    };
    if human {
        print_split(&split, &spec);
    }
    outcome.split = Some(SplitSummary {
        train: split.train.len(),
        validation: split.validation.len(),
        test: split.test.len(),
    });
    if split.validation.is_empty() {
        add_problem(
            &mut outcome,
            human,
            "the split leaves no validation images: raise data.validation_split or add images"
                .into(),
        );
    }

    match easel_engine::estimate(&spec, manifest.classes.len(), split.train.len() as u64) {
        Ok(estimate) => {
            if human {
                print_estimate(&estimate, &spec);
            }
            outcome.estimate = Some(estimate);
        }
        Err(error) => add_problem(&mut outcome, human, error.to_string()),
    }

    if outcome.problems.is_empty() {
        match proof_of_concept(&spec, manifest, &scan, human) {
            Ok(report) => {
                if human {
                    print_poc(&report);
                }
                if !report.loss_finite {
                    let message = "proof of concept: the loss is not finite (NaN or infinite): the images or the model produce invalid values";
                    add_problem(&mut outcome, human, message.into());
                } else if !report.loss_fell {
                    add_problem(
                        &mut outcome,
                        human,
                        format!(
                            "proof of concept: the loss did not fall over {} steps ({:.4} -> {:.4}): the model cannot fit even one batch; check the images and the model settings",
                            report.steps, report.first_loss, report.last_loss
                        ),
                    );
                }
                outcome.proof_of_concept = Some(report);
            }
            Err(error) => add_problem(
                &mut outcome,
                human,
                format!("proof of concept failed: {error}"),
            ),
        }
    } else if human {
        println!("proof of concept skipped: fix the problems above first");
    }
    finish(outcome, started, human)
}

fn proof_of_concept(
    spec: &ExperimentSpec,
    manifest: &Manifest,
    scan: &ScanReport,
    human: bool,
) -> easel_engine::Result<PocReport> {
    let bar = if human {
        ProgressBar::new(spec.local.steps.max(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("proof of concept {bar:30} {pos}/{len} steps  loss {msg}")
    {
        bar.set_style(style);
    }
    let report =
        easel_engine::proof_of_concept(spec, manifest, scan.source(), &mut |step, loss| {
            bar.set_position(u64::from(step));
            bar.set_message(format!("{loss:.4}"));
        });
    bar.finish_and_clear();
    report
}

fn finish(mut outcome: Outcome, started: Instant, human: bool) -> anyhow::Result<ExitCode> {
    outcome.ok = outcome.problems.is_empty();
    outcome.seconds = started.elapsed().as_secs_f64();
    if human {
        if outcome.ok {
            println!("ok        ready for a full run ({:.1} s)", outcome.seconds);
        } else if outcome.spec_errors.is_empty() {
            // Each problem was printed where it was found; spec problems with their own count.
            println!("not ready: {}", plural(outcome.problems.len(), "problem"));
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    }
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn add_problem(outcome: &mut Outcome, human: bool, message: String) {
    if human {
        println!("error: {message}");
    }
    outcome.problems.push(message);
}

fn record_spec_errors(outcome: &mut Outcome, errors: &SpecErrors) {
    for error in errors {
        outcome.problems.push(error.to_string());
        outcome.spec_errors.push(SpecErrorJson {
            path: error.path.clone(),
            line: error.position.map(|p| p.line),
            column: error.position.map(|p| p.column),
            message: error.message.clone(),
        });
    }
}

fn summarize(scan: &ScanReport) -> DatasetSummary {
    let manifest = &scan.manifest;
    DatasetSummary {
        roots: scan.roots.iter().map(|root| root.path.clone()).collect(),
        images: manifest.entries.len(),
        bytes: manifest.total_bytes(),
        classes: manifest
            .classes
            .iter()
            .zip(manifest.class_counts())
            .map(|(name, images)| ClassCount {
                name: name.clone(),
                images,
            })
            .collect(),
        hidden_skipped: scan.hidden_skipped,
        non_images: scan.non_images.len(),
        unreadable: scan.unreadable.len(),
        oversized: scan.oversized.len(),
        duplicate_groups: scan.duplicates.len(),
    }
}

fn describe_model(spec: &ExperimentSpec) -> String {
    let model = &spec.model;
    let head: Vec<String> = model.head.iter().map(u32::to_string).collect();
    let size = spec.data.image_size;
    let mut text = format!(
        "{} at {}x{}, head {}",
        serde_name(&model.architecture),
        size.height(),
        size.width(),
        head.join("-")
    );
    if let Some(weights) = &model.pretrained {
        text.push_str(&format!(", pretrained from {}", weights.display()));
        if model.freeze_backbone {
            text.push_str(" (frozen)");
        }
    }
    text
}

/// The spelling a user writes in the spec (`vgg16_bn`), not the Rust variant name.
fn serde_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn print_dataset(summary: &DatasetSummary, warnings: &[String], errors: &[String]) {
    println!(
        "dataset   {}: {} images in {} classes, {}",
        summary.roots.join(", "),
        count(summary.images as u64),
        summary.classes.len(),
        bytes(summary.bytes)
    );
    let width = summary
        .classes
        .iter()
        .map(|class| class.name.len())
        .max()
        .unwrap_or(0);
    for class in &summary.classes {
        println!(
            "            {:width$}  {:>8}",
            class.name,
            count(class.images as u64)
        );
    }
    println!(
        "          skipped: {} hidden, {} not images, {} unreadable, {} over the pixel limit; {} groups of duplicates",
        summary.hidden_skipped,
        summary.non_images,
        summary.unreadable,
        summary.oversized,
        summary.duplicate_groups
    );
    const SHOWN: usize = 10;
    for warning in warnings.iter().take(SHOWN) {
        println!("warning: {warning}");
    }
    if warnings.len() > SHOWN {
        println!(
            "warning: ... and {} more (see --json)",
            warnings.len() - SHOWN
        );
    }
    for error in errors {
        println!("error: {error}");
    }
}

fn print_split(split: &Split, spec: &ExperimentSpec) {
    println!(
        "split     {} train, {} validation, {} test (seed {})",
        count(split.train.len() as u64),
        count(split.validation.len() as u64),
        count(split.test.len() as u64),
        spec.data.seed
    );
}

fn print_estimate(estimate: &Estimate, spec: &ExperimentSpec) {
    let [channels, height, width] = estimate.feature_map;
    println!(
        "model     {} parameters ({} trainable at the start), backbone output {channels}x{height}x{width}",
        millions(estimate.parameters),
        millions(estimate.trainable_parameters)
    );
    println!(
        "full run  {} epochs x {} steps = {} steps at batch {}; {} images seen; activations ~{} per step ({})",
        spec.train.epochs,
        count(estimate.steps_per_epoch),
        count(estimate.total_steps),
        spec.train.batch_size,
        count(estimate.images_per_epoch * spec.train.epochs.max(0) as u64),
        bytes(estimate.activation_bytes_per_batch),
        serde_name(&spec.train.precision)
    );
}

fn print_poc(report: &PocReport) {
    let verdict = match (report.loss_finite, report.loss_fell) {
        (true, true) => "finite and falling",
        (true, false) => "NOT falling",
        (false, _) => "NOT finite",
    };
    println!(
        "proof     {} CPU steps at {}x{} on {} images: loss {:.4} -> {:.4}, {verdict} ({:.1} s)",
        report.steps,
        report.image_size,
        report.image_size,
        report.images_used,
        report.first_loss,
        report.last_loss,
        report.seconds
    );
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
