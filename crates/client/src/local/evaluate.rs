//! `client evaluate RUN_DIR DATA_DIR`: the best weights of a run (trained here or fetched from a
//! worker) measured on a folder-per-class dataset (or a .zip of one); with `--split test`, only on
//! the images the run held out of training.

use super::device::parse_device;
use super::held_out::{HeldOut, held_out_images};
use crate::format::count;
use anyhow::Context;
use easel_dataset::ScanOptions;
use easel_engine::{DeviceChoice, Evaluation};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// A run directory (from `train --local` or `fetch`).
    pub run_dir: PathBuf,
    /// A folder with one sub-folder per class, named as in the run (or a .zip of one).
    pub data: PathBuf,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Only the run's held-out images of this split (`test`: never trained on, never used to
    /// pick the best epoch), found in DATA by their content.
    #[arg(long, value_enum)]
    pub split: Option<HeldOut>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct EvaluationJson<'a> {
    run_dir: String,
    data: String,
    /// The held-out split evaluated, when only one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<&'static str>,
    classes: &'a [String],
    #[serde(flatten)]
    evaluation: &'a Evaluation,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let scan = easel_dataset::scan(std::slice::from_ref(&args.data), &ScanOptions::default())
        .with_context(|| format!("cannot scan {}", args.data.display()))?;
    for warning in scan.warnings() {
        eprintln!("warning: {warning}");
    }
    if scan.manifest.entries.is_empty() {
        anyhow::bail!(
            "{}: no images found (expected one sub-folder per class)",
            args.data.display()
        );
    }
    let manifest = match args.split {
        Some(held_out) => held_out_images(&args.run_dir, held_out, &scan.manifest)?,
        None => scan.manifest.clone(),
    };
    let evaluation = easel_engine::evaluate(&args.run_dir, &manifest, scan.source(), args.device)
        .with_context(|| format!("cannot evaluate {}", args.run_dir.display()))?;
    let classes = &manifest.classes;
    if args.json {
        let json = EvaluationJson {
            run_dir: args.run_dir.display().to_string(),
            data: args.data.display().to_string(),
            split: args.split.map(HeldOut::name),
            classes,
            evaluation: &evaluation,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        if let Some(held_out) = args.split {
            println!(
                "held out: the run's {} images, which it never trained on",
                held_out.name()
            );
        }
        print_table(&evaluation, classes);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(evaluation: &Evaluation, classes: &[String]) {
    println!(
        "{} images: accuracy {:.2}%, loss {:.4}",
        count(evaluation.images),
        evaluation.accuracy * 100.0,
        evaluation.loss
    );
    let width = classes.iter().map(String::len).max().unwrap_or(5).max(5);
    println!("{:width$}  {:>8}  {:>8}", "class", "images", "accuracy");
    for (index, class) in classes.iter().enumerate() {
        let images: u64 = evaluation
            .confusion
            .get(index)
            .map_or(0, |row| row.iter().sum());
        let accuracy = evaluation
            .per_class_accuracy
            .get(index)
            .copied()
            .unwrap_or(0.0);
        println!(
            "{class:width$}  {:>8}  {:>7.2}%",
            count(images),
            accuracy * 100.0
        );
    }
    println!("confusion (rows: true class, columns: predicted, in the order above):");
    for row in &evaluation.confusion {
        let cells: Vec<String> = row.iter().map(|n| format!("{n:>6}")).collect();
        println!("  {}", cells.join(""));
    }
}
