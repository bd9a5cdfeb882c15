//! Tracks the monitored validation metric: which epoch is best (for best weights) and when to
//! stop early.

use easel_spec::{EarlyStoppingSpec, Monitor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricMonitor {
    pub monitor: Monitor,
    pub best_epoch: u32,
    pub best_value: Option<f64>,
    /// Epochs since the last improvement larger than `min_delta`.
    pub epochs_without_improvement: u32,
    /// Value that the next epoch must beat by `min_delta` to count as an improvement.
    pub reference_value: Option<f64>,
}

/// What one epoch's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Strictly better than every earlier epoch: save it as the best weights.
    pub new_best: bool,
    /// Early stopping's patience ran out.
    pub stop: bool,
}

impl MetricMonitor {
    /// Monitors `early_stopping.monitor`, or validation accuracy when early stopping is off.
    pub fn new(early_stopping: Option<&EarlyStoppingSpec>) -> Self {
        MetricMonitor {
            monitor: early_stopping
                .map(|e| e.monitor)
                .unwrap_or(Monitor::ValAccuracy),
            best_epoch: 0,
            best_value: None,
            epochs_without_improvement: 0,
            reference_value: None,
        }
    }

    pub fn observe(
        &mut self,
        epoch: u32,
        validation_loss: f64,
        validation_accuracy: f64,
        early_stopping: Option<&EarlyStoppingSpec>,
    ) -> Verdict {
        let value = match self.monitor {
            Monitor::ValLoss => validation_loss,
            Monitor::ValAccuracy => validation_accuracy,
        };
        let better = |candidate: f64, than: Option<f64>, margin: f64| match (than, self.monitor) {
            (None, _) => candidate.is_finite(),
            (Some(than), Monitor::ValLoss) => candidate < than - margin,
            (Some(than), Monitor::ValAccuracy) => candidate > than + margin,
        };
        let new_best = better(value, self.best_value, 0.0);
        if new_best {
            self.best_value = Some(value);
            self.best_epoch = epoch;
        }
        let Some(spec) = early_stopping else {
            return Verdict {
                new_best,
                stop: false,
            };
        };
        if better(value, self.reference_value, spec.min_delta.max(0.0)) {
            self.reference_value = Some(value);
            self.epochs_without_improvement = 0;
        } else {
            self.epochs_without_improvement += 1;
        }
        let stop = self.epochs_without_improvement as i64 >= spec.patience.max(1);
        Verdict { new_best, stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_without_real_improvement() {
        let spec = EarlyStoppingSpec {
            patience: 2,
            min_delta: 0.05,
            monitor: Monitor::ValLoss,
        };
        let mut monitor = MetricMonitor::new(Some(&spec));
        assert_eq!(
            monitor.observe(1, 1.0, 0.5, Some(&spec)),
            Verdict {
                new_best: true,
                stop: false
            }
        );
        // Better, but by less than min_delta: best weights move, patience runs.
        assert_eq!(
            monitor.observe(2, 0.98, 0.5, Some(&spec)),
            Verdict {
                new_best: true,
                stop: false
            }
        );
        assert_eq!(
            monitor.observe(3, 0.99, 0.5, Some(&spec)),
            Verdict {
                new_best: false,
                stop: true
            }
        );
        assert_eq!(monitor.best_epoch, 2);
    }

    #[test]
    fn accuracy_is_maximised_without_early_stopping() {
        let mut monitor = MetricMonitor::new(None);
        monitor.observe(1, 1.0, 0.5, None);
        monitor.observe(2, 0.5, 0.4, None);
        assert_eq!(monitor.best_epoch, 1);
        assert_eq!(monitor.best_value, Some(0.5));
    }
}
