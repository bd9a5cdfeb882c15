//! The spec and dataset a submit ships: the spec loaded and validated here (so mistakes surface
//! before any upload) and the dataset scanned into a content-addressed manifest.

use std::path::Path;

use anyhow::{Context, bail};
use easel_dataset::ScanReport;
use easel_spec::ExperimentSpec;

use super::upload::{ExtraBlob, ExtraBlobs};

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
    let report = crate::spec_data::scan_spec_data(spec)?;
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

/// The spec as sent to the worker, plus blobs that travel beside the dataset's images.
pub struct Shipment {
    pub spec_text: String,
    /// (digest, size) of each extra blob.
    pub blobs: Vec<(String, u64)>,
    pub files: ExtraBlobs,
}

/// Pretrained weights are a file on this machine: they travel as a blob like the images, and
/// the spec sent names them `blob:<digest>` (the worker resolves that to its blob store).
pub fn ship_pretrained(loaded: &LoadedSpec) -> anyhow::Result<Shipment> {
    let mut shipment = Shipment {
        spec_text: loaded.text.clone(),
        blobs: Vec::new(),
        files: ExtraBlobs::new(),
    };
    let Some(path) = &loaded.spec.model.pretrained else {
        return Ok(shipment);
    };
    let (size, digest) = easel_digest::digest_file_sized(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let mut document: toml_edit::DocumentMut =
        loaded.text.parse().context("failed to re-read the spec")?;
    document["model"]["pretrained"] = toml_edit::value(format!("blob:{digest}"));
    shipment.spec_text = document.to_string();
    shipment.blobs.push((digest.clone(), size));
    shipment.files.insert(digest, ExtraBlob::File(path.clone()));
    Ok(shipment)
}
