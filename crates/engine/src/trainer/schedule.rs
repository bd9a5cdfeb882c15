//! Learning rate per optimizer step: linear warm-up, then constant, step decay or cosine.

use easel_spec::{ScheduleKind, TrainSpec};

/// Learning rate for the 0-based global `step` of a run of `total_steps`.
pub fn learning_rate(train: &TrainSpec, step: u64, steps_per_epoch: u64, total_steps: u64) -> f64 {
    let base = train.learning_rate;
    let schedule = &train.schedule;
    let warmup_steps = (schedule.warmup_epochs.max(0.0) * steps_per_epoch as f64).round() as u64;
    if step < warmup_steps {
        return base * (step + 1) as f64 / warmup_steps as f64;
    }
    match schedule.kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Step => {
            let epoch = step / steps_per_epoch.max(1);
            let decays = epoch / schedule.step_epochs.max(1) as u64;
            base * schedule.gamma.powi(decays as i32)
        }
        ScheduleKind::Cosine => {
            let span = total_steps.saturating_sub(warmup_steps).max(1);
            let progress = ((step - warmup_steps) as f64 / span as f64).min(1.0);
            let floor = base * schedule.min_lr_scale;
            floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_spec::ScheduleSpec;

    fn spec(kind: ScheduleKind, warmup_epochs: f64) -> TrainSpec {
        TrainSpec {
            learning_rate: 0.1,
            schedule: ScheduleSpec {
                kind,
                warmup_epochs,
                step_epochs: 2,
                gamma: 0.5,
                min_lr_scale: 0.1,
            },
            ..TrainSpec::default()
        }
    }

    #[test]
    fn warmup_rises_linearly_then_holds() {
        let train = spec(ScheduleKind::Constant, 1.0);
        assert!((learning_rate(&train, 0, 10, 100) - 0.01).abs() < 1e-12);
        assert!((learning_rate(&train, 9, 10, 100) - 0.1).abs() < 1e-12);
        assert_eq!(learning_rate(&train, 50, 10, 100), 0.1);
    }

    #[test]
    fn step_decay_every_step_epochs() {
        let train = spec(ScheduleKind::Step, 0.0);
        assert_eq!(learning_rate(&train, 19, 10, 100), 0.1);
        assert_eq!(learning_rate(&train, 20, 10, 100), 0.05);
        assert_eq!(learning_rate(&train, 45, 10, 100), 0.025);
    }

    #[test]
    fn cosine_ends_at_the_floor() {
        let train = spec(ScheduleKind::Cosine, 0.0);
        assert!((learning_rate(&train, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&train, 50, 10, 100) - 0.055).abs() < 1e-12);
        assert!((learning_rate(&train, 100, 10, 100) - 0.01).abs() < 1e-12);
    }
}
