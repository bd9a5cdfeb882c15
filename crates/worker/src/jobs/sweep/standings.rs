//! A sweep's trials ranked by its metric: what `status SWEEP` shows and `fetch --best` takes.

use easel_spec::sweep::SweepMetric;

use super::record::{SweepRecord, TrialRecord};
use crate::jobs::record::{JobRecord, JobState};

/// One trial as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub trial: TrialRecord,
    pub job: JobRecord,
    /// The trial's value of the sweep's metric so far.
    pub metric: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Standings {
    /// Best first; trials without a value last, in trial order.
    pub rows: Vec<Standing>,
    /// The best trial's job: the first with a value that did not fail.
    pub best: Option<String>,
}

impl Standings {
    /// Ranks `sweep`'s trials; `job` gives a trial's current record (a trial removed on its own
    /// is left out).
    pub fn rank(sweep: &SweepRecord, job: impl Fn(&str) -> Option<JobRecord>) -> Standings {
        let mut rows: Vec<Standing> = sweep
            .trials
            .iter()
            .filter_map(|trial| {
                let job = job(&trial.job)?;
                Some(Standing {
                    metric: metric_of(sweep.metric, &job),
                    trial: trial.clone(),
                    job,
                })
            })
            .collect();
        rows.sort_by(|a, b| order(sweep.metric, a, b));
        let best = rows
            .iter()
            .find(|row| row.metric.is_some() && row.job.state != JobState::Failed)
            .map(|row| row.job.id.clone());
        Standings { rows, best }
    }
}

/// The value of `metric` a job has reached: its best validation accuracy or loss, or its test
/// accuracy (known once it succeeded).
pub fn metric_of(metric: SweepMetric, job: &JobRecord) -> Option<f64> {
    let value = match metric {
        SweepMetric::ValAccuracy => job.best_validation_accuracy,
        SweepMetric::ValLoss => job.best_validation_loss,
        SweepMetric::TestAccuracy => job.test_accuracy,
    };
    value.filter(|value| value.is_finite())
}

fn order(metric: SweepMetric, a: &Standing, b: &Standing) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let by_number = a.trial.number.cmp(&b.trial.number);
    match (a.metric, b.metric) {
        (Some(x), Some(y)) if metric.better(x, y) => Ordering::Less,
        (Some(x), Some(y)) if metric.better(y, x) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        _ => by_number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: JobState, accuracy: Option<f64>, loss: Option<f64>) -> JobRecord {
        let mut record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "state": "queued", "created_at": "2026-12-06T00:00:00Z",
            "epochs_total": 3, "dataset_images": 1, "dataset_bytes": 1, "store_url": "memory://",
        }))
        .unwrap();
        record.state = state;
        record.best_validation_accuracy = accuracy;
        record.best_validation_loss = loss;
        record
    }

    fn sweep(metric: SweepMetric, jobs: &[&str]) -> SweepRecord {
        SweepRecord::for_tests(metric, jobs)
    }

    #[test]
    fn trials_rank_by_the_metric_in_its_direction_and_a_failed_trial_is_never_best() {
        let jobs = [
            job("a", JobState::Succeeded, Some(0.7), Some(0.9)),
            job("b", JobState::Failed, Some(0.9), Some(0.2)),
            job("c", JobState::Queued, None, None),
            job("d", JobState::Running, Some(0.8), Some(0.5)),
        ];
        let find = |id: &str| jobs.iter().find(|j| j.id == id).cloned();
        let ids = |standings: &Standings| -> Vec<String> {
            standings.rows.iter().map(|r| r.job.id.clone()).collect()
        };

        let accuracy = Standings::rank(
            &sweep(SweepMetric::ValAccuracy, &["a", "b", "c", "d"]),
            find,
        );
        assert_eq!(ids(&accuracy), ["b", "d", "a", "c"]);
        assert_eq!(accuracy.best.as_deref(), Some("d"));

        let loss = Standings::rank(&sweep(SweepMetric::ValLoss, &["a", "b", "c", "d"]), find);
        assert_eq!(ids(&loss), ["b", "d", "a", "c"]);
        assert_eq!(loss.best.as_deref(), Some("d"));

        let removed = Standings::rank(&sweep(SweepMetric::ValLoss, &["a", "gone"]), find);
        assert_eq!(ids(&removed), ["a"]);
    }
}
