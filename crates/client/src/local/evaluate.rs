//! `client evaluate RUN_DIR DATA_DIR`: the best weights of a run (trained here or fetched from a
//! worker) measured on a folder-per-class dataset (or a .zip of one).

use super::device::parse_device;
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
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct EvaluationJson<'a> {
    run_dir: String,
    data: String,
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
    let evaluation =
        easel_engine::evaluate(&args.run_dir, &scan.manifest, scan.source(), args.device)
            .with_context(|| format!("cannot evaluate {}", args.run_dir.display()))?;
    let classes = &scan.manifest.classes;
    if args.json {
        let json = EvaluationJson {
            run_dir: args.run_dir.display().to_string(),
            data: args.data.display().to_string(),
            classes,
            evaluation: &evaluation,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
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
