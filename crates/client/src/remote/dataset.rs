//! The spec and dataset a submit ships: the spec file parsed here (so mistakes surface before any
//! upload) and the dataset scanned into a content-addressed manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use easel_dataset::{ScanOptions, ScanReport, SubsetRoots};
use easel_spec::ExperimentSpec;

pub struct LoadedSpec {
    pub text: String,
    pub spec: ExperimentSpec,
}

pub fn load_spec(path: &Path) -> anyhow::Result<LoadedSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let spec: ExperimentSpec = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(LoadedSpec { text, spec })
}

/// Scans the spec's data roots (relative paths are relative to the spec file) and refuses a
/// dataset with errors, listing them.
pub fn scan(spec: &ExperimentSpec, spec_path: &Path) -> anyhow::Result<ScanReport> {
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
    let data = &spec.data;
    let options = ScanOptions { max_image_pixels: data.max_image_pixels, ..ScanOptions::default() };
    let explicit = data.train.is_some() || data.validation.is_some() || data.test.is_some();
    let report = if explicit {
        let roots = SubsetRoots {
            train: data.train.iter().map(resolve).collect(),
            validation: data.validation.iter().map(resolve).collect(),
            test: data.test.iter().map(resolve).collect(),
        };
        easel_dataset::scan_subsets(&roots, &options)?
    } else {
        let roots: Vec<PathBuf> = data.path.iter().chain(data.paths.iter()).map(resolve).collect();
        if roots.is_empty() {
            bail!("{}: `data.path` (or `data.paths`, or `data.train`) must name the images", spec_path.display());
        }
        easel_dataset::scan(&roots, &options)?
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
