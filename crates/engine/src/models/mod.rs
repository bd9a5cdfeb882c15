//! The models a spec can name: small CNN, deep CNN and VGG 11/13/16/19 (with and without batch norm),
//! each a convolutional backbone plus a configurable dense head.
//!
//! Variable names follow torchvision so weights move between Easel and PyTorch:
//! - backbone: `features.<i>.weight|bias` (+ `running_mean|running_var` for batch norm), where `i`
//!   is the layer's index in torchvision's `features` Sequential (ReLU, pool and dropout take an
//!   index too). VGG layers match torchvision's exactly (`features.28.weight` is VGG16's last conv).
//! - head: `classifier.<i>.weight|bias`; hidden layer `k` is at `3k` (Linear, ReLU, Dropout) and
//!   the output layer at `3 * head.len()`, as in torchvision's VGG classifier.

mod classifier;
mod plan;
mod shape;

pub use classifier::{Classifier, build_classifier};
pub use plan::{
    BackboneLayer, DEEP_CNN_BLOCK_DROPOUT, HeadLayer, architecture_name, backbone_layers,
    head_layers,
};
pub use shape::{
    ParameterCounts, activation_bytes, feature_map_shape, head_input_features, parameter_counts,
};

use tch::nn::VarStore;

/// Name prefix of every backbone variable (torchvision's `features`).
pub const BACKBONE_PREFIX: &str = "features";
/// Name prefix of every head variable (torchvision's `classifier`).
pub const HEAD_PREFIX: &str = "classifier";
/// Optimizer group of the backbone's variables.
pub const BACKBONE_GROUP: usize = 0;
/// Optimizer group of the head's variables.
pub const HEAD_GROUP: usize = 1;

/// Switches gradients of the backbone's learnable variables (those in `BACKBONE_GROUP`) on or off;
/// the head is untouched. Batch-norm running statistics are buffers and never take gradients.
/// Freezing stops weight updates only: batch-norm layers still update their running statistics
/// in training mode, as in PyTorch with `requires_grad_(False)`.
pub fn set_backbone_trainable(vs: &VarStore, trainable: bool) {
    let variables = vs
        .variables_
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for var in variables
        .trainable_variables
        .iter()
        .filter(|var| var.group == BACKBONE_GROUP)
    {
        let _ = var.tensor.set_requires_grad(trainable);
    }
}

/// Learnable parameters in `vs`: `(all, trainable now)`. Frozen variables count in `all` only;
/// batch-norm running statistics are buffers and count in neither (as in torchvision's counts).
pub fn count_parameters(vs: &VarStore) -> (u64, u64) {
    let variables = vs
        .variables_
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    variables
        .trainable_variables
        .iter()
        .fold((0, 0), |(all, trainable), var| {
            let elements = var.tensor.numel() as u64;
            let trainable_now = if var.tensor.requires_grad() {
                elements
            } else {
                0
            };
            (all + elements, trainable + trainable_now)
        })
}

#[cfg(test)]
mod tests;
