//! The spec and dataset a submit ships: the spec loaded and validated here (so mistakes surface
//! before any upload) and the dataset scanned into a content-addressed manifest.

use std::path::Path;

use anyhow::{Context, bail};
use easel_dataset::{ScanOptions, ScanReport, SubsetRoots};
use easel_spec::{DataSources, ExperimentSpec};

pub struct LoadedSpec {
    /// The file as written: the worker stores it as the job's spec.
    pub text: String,
    /// Validated, with paths resolved against the spec's folder.
    pub spec: ExperimentSpec,
}

pub fn load_spec(path: &Path) -> anyhow::Result<LoadedSpec> {
    let spec = easel_spec::load_experiment(path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(LoadedSpec { text, spec })
}

/// Scans the spec's data and refuses a dataset with errors, listing them.
pub fn scan(spec: &ExperimentSpec) -> anyhow::Result<ScanReport> {
    let options = ScanOptions {
        max_image_pixels: spec.data.max_image_pixels,
        ..ScanOptions::default()
    };
    let report = match spec.data.sources() {
        Some(DataSources::Split { roots }) => easel_dataset::scan(&roots, &options)?,
        Some(DataSources::Explicit {
            train,
            validation,
            test,
        }) => {
            let roots = SubsetRoots {
                train: vec![train],
                validation: validation.into_iter().collect(),
                test: test.into_iter().collect(),
            };
            easel_dataset::scan_subsets(&roots, &options)?
        }
        None => bail!("the spec names no data (`data.path` or `data.train`)"),
    };
    let errors = report.errors();
    if !errors.is_empty() {
        bail!("the dataset has problems:\n  {}", errors.join("\n  "));
    }
    for warning in report.warnings() {
        eprintln!("warning: {warning}");
    }
    if report.manifest.entries.is_empty() {
        bail!("the dataset has no usable images");
    }
    Ok(report)
}
