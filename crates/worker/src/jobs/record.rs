//! `state.json`: one job's persisted state.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};

/// The record's file in the job's folder.
pub const STATE_FILE: &str = "state.json";

/// A job's state: the protocol's enum, with its one table of names (`state.json` holds the
/// names).
pub use easel_proto::v1::JobState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    #[serde(with = "easel_proto::job_state::as_name")]
    pub state: JobState,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub idempotency_key: String,
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub device: String,
    pub epochs_total: u32,
    #[serde(default)]
    pub epochs_done: u32,
    #[serde(default)]
    pub best_validation_accuracy: Option<f64>,
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    #[serde(default)]
    pub last_sequence: u64,
    pub dataset_images: u64,
    pub dataset_bytes: u64,
    pub store_url: String,
    /// The digest of the blob the manifest came in (gzipped, so not the digest of
    /// `manifest.json`); empty in records of earlier workers, whose blob was the JSON itself.
    #[serde(default)]
    pub manifest_blob: String,
    /// Times the worker died while this job ran and a start resumed it.
    #[serde(default)]
    pub crash_restarts: u32,
    /// The name of the token that submitted it (`tokens.rs`); jobs of workers from before named
    /// tokens were all submitted with the worker's own.
    #[serde(default = "admin_owner")]
    pub owner: String,
    /// The sweep this job is a trial of (`jobs/sweep`); empty for a job submitted alone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sweep_id: String,
    #[serde(default)]
    pub best_validation_loss: Option<f64>,
    /// The Slurm job it last ran as (Slurm executor only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slurm_job_id: String,
}

fn admin_owner() -> String {
    crate::access::named_tokens::ADMIN_NAME.to_owned()
}

/// An idempotency key as the worker indexes it: two owners' equal keys name two jobs.
pub fn owned_key(owner: &str, key: &str) -> String {
    // Token names hold no newline.
    format!("{owner}\n{key}")
}

/// Who submits a job (the token's name) and the idempotency key they gave it (empty: none),
/// so a retried submit finds the job its first try made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    pub owner: String,
    pub idempotency_key: String,
}

impl Submitter {
    /// The key as the worker indexes it, when one was given.
    pub fn owned_key(&self) -> Option<String> {
        (!self.idempotency_key.is_empty()).then(|| owned_key(&self.owner, &self.idempotency_key))
    }
}

impl JobRecord {
    /// Writes `state.json` atomically (staging file + rename), so a crash leaves the old or the new.
    pub fn save(&self, job_dir: &Path) -> Result<()> {
        let path = job_dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        // Flushed before it replaces the old one: after a power loss a job is in the state it
        // last reported, never in none.
        easel_store::private_file::write_replacing(&path, &json).map_err(|e| Error::io(&path, e))
    }

    pub fn load(job_dir: &Path) -> Result<JobRecord> {
        let path = job_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
    }
}
