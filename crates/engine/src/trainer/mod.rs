//! `train`: a whole run, from the manifest to `report.json`, resumable from its checkpoint.
//!
//! In parts a sweep can reuse: the run's [`data`] and its [`model_setup`]; the [`learner`], which
//! trains epochs; the [`checkpointer`], which reads and writes the checkpoint; the
//! [`checkpoint_policy`] and [`early_stopping`], which decide when to save and when to stop; and
//! the run's [`outputs`]. [`train`] puts them together in order.

pub mod checkpoint_policy;
pub mod checkpointer;
pub mod data;
pub mod early_stopping;
pub mod epoch;
pub mod feature_cache;
pub mod learner;
pub mod mistakes;
pub mod model_setup;
pub mod monitor;
pub mod optimizer;
pub mod outputs;
pub mod precision;
pub mod schedule;
pub mod settings;
pub mod shared_features;
pub mod split;
pub mod trainee;
pub mod validation;

mod run;

pub use run::train;

use crate::device::DeviceChoice;
use easel_dataset::{ImageSource, Manifest};
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
    /// Who the run is for (a worker's job: the token name that submitted it; empty on the
    /// laptop). Another owner's run reusing its cache files is told "another run", not its job.
    pub owner: &'a str,
    /// What the machine costs an hour (a worker's `price_per_hour`), for the report page's
    /// cost; `None` on the laptop or where no price is set.
    pub price_per_hour: Option<f64>,
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

/// `report.json`, written last (defined with the events, whose last one carries it).
pub use easel_events::RunReport;
