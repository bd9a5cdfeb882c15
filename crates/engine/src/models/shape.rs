//! Shapes, parameter counts and activation memory, computed from the layer plans alone: nothing is
//! allocated, so `client validate` can size a VGG16 run in microseconds.

use super::plan::{
    BackboneLayer, HeadLayer, INPUT_CHANNELS, architecture_name, backbone_layers, head_layers,
};
use crate::{Error, Result};
use easel_spec::{Architecture, ModelSpec, Pooling};

/// The backbone's output `[channels, height, width]` for `image_hw` inputs, or
/// `Error::ImageTooSmall` when a pooling stage would shrink a side to zero.
pub fn feature_map_shape(arch: Architecture, image_hw: (i64, i64)) -> Result<[i64; 3]> {
    let (height, width) = image_hw;
    let layers = backbone_layers(arch);
    let shape = backbone_output(&layers, image_hw);
    if height <= 0 || width <= 0 || shape[1] == 0 || shape[2] == 0 {
        let stages = pooling_stages(&layers);
        return Err(Error::ImageTooSmall {
            model: architecture_name(arch).to_string(),
            height,
            width,
            minimum: 1_i64 << stages,
            detail: format!("its {stages} pooling stages halve each side {stages} times"),
        });
    }
    Ok(shape)
}

/// Width of the vector the head receives: the flattened feature map, or its channels after global
/// average pooling.
pub fn head_input_features(feature_map: [i64; 3], pooling: Pooling) -> i64 {
    let [channels, height, width] = feature_map;
    match pooling {
        Pooling::Flatten => channels * height * width,
        Pooling::Avg => channels,
    }
}

/// Learnable parameters of the backbone (`features.*`) and of the head (`classifier.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterCounts {
    pub backbone: u64,
    pub head: u64,
}

impl ParameterCounts {
    pub fn total(&self) -> u64 {
        self.backbone.saturating_add(self.head)
    }

    /// What the optimizer updates while the backbone is frozen or not.
    pub fn trainable(&self, backbone_frozen: bool) -> u64 {
        if backbone_frozen {
            self.head
        } else {
            self.total()
        }
    }
}

/// Parameter counts of the classifier `build_classifier` would build, without building it.
pub fn parameter_counts(
    model: &ModelSpec,
    num_classes: i64,
    image_hw: (i64, i64),
) -> Result<ParameterCounts> {
    let feature_map = feature_map_shape(model.architecture, image_hw)?;
    let head_in = head_input_features(feature_map, model.pooling);
    Ok(ParameterCounts {
        backbone: backbone_layers(model.architecture)
            .iter()
            .map(BackboneLayer::parameters)
            .sum(),
        head: head_layers(model, head_in, num_classes)
            .iter()
            .map(HeadLayer::parameters)
            .fold(0, u64::saturating_add),
    })
}

/// Estimated activation memory, in bytes, of one training step on a batch of `batch` images.
///
/// The approximation: the forward pass keeps the input and the output of every layer (conv,
/// batch norm, ReLU, pool, dropout, the pooled/flattened vector, each dense layer) for the
/// backward pass, and the backward pass holds gradients of about the same total size at its
/// peak, hence x2. It ignores cuDNN workspaces, dropout masks, the allocator's rounding and
/// fused/in-place savings, so read it as "the right order of magnitude", not a guarantee.
/// A collapsed feature map (image too small) counts as zero-sized layers; `feature_map_shape`
/// is the place that reports that error.
pub fn activation_bytes(
    model: &ModelSpec,
    num_classes: i64,
    image_hw: (i64, i64),
    batch: i64,
    bytes_per_element: u64,
) -> u64 {
    let (height, width) = image_hw;
    let mut shape = [INPUT_CHANNELS, height.max(0), width.max(0)];
    let mut elements_per_image = volume(shape);
    for layer in backbone_layers(model.architecture) {
        shape = layer.output_shape(shape);
        elements_per_image += volume(shape);
    }
    let mut features = head_input_features(shape, model.pooling);
    elements_per_image += features.max(0) as u64;
    for layer in head_layers(model, features, num_classes) {
        features = layer.output_features(features);
        elements_per_image += features.max(0) as u64;
    }
    elements_per_image
        .saturating_mul(batch.max(0) as u64)
        .saturating_mul(bytes_per_element)
        .saturating_mul(2)
}

fn volume(shape: [i64; 3]) -> u64 {
    shape.iter().map(|&d| d.max(0) as u64).product()
}

fn backbone_output(layers: &[BackboneLayer], image_hw: (i64, i64)) -> [i64; 3] {
    let (height, width) = image_hw;
    layers
        .iter()
        .fold([INPUT_CHANNELS, height, width], |shape, layer| {
            layer.output_shape(shape)
        })
}

fn pooling_stages(layers: &[BackboneLayer]) -> u32 {
    layers
        .iter()
        .filter(|layer| matches!(layer, BackboneLayer::MaxPool2x2))
        .count() as u32
}
