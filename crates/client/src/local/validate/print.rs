//! The report's lines as `validate` prints them while it checks.

use super::outcome::DatasetSummary;
use crate::format::{bytes, count, millions};
use easel_dataset::Split;
use easel_engine::{Estimate, PocReport};
use easel_spec::ExperimentSpec;
use serde::Serialize;

pub(super) fn describe_model(spec: &ExperimentSpec) -> String {
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
        text.push_str(&format!(", pretrained from {weights}"));
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

pub(super) fn print_dataset(summary: &DatasetSummary, warnings: &[String], errors: &[String]) {
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

pub(super) fn print_split(split: &Split, spec: &ExperimentSpec) {
    println!(
        "split     {} train, {} validation, {} test (seed {})",
        count(split.train.len() as u64),
        count(split.validation.len() as u64),
        count(split.test.len() as u64),
        spec.data.seed
    );
}

pub(super) fn print_estimate(estimate: &Estimate, spec: &ExperimentSpec) {
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

pub(super) fn print_poc(report: &PocReport) {
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

pub(super) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
