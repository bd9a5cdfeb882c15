//! `train`: a whole run, from the manifest to `report.json`, resumable from its checkpoint.

pub mod epoch;
pub mod feature_cache;
pub mod monitor;
pub mod optimizer;
pub mod precision;
pub mod schedule;
pub mod split;
pub mod trainee;
pub mod validation;

mod run;

pub use run::train;

use crate::device::DeviceChoice;
use crate::events::EpochMetrics;
use easel_dataset::{ImageSource, Manifest};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicBool;

pub struct TrainJob<'a> {
    pub spec: &'a easel_spec::ExperimentSpec,
    pub manifest: &'a Manifest,
    pub source: &'a dyn ImageSource,
    pub device: DeviceChoice,
    /// Artifacts are written here (see the run directory layout in `artifacts`).
    pub run_dir: &'a Path,
    /// Decoded-dataset cache (u8, keyed by manifest digest + size); `None` decodes every run.
    pub cache_dir: Option<&'a Path>,
    /// Checked every step; the run stops at the next step and keeps its last checkpoint.
    pub cancel: &'a AtomicBool,
}

// Returned once per run: the size difference costs nothing, and callers match on the report.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    Completed(RunReport),
    /// Stopped by the cancel flag; `completed_epochs` are saved in the checkpoint.
    Cancelled {
        completed_epochs: u32,
    },
}

/// `report.json`, written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub name: String,
    pub classes: Vec<String>,
    pub device: String,
    pub epochs_run: u32,
    pub best_epoch: u32,
    pub best_validation_accuracy: f64,
    pub final_metrics: EpochMetrics,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub stopped_early: bool,
    pub seconds: f64,
    pub dataset_digest: String,
}
