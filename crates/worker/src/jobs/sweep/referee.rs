//! The median early-stop rule: after its grace epochs, a trial whose best value so far is worse
//! than the median of the other trials' best values at the same epoch is stopped. It judges
//! against trials that reached that epoch (earlier trials' whole curves count), and only when at
//! least two others did: against one other trial a median says little.
//!
//! The curves live in memory; a restart reads them again from the trials' event logs.

use std::collections::HashMap;
use std::sync::Mutex;

use easel_events::EpochMetrics;
use easel_spec::sweep::{EarlyStopRule, SweepMetric};

use super::record::SweepRecord;

/// Other trials a verdict needs at the epoch judged.
const MIN_OTHERS: usize = 2;

#[derive(Default)]
pub struct Referee {
    contests: Mutex<HashMap<String, Contest>>,
}

/// One sweep under the rule: each trial's value at each epoch.
struct Contest {
    metric: SweepMetric,
    grace_epochs: u32,
    curves: HashMap<String, Vec<f64>>,
}

impl Referee {
    fn contests(&self) -> std::sync::MutexGuard<'_, HashMap<String, Contest>> {
        self.contests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `sweep` under its rule, if it has one.
    pub fn enter(&self, sweep: &SweepRecord) {
        if sweep.early_stop != Some(EarlyStopRule::Median) {
            return;
        }
        self.contests().insert(
            sweep.id.clone(),
            Contest {
                metric: sweep.metric,
                grace_epochs: sweep.grace_epochs.max(1),
                curves: HashMap::new(),
            },
        );
    }

    pub fn forget(&self, sweep_id: &str) {
        self.contests().remove(sweep_id);
    }

    /// Records an epoch a trial trained before (a restart reads them from its log), unjudged.
    pub fn recall(&self, sweep_id: &str, job_id: &str, metrics: &EpochMetrics) {
        if let Some(contest) = self.contests().get_mut(sweep_id) {
            contest.record(job_id, metrics);
        }
    }

    /// Records a trial's epoch and judges it: why it stops, when the rule says it should.
    pub fn judge(&self, sweep_id: &str, job_id: &str, metrics: &EpochMetrics) -> Option<String> {
        let mut contests = self.contests();
        let contest = contests.get_mut(sweep_id)?;
        contest.record(job_id, metrics);
        contest.verdict(job_id, metrics.epoch)
    }
}

impl Contest {
    fn value(&self, metrics: &EpochMetrics) -> f64 {
        match self.metric {
            SweepMetric::ValLoss => metrics.validation_loss,
            // Test accuracy is known only at the end: validation accuracy stands in for it.
            SweepMetric::ValAccuracy | SweepMetric::TestAccuracy => metrics.validation_accuracy,
        }
    }

    fn record(&mut self, job_id: &str, metrics: &EpochMetrics) {
        let value = self.value(metrics);
        let curve = self.curves.entry(job_id.to_owned()).or_default();
        let at = metrics.epoch.max(1) as usize - 1;
        if curve.len() <= at {
            curve.resize(at + 1, f64::NAN);
        }
        curve[at] = value;
        // A resumed trial trains its epochs after the checkpoint again: what came after is gone.
        curve.truncate(at + 1);
    }

    /// The best value of `curve` over its first `epochs` epochs.
    fn best_by(&self, curve: &[f64], epochs: usize) -> Option<f64> {
        curve
            .get(..epochs)?
            .iter()
            .copied()
            .filter(|value| value.is_finite())
            .reduce(|best, value| {
                if self.metric.better(value, best) {
                    value
                } else {
                    best
                }
            })
    }

    fn verdict(&self, job_id: &str, epoch: u32) -> Option<String> {
        if epoch < self.grace_epochs {
            return None;
        }
        let epochs = epoch as usize;
        let own = self.best_by(self.curves.get(job_id)?, epochs);
        let mut others: Vec<f64> = self
            .curves
            .iter()
            .filter(|(other, _)| other.as_str() != job_id)
            .filter_map(|(_, curve)| self.best_by(curve, epochs))
            .collect();
        if others.len() < MIN_OTHERS {
            return None;
        }
        others.sort_by(f64::total_cmp);
        let middle = others.len() / 2;
        let median = if others.len().is_multiple_of(2) {
            (others[middle - 1] + others[middle]) / 2.0
        } else {
            others[middle]
        };
        let name = self.metric.name();
        let behind = match own {
            Some(own) => self.metric.better(median, own).then(|| format!("{own:.4}")),
            None => Some("no finite value".to_owned()),
        }?;
        Some(format!(
            "stopped early by the sweep's median rule: best {name} {behind} by epoch {epoch}, \
             behind the median {median:.4} of {} other trials there",
            others.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(grace_epochs: u32) -> SweepRecord {
        let mut sweep = SweepRecord::for_tests(SweepMetric::ValAccuracy, &[]);
        sweep.early_stop = Some(EarlyStopRule::Median);
        sweep.grace_epochs = grace_epochs;
        sweep
    }

    fn epoch(epoch: u32, accuracy: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0,
            train_accuracy: accuracy,
            validation_loss: 1.0,
            validation_accuracy: accuracy,
            per_class_accuracy: Vec::new(),
            confusion: Vec::new(),
            images_per_second: 1.0,
            learning_rate: 0.01,
            seconds: 1.0,
        }
    }

    #[test]
    fn a_trial_behind_the_median_is_stopped_only_after_its_grace_and_with_two_others_to_judge_by() {
        let referee = Referee::default();
        referee.enter(&sweep(2));
        for (job, accuracy) in [("a", 0.8), ("b", 0.6)] {
            assert_eq!(referee.judge("sweep-x", job, &epoch(1, accuracy)), None);
            assert_eq!(referee.judge("sweep-x", job, &epoch(2, accuracy)), None);
        }
        // Within its grace: not judged, however far behind.
        assert_eq!(referee.judge("sweep-x", "c", &epoch(1, 0.1)), None);
        let verdict = referee.judge("sweep-x", "c", &epoch(2, 0.2)).unwrap();
        assert!(
            verdict.contains("median 0.7000 of 2 other trials"),
            "{verdict}"
        );
        // Ahead of the median: trains on.
        assert_eq!(referee.judge("sweep-x", "d", &epoch(1, 0.9)), None);
        assert_eq!(referee.judge("sweep-x", "d", &epoch(2, 0.9)), None);
    }

    #[test]
    fn a_sweep_without_the_rule_and_a_trial_with_one_other_are_never_stopped() {
        let referee = Referee::default();
        let mut plain = sweep(1);
        plain.early_stop = None;
        referee.enter(&plain);
        assert_eq!(referee.judge("sweep-x", "a", &epoch(3, 0.9)), None);
        assert_eq!(referee.judge("sweep-x", "b", &epoch(3, 0.1)), None);

        let referee = Referee::default();
        referee.enter(&sweep(1));
        referee.recall("sweep-x", "a", &epoch(1, 0.9));
        assert_eq!(referee.judge("sweep-x", "b", &epoch(1, 0.1)), None);
    }
}
