//! Easel's training engine: the only crate that links libtorch. Plain blocking code; callers run
//! it on a dedicated thread and stop it through a cancel flag.
//!
//! - [`train`]: a whole run into a run directory (see [`artifacts`] for the layout), resumable
//!   from its checkpoint; events through a callback.
//! - [`proof_of_concept`], [`estimate()`]: what `client validate` runs on the laptop.
//! - [`evaluate()`], [`predict()`]: a finished run's best weights on other images;
//!   [`export_onnx`]: the same weights as an ONNX model.
//! - [`pipeline`]: decode + resize in parallel, the decoded u8 cache, batches on the device.
//! - [`models`]: the architectures, torchvision-named.
//! - [`weights`]: pretrained backbones read from safetensors and PyTorch's formats, and saved.

pub mod artifacts;
pub mod checkpoint;
pub mod compute_precision;
mod device;
pub mod error;
pub mod estimate;
pub mod evaluate;
pub mod events;
pub mod export;
pub mod fits;
pub mod models;
pub mod pipeline;
pub mod poc;
pub mod predict;
mod trained;
pub mod trainer;
pub mod weights;

pub use device::{DeviceChoice, RuntimeInfo, runtime_info, smi_device_id};
pub use error::{Error, Result};
pub use estimate::{Estimate, estimate};
pub use evaluate::{Evaluation, evaluate};
pub use events::*;
pub use export::export_onnx;
pub use poc::{PocReport, proof_of_concept};
pub use predict::{Prediction, predict};
pub use trainer::{RunReport, TrainJob, TrainOutcome, train};
