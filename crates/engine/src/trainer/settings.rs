//! The numbers of a spec a run needs, checked once before anything is read or written.

use crate::{Error, Result};
use easel_spec::ExperimentSpec;

/// Checked here as well as by the spec crate's `validate` (which reports them to the user
/// first), for callers that skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub epochs: u32,
    pub batch_size: usize,
    pub checkpoint_every: u32,
    pub height: u32,
    pub width: u32,
}

impl Settings {
    pub fn check(spec: &ExperimentSpec) -> Result<Self> {
        let positive = |key: &str, value: i64| {
            if value > 0 {
                Ok(value)
            } else {
                Err(Error::Invalid(format!("{key} is {value}: it must be > 0")))
            }
        };
        let settings = Settings {
            epochs: positive("train.epochs", spec.train.epochs)? as u32,
            batch_size: positive("train.batch_size", spec.train.batch_size)? as usize,
            checkpoint_every: positive(
                "train.checkpoint_every_epochs",
                spec.train.checkpoint_every_epochs,
            )? as u32,
            height: positive("data.image_size", i64::from(spec.data.image_size.height()))? as u32,
            width: positive("data.image_size", i64::from(spec.data.image_size.width()))? as u32,
        };
        if spec.train.learning_rate.is_nan() || spec.train.learning_rate <= 0.0 {
            return Err(Error::Invalid(format!(
                "train.learning_rate is {}: it must be > 0",
                spec.train.learning_rate
            )));
        }
        Ok(settings)
    }

    /// The image size as the models take it.
    pub fn image_hw(&self) -> (i64, i64) {
        (i64::from(self.height), i64::from(self.width))
    }
}
