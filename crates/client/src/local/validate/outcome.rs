//! What `validate` found, as `--json` prints it and the report's lines show it.

use easel_dataset::{ScanReport, Split};
use easel_engine::{Estimate, PocReport};
use easel_spec::SpecErrors;
use serde::Serialize;

/// Everything `validate` found, as printed by `--json`.
#[derive(Debug, Default, Serialize)]
pub(super) struct Outcome {
    pub ok: bool,
    pub spec: String,
    /// Every problem, one line each (spec problems as `file:line:column: key: message`).
    pub problems: Vec<String>,
    pub spec_errors: Vec<SpecErrorJson>,
    pub warnings: Vec<String>,
    pub dataset: Option<DatasetSummary>,
    /// The spec's `data.path` when it is an object-store URL: the worker scans that dataset,
    /// so there is no local scan, split, estimate or proof of concept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store_dataset: Option<String>,
    pub split: Option<SplitSummary>,
    pub estimate: Option<Estimate>,
    pub proof_of_concept: Option<PocReport>,
    /// A sweep's trials, each with its estimate (empty for a single experiment).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<TrialOutcome>,
    pub seconds: f64,
}

/// One trial of a sweep as `validate` saw it.
#[derive(Debug, Serialize)]
pub(super) struct TrialOutcome {
    pub number: usize,
    pub params: std::collections::BTreeMap<String, toml::Value>,
    pub estimate: Option<Estimate>,
    /// The trial whose proof of concept stands for this one's (the same model and data).
    pub proof_of_concept_of_trial: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(super) struct SpecErrorJson {
    path: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

#[derive(Debug, Serialize)]
pub(super) struct DatasetSummary {
    pub roots: Vec<String>,
    pub images: usize,
    pub bytes: u64,
    pub classes: Vec<ClassCount>,
    pub hidden_skipped: usize,
    pub non_images: usize,
    pub unreadable: usize,
    pub oversized: usize,
    pub duplicate_groups: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct ClassCount {
    pub name: String,
    pub images: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct SplitSummary {
    train: usize,
    validation: usize,
    test: usize,
}

impl Outcome {
    pub fn record_spec_errors(&mut self, errors: &SpecErrors) {
        for error in errors {
            self.problems.push(error.to_string());
            self.spec_errors.push(SpecErrorJson {
                path: error.path.clone(),
                line: error.position.map(|p| p.line),
                column: error.position.map(|p| p.column),
                message: error.message.clone(),
            });
        }
    }
}

impl DatasetSummary {
    pub fn of(scan: &ScanReport) -> Self {
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
}

impl SplitSummary {
    pub fn of(split: &Split) -> Self {
        SplitSummary {
            train: split.train.len(),
            validation: split.validation.len(),
            test: split.test.len(),
        }
    }
}
