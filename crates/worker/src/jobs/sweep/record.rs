//! `<data>/sweeps/<id>.json`: one sweep's persisted record. Written once, when the sweep is
//! queued (its trials' jobs keep their own state), so a restart finds the sweep and its trials.

use std::path::{Path, PathBuf};

use easel_spec::sweep::{EarlyStopRule, SweepMethod, SweepMetric};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The worker's folder of sweep records.
pub const SWEEPS_DIR: &str = "sweeps";

pub use easel_spec::sweep::SWEEP_ID_PREFIX;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub id: String,
    /// The base spec's `name`.
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub idempotency_key: String,
    pub created_at: String,
    pub metric: SweepMetric,
    pub method: SweepMethod,
    #[serde(default)]
    pub early_stop: Option<EarlyStopRule>,
    /// Epochs a trial trains before the early-stop rule may judge it.
    #[serde(default)]
    pub grace_epochs: u32,
    /// Trials training at once; 0: no limit but the worker's slots.
    #[serde(default)]
    pub max_concurrent: u32,
    pub trials: Vec<TrialRecord>,
}

/// One trial: its number, its job, and the values it sets (TOML text, as the user wrote them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub number: usize,
    pub job: String,
    pub params: Vec<(String, String)>,
}

impl SweepRecord {
    fn path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.json"))
    }

    /// Writes the record atomically (flushed, then renamed into place).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = SweepRecord::path(dir, &self.id);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        easel_store::private_file::write_replacing(&path, &json).map_err(|e| Error::io(&path, e))
    }

    /// Removes the record; one already gone is no error.
    pub fn delete(dir: &Path, id: &str) -> Result<()> {
        let path = SweepRecord::path(dir, id);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(&path, error))
            }
            _ => Ok(()),
        }
    }

    /// Every record in `dir`. An empty one is an id claimed by a submit the worker stopped in
    /// the middle of, and is removed; one that cannot be read is logged and skipped (its queued
    /// trials then fail at start, as an unfinished submit's do; finished ones stay as jobs).
    pub fn load_all(dir: &Path) -> Result<Vec<SweepRecord>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io(dir, error)),
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            if std::fs::metadata(&path).is_ok_and(|meta| meta.len() == 0) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
            match read {
                Ok(record) => records.push(record),
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "sweep record not read")
                }
            }
        }
        records.sort_by(|a: &SweepRecord, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// The trials' job ids, in trial order.
    pub fn job_ids(&self) -> impl Iterator<Item = &str> {
        self.trials.iter().map(|trial| trial.job.as_str())
    }
}

#[cfg(test)]
impl SweepRecord {
    /// A grid sweep `sweep-x` by `metric` over `jobs` (trials 1, 2, … in that order), without
    /// early stopping, for tests.
    pub(crate) fn for_tests(metric: SweepMetric, jobs: &[&str]) -> SweepRecord {
        SweepRecord {
            id: "sweep-x".into(),
            name: "x".into(),
            owner: "admin".into(),
            idempotency_key: String::new(),
            created_at: "2026-12-06T00:00:00Z".into(),
            metric,
            method: SweepMethod::Grid,
            early_stop: None,
            grace_epochs: 0,
            max_concurrent: 0,
            trials: jobs
                .iter()
                .enumerate()
                .map(|(index, job)| TrialRecord {
                    number: index + 1,
                    job: (*job).to_owned(),
                    params: Vec::new(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SweepRecord {
        let mut record = SweepRecord::for_tests(SweepMetric::ValLoss, &["20261206-000000-0001"]);
        record.id = id.to_owned();
        record.early_stop = Some(EarlyStopRule::Median);
        record.grace_epochs = 2;
        record.trials[0].params = vec![("train.batch_size".into(), "16".into())];
        record
    }

    #[test]
    fn a_saved_record_loads_as_it_was_and_a_damaged_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let saved = record("sweep-a");
        saved.save(dir.path()).unwrap();
        std::fs::write(dir.path().join("sweep-b.json"), b"{\"id\": ").unwrap();
        assert_eq!(SweepRecord::load_all(dir.path()).unwrap(), vec![saved]);
        SweepRecord::delete(dir.path(), "sweep-a").unwrap();
        SweepRecord::delete(dir.path(), "sweep-a").unwrap();
        assert!(!dir.path().join("sweep-a.json").exists());
    }
}
