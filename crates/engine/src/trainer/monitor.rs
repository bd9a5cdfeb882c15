//! Tracks the monitored validation metric: which epoch is best (for the best weights) and, with
//! the early-stopping policy, when to stop.

use super::early_stopping::{EarlyStopping, Patience, improves};
use easel_spec::{EarlyStoppingSpec, Monitor};
use serde::{Deserialize, Serialize};

/// The monitored metric's record over a run, saved in the checkpoint (flat, as one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricMonitor {
    pub monitor: Monitor,
    pub best_epoch: u32,
    pub best_value: Option<f64>,
    #[serde(flatten)]
    pub patience: Patience,
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
            patience: Patience::default(),
        }
    }

    pub fn observe(
        &mut self,
        epoch: u32,
        validation_loss: f64,
        validation_accuracy: f64,
        early_stopping: Option<&EarlyStopping>,
    ) -> Verdict {
        let value = match self.monitor {
            Monitor::ValLoss => validation_loss,
            Monitor::ValAccuracy => validation_accuracy,
        };
        let new_best = improves(self.monitor, value, self.best_value, 0.0);
        if new_best {
            self.best_value = Some(value);
            self.best_epoch = epoch;
        }
        let stop =
            early_stopping.is_some_and(|policy| policy.should_stop(&mut self.patience, value));
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
        let policy = EarlyStopping::new(&spec);
        assert_eq!(
            monitor.observe(1, 1.0, 0.5, Some(&policy)),
            Verdict {
                new_best: true,
                stop: false
            }
        );
        // Better, but by less than min_delta: best weights move, patience runs.
        assert_eq!(
            monitor.observe(2, 0.98, 0.5, Some(&policy)),
            Verdict {
                new_best: true,
                stop: false
            }
        );
        assert_eq!(
            monitor.observe(3, 0.99, 0.5, Some(&policy)),
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

    #[test]
    fn the_checkpoint_keeps_the_monitor_as_one_flat_object() {
        let mut monitor = MetricMonitor::new(None);
        monitor.observe(1, 1.0, 0.5, None);
        monitor.patience.epochs_without_improvement = 2;
        let json = serde_json::to_string(&monitor).unwrap();
        assert_eq!(
            json,
            r#"{"monitor":"val_accuracy","best_epoch":1,"best_value":0.5,"epochs_without_improvement":2,"reference_value":null}"#
        );
        assert_eq!(
            serde_json::from_str::<MetricMonitor>(&json).unwrap(),
            monitor
        );
    }
}
