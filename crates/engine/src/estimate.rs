//! What a full run will cost, from the spec alone: parameters, steps, activation memory. Nothing
//! is allocated, so `client validate` answers at once even for VGG19.

use crate::compute_precision::ComputePrecision;
use crate::models::{activation_bytes, feature_map_shape, parameter_counts};
use crate::trainer::epoch::steps_per_epoch;
use crate::{Error, Result};
use easel_spec::ExperimentSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub parameters: u64,
    /// Trained in the first epoch (the head only while the backbone is frozen).
    pub trainable_parameters: u64,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub images_per_epoch: u64,
    /// Activations of one training step at the real batch size and image size (an estimate).
    pub activation_bytes_per_batch: u64,
    /// The backbone's output `[channels, height, width]`.
    pub feature_map: [i64; 3],
}

/// Fails with `Error::ImageTooSmall` (naming the model and the size) when the backbone would
/// shrink `data.image_size` to nothing.
pub fn estimate(spec: &ExperimentSpec, num_classes: usize, train_images: u64) -> Result<Estimate> {
    let image_hw = (
        i64::from(spec.data.image_size.height()),
        i64::from(spec.data.image_size.width()),
    );
    if spec.train.batch_size <= 0 {
        return Err(Error::Invalid(format!(
            "train.batch_size is {}: it must be > 0",
            spec.train.batch_size
        )));
    }
    if spec.train.epochs <= 0 {
        return Err(Error::Invalid(format!(
            "train.epochs is {}: it must be > 0",
            spec.train.epochs
        )));
    }
    let feature_map = feature_map_shape(spec.model.architecture, image_hw)?;
    let counts = parameter_counts(&spec.model, num_classes as i64, image_hw)?;
    let steps = steps_per_epoch(train_images as usize, spec.train.batch_size as usize);
    // bf16 runs keep activations in 2 bytes; fp32 in 4. The estimate is for the worker's GPU.
    let on_gpu = ComputePrecision::resolve_with(spec.train.precision, tch::Device::Cuda(0), None);
    let bytes_per_element = if on_gpu.bf16 { 2 } else { 4 };
    Ok(Estimate {
        parameters: counts.total(),
        trainable_parameters: counts.trainable(spec.model.freeze_backbone),
        steps_per_epoch: steps,
        total_steps: steps * spec.train.epochs as u64,
        images_per_epoch: train_images,
        activation_bytes_per_batch: activation_bytes(
            &spec.model,
            num_classes as i64,
            image_hw,
            spec.train.batch_size,
            bytes_per_element,
        ),
        feature_map,
    })
}
