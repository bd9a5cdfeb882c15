//! Input pipeline: decode + resize in parallel, the decoded u8 cache, and batches on the training
//! device with augmentation and normalisation done there as tensor ops.

pub mod augment;
pub mod batches;
pub mod cache;
pub mod dataset;
pub mod decode;

pub use augment::Augment;
pub use batches::{BatchSource, Batches, Residency};
pub use dataset::{
    CacheStatus, DecodeTarget, DecodedDataset, LoadedDataset, decode_dataset, decoded_cache_file,
    load_manifest, load_manifest_reporting,
};
pub use decode::decode_rgb_chw;

use easel_dataset::Manifest;

/// ImageNet statistics: pretrained torchvision backbones expect them, and they do no harm to
/// models trained from scratch.
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The dataset's identity in reports and checkpoints (the manifest's own content digest).
pub fn dataset_digest(manifest: &Manifest) -> String {
    manifest.digest()
}

/// Like the manifest digest, but also fixed to the entries' order: the decoded cache stores
/// images in manifest order, so the same data listed in another order must not share a cache.
pub(crate) fn ordered_entries_digest(manifest: &Manifest) -> String {
    let mut hasher = blake3::Hasher::new();
    for class in &manifest.classes {
        hasher.update(class.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(b"--\n");
    for entry in &manifest.entries {
        let subset = entry.subset.map(|s| format!("{s:?}")).unwrap_or_default();
        hasher.update(
            format!(
                "{}\t{}\t{}\t{}\n",
                entry.path, entry.class, subset, entry.digest
            )
            .as_bytes(),
        );
    }
    hasher.finalize().to_hex().to_string()
}

/// ImageNet normalisation with its mean and std (`[1, 3, 1, 1]`) kept on one device: made once
/// per run, since a constant built on the host for every batch is a blocking copy to the GPU.
#[derive(Debug)]
pub struct Normalisation {
    mean: tch::Tensor,
    std: tch::Tensor,
}

impl Normalisation {
    pub fn on(device: tch::Device) -> Self {
        let constant = |values: [f64; 3]| {
            tch::Tensor::from_slice(&values)
                .to_kind(tch::Kind::Float)
                .view([1, 3, 1, 1])
                .to_device(device)
        };
        Normalisation {
            mean: constant(MEAN),
            std: constant(STD),
        }
    }

    /// Float pixels in [0, 1] -> the model's input.
    pub fn apply(&self, x01: &tch::Tensor) -> tch::Tensor {
        (x01 - &self.mean) / &self.std
    }
}

/// u8 pixels to the model's input: float in [0, 1] -> ImageNet normalisation (one-off callers;
/// batch sources keep a [`Normalisation`]).
pub fn normalise(x01: &tch::Tensor) -> tch::Tensor {
    Normalisation::on(x01.device()).apply(x01)
}

/// Whether batches on `device` are laid out channels-last: on CUDA (cuDNN's tensor cores want
/// NHWC) and on the CPU (oneDNN's convolutions run faster on NHWC than on NCHW).
pub fn channels_last_on(device: tch::Device) -> bool {
    device.is_cuda() || device == tch::Device::Cpu
}

/// NHWC memory layout with NCHW logical shape (what cuDNN is fastest with). tch has no
/// memory-format API, so it is done with permutes.
pub fn channels_last(x: &tch::Tensor) -> tch::Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
