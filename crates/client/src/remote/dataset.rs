//! The spec and dataset a submit ships: the spec loaded and validated here (so mistakes surface
//! before any upload), the dataset scanned into a content-addressed manifest and tried in a
//! short proof-of-concept training.

use std::path::Path;

use anyhow::{Context, bail};
use easel_dataset::{LocalSource, Manifest, ScanReport};
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

/// Scans the spec's dataset here and, with `proof_of_concept`, trains on it for a few steps;
/// `None` when the worker reads the dataset from object storage (nothing to scan or upload).
pub fn scan_here(
    spec_path: &Path,
    spec: &ExperimentSpec,
    proof_of_concept: bool,
) -> anyhow::Result<Option<ScanReport>> {
    if let Some(url) = spec.data.object_store_url() {
        eprintln!("dataset: {url} (read by the worker from object storage)");
        return Ok(None);
    }
    eprintln!("scanning the dataset of {}", spec_path.display());
    let report = scan(spec)?;
    let manifest = &report.manifest;
    eprintln!(
        "dataset: {} images in {} classes ({:.1} MB)",
        manifest.entries.len(),
        manifest.classes.len(),
        manifest.total_bytes() as f64 / 1e6
    );
    if proof_of_concept {
        try_on_cpu(spec, &report)?;
    }
    Ok(Some(report))
}

/// Scans the spec's data and refuses a dataset with errors, listing them.
fn scan(spec: &ExperimentSpec) -> anyhow::Result<ScanReport> {
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

/// The manifest a submit ships and where its files are read: the scan's, or none for a dataset
/// the worker reads from object storage.
pub fn manifest_and_source(report: Option<&ScanReport>) -> (&Manifest, &LocalSource) {
    static NONE: std::sync::LazyLock<(Manifest, LocalSource)> = std::sync::LazyLock::new(|| {
        let empty = Manifest::new(Vec::new(), Vec::new());
        (empty, LocalSource::default())
    });
    match report {
        Some(report) => (&report.manifest, report.source()),
        None => (&NONE.0, &NONE.1),
    }
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
    let Some(path) = loaded.spec.model.pretrained.as_ref().and_then(|w| w.file()) else {
        return Ok(shipment);
    };
    let (size, digest) = easel_digest::digest_file_sized(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let mut document: toml_edit::DocumentMut =
        loaded.text.parse().context("failed to re-read the spec")?;
    document["model"]["pretrained"] =
        toml_edit::value(easel_spec::PretrainedWeights::Blob(digest.clone()).to_string());
    shipment.spec_text = document.to_string();
    shipment.blobs.push((digest.clone(), size));
    shipment
        .files
        .insert(digest, ExtraBlob::File(path.to_owned()));
    Ok(shipment)
}

/// A few training steps on this machine's CPU, so a spec whose loss is not finite is refused
/// before a GPU is paid for.
#[cfg(feature = "engine")]
pub fn try_on_cpu(spec: &ExperimentSpec, report: &ScanReport) -> anyhow::Result<()> {
    eprintln!(
        "proof of concept: {} steps on CPU (skip with --no-poc)",
        spec.local.steps
    );
    let poc =
        easel_engine::proof_of_concept(spec, &report.manifest, report.source(), &mut |_, _| {})
            .context("the proof-of-concept training failed")?;
    if !poc.loss_finite {
        bail!(
            "the proof-of-concept loss is not finite ({:?}); fix the spec before paying for a GPU",
            poc.losses
        );
    }
    eprintln!(
        "proof of concept: loss {:.4} -> {:.4} in {:.1} s{}",
        poc.first_loss,
        poc.last_loss,
        poc.seconds,
        if poc.loss_fell {
            ""
        } else {
            " (did not fall: check the learning rate)"
        }
    );
    Ok(())
}

#[cfg(not(feature = "engine"))]
pub fn try_on_cpu(_: &ExperimentSpec, _: &ScanReport) -> anyhow::Result<()> {
    eprintln!("proof of concept skipped: this client was built without the engine");
    Ok(())
}
