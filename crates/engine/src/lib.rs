//! Easel's training engine: the only crate that links libtorch. Plain blocking code; callers run
//! it on a dedicated thread and stop it through a cancel flag.

pub mod artifacts;
pub mod checkpoint;
mod device;
pub mod error;
pub mod estimate;
pub mod evaluate;
pub mod events;
pub mod models;
pub mod pipeline;
pub mod poc;
pub mod predict;
mod trained;
pub mod trainer;
mod weights;

pub use device::{DeviceChoice, RuntimeInfo, runtime_info};
pub use error::{Error, Result};
pub use estimate::{Estimate, estimate};
pub use evaluate::{Evaluation, evaluate};
pub use events::*;
pub use poc::{PocReport, proof_of_concept};
pub use predict::{Prediction, predict};
pub use trainer::{RunReport, TrainJob, TrainOutcome, train};
