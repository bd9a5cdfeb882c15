//! `client export RUN_DIR --format onnx`: a run's best weights (those `predict` uses) as a model
//! other runtimes load, with the preprocessing it expects written into the model itself.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// ONNX (opset 17): ONNX Runtime, TensorRT, OpenVINO, the browser.
    Onnx,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A run directory (from `train --local` or `fetch`).
    pub run_dir: PathBuf,
    #[arg(long, value_enum, default_value = "onnx")]
    pub format: ExportFormat,
    /// Where to write the model (default: model.onnx in the run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportFormat::Onnx = args.format;
    let bytes = easel_engine::export_onnx(&args.run_dir)
        .with_context(|| format!("cannot export {}", args.run_dir.display()))?;
    let out = args.out.unwrap_or_else(|| args.run_dir.join("model.onnx"));
    easel_engine::artifacts::write_atomically(&out, &bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} ({:.1} MB): input `{}` [batch, 3, height, width], normalised RGB; output `{}` \
         [batch, classes]; the classes, image size, mean and std are in its metadata",
        out.display(),
        bytes.len() as f64 / 1e6,
        easel_engine::export::ONNX_INPUT,
        easel_engine::export::ONNX_OUTPUT,
    );
    Ok(ExitCode::SUCCESS)
}
