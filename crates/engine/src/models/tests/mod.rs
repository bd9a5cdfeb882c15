//! CPU tests of the models and of pretrained loading; tiny images keep them fast.

mod architectures;
mod legacy;
mod names;
mod pretrained;

use easel_spec::{Architecture, ModelSpec, Pooling};

pub(super) const ALL_ARCHITECTURES: [Architecture; 10] = [
    Architecture::SmallCnn,
    Architecture::DeepCnn,
    Architecture::Vgg11,
    Architecture::Vgg11Bn,
    Architecture::Vgg13,
    Architecture::Vgg13Bn,
    Architecture::Vgg16,
    Architecture::Vgg16Bn,
    Architecture::Vgg19,
    Architecture::Vgg19Bn,
];

pub(super) fn spec(
    architecture: Architecture,
    head: &[u32],
    pooling: Pooling,
    dropout: f64,
) -> ModelSpec {
    ModelSpec {
        architecture,
        head: head.to_vec(),
        pooling,
        dropout,
        ..ModelSpec::default()
    }
}
