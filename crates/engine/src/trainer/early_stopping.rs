//! Early stopping: a run ends once its monitored validation metric has gone `patience` epochs
//! without improving by more than `min_delta`.

use easel_spec::{EarlyStoppingSpec, Monitor};
use serde::{Deserialize, Serialize};

/// Whether `candidate` beats `than` by more than `margin` in the direction `monitor` improves
/// (lower loss, higher accuracy). Any finite value beats no value at all.
pub fn improves(monitor: Monitor, candidate: f64, than: Option<f64>, margin: f64) -> bool {
    match (than, monitor) {
        (None, _) => candidate.is_finite(),
        (Some(than), Monitor::ValLoss) => candidate < than - margin,
        (Some(than), Monitor::ValAccuracy) => candidate > than + margin,
    }
}

/// What early stopping carries from one epoch to the next; saved in the checkpoint, so a resumed
/// run keeps counting where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patience {
    /// Epochs since the last improvement larger than `min_delta`.
    pub epochs_without_improvement: u32,
    /// Value that the next epoch must beat by `min_delta` to count as an improvement.
    pub reference_value: Option<f64>,
}

/// The policy of a spec's `[train.early_stopping]` table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    monitor: Monitor,
    patience: i64,
    min_delta: f64,
}

impl EarlyStopping {
    pub fn new(spec: &EarlyStoppingSpec) -> Self {
        EarlyStopping {
            monitor: spec.monitor,
            patience: spec.patience.max(1),
            min_delta: spec.min_delta.max(0.0),
        }
    }

    /// Records an epoch's monitored `value` in `patience`; true once patience has run out.
    pub fn should_stop(&self, patience: &mut Patience, value: f64) -> bool {
        if improves(
            self.monitor,
            value,
            patience.reference_value,
            self.min_delta,
        ) {
            patience.reference_value = Some(value);
            patience.epochs_without_improvement = 0;
        } else {
            patience.epochs_without_improvement += 1;
        }
        i64::from(patience.epochs_without_improvement) >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_improvements_beyond_min_delta_reset_the_count() {
        let policy = EarlyStopping::new(&EarlyStoppingSpec {
            patience: 3,
            min_delta: 0.1,
            monitor: Monitor::ValAccuracy,
        });
        let mut patience = Patience::default();
        assert!(!policy.should_stop(&mut patience, 0.5));
        assert!(!policy.should_stop(&mut patience, 0.55));
        assert!(!policy.should_stop(&mut patience, 0.59));
        assert_eq!(patience.epochs_without_improvement, 2);
        assert!(!policy.should_stop(&mut patience, 0.7));
        assert_eq!(patience.reference_value, Some(0.7));
        assert!(!policy.should_stop(&mut patience, 0.7));
        assert!(!policy.should_stop(&mut patience, 0.7));
        assert!(policy.should_stop(&mut patience, 0.7));
    }

    #[test]
    fn a_loss_improves_downwards_and_a_nan_never_improves() {
        assert!(improves(Monitor::ValLoss, 0.5, Some(1.0), 0.1));
        assert!(!improves(Monitor::ValLoss, 0.95, Some(1.0), 0.1));
        assert!(improves(Monitor::ValAccuracy, 0.9, Some(0.5), 0.1));
        assert!(!improves(Monitor::ValAccuracy, f64::NAN, None, 0.0));
        assert!(!improves(Monitor::ValLoss, f64::NAN, Some(1.0), 0.0));
    }
}
