//! `client predict RUN_DIR IMAGE...`: the most likely classes of each image, with the best
//! weights of a run trained here or fetched from a worker.

use super::device::parse_device;
use anyhow::Context;
use easel_engine::{DeviceChoice, Prediction};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A run directory (from `train --local` or `fetch`).
    pub run_dir: PathBuf,
    /// Image files (JPEG, PNG, WebP, GIF, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many of the most likely classes to show per image.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Print JSON (one object per image) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let mut predictions = easel_engine::predict(&args.run_dir, &args.images, args.device)
        .with_context(|| format!("cannot predict with {}", args.run_dir.display()))?;
    for prediction in &mut predictions {
        prediction.top.truncate(usize::from(args.top));
    }
    if args.json {
        let json: Vec<PredictionJson> = predictions.iter().map(PredictionJson::from).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for prediction in &predictions {
            println!("{}", describe(prediction));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ranked classes as objects (`{"class": .., "probability": ..}`), easier for scripts than pairs.
#[derive(Serialize)]
struct PredictionJson<'a> {
    path: String,
    class: &'a str,
    probability: f64,
    top: Vec<Ranked<'a>>,
}

#[derive(Serialize)]
struct Ranked<'a> {
    class: &'a str,
    probability: f64,
}

impl<'a> From<&'a Prediction> for PredictionJson<'a> {
    fn from(prediction: &'a Prediction) -> Self {
        PredictionJson {
            path: prediction.path.display().to_string(),
            class: &prediction.class,
            probability: prediction.probability,
            top: prediction
                .top
                .iter()
                .map(|(class, probability)| Ranked {
                    class,
                    probability: *probability,
                })
                .collect(),
        }
    }
}

fn describe(prediction: &Prediction) -> String {
    let ranked: Vec<String> = prediction
        .top
        .iter()
        .map(|(class, probability)| format!("{class} {:.1}%", probability * 100.0))
        .collect();
    format!("{}: {}", prediction.path.display(), ranked.join(", "))
}
