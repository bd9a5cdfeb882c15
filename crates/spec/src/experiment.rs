//! The `experiment.toml` schema. Every table denies unknown keys; every field has a default
//! except what only the user can know (the data location).
//!
//! Parsing lives in `load.rs` (any TOML type) and `resolve.rs` (experiment files and their
//! paths), semantic checks in `validate.rs`; this file is only the shape.
//! `configs/experiment-reference.toml` writes every key out with its default (a test keeps the
//! two in step).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Human name of the experiment; used in job listings and artifact reports.
    #[serde(default = "defaults::name")]
    pub name: String,
    /// Required in practice; defaulted here so a missing `[data]` is reported by `validate()`
    /// together with every other problem instead of stopping the parse.
    #[serde(default)]
    pub data: DataSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainSpec,
    #[serde(default)]
    pub augment: AugmentSpec,
    /// The laptop proof of concept run by `client validate`.
    #[serde(default)]
    pub local: LocalSpec,
}

/// Where the images are. Either `path`/`paths` (folder per class, or zip archives; several roots
/// are merged by class name) split by `validation_split`/`test_split`, or explicit
/// `train`/`validation`/`test` roots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    #[serde(default = "defaults::validation_split")]
    pub validation_split: f64,
    #[serde(default)]
    pub test_split: f64,
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Square side in pixels, or `[height, width]`.
    #[serde(default = "defaults::image_size")]
    pub image_size: ImageSize,
    /// Images with more pixels than this are refused (decompression bombs).
    #[serde(default = "defaults::max_image_pixels")]
    pub max_image_pixels: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ImageSize {
    Square(u32),
    HeightWidth([u32; 2]),
}

// Written by hand because serde's untagged enums can only say "data did not match any variant".
impl<'de> Deserialize<'de> for ImageSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl<'de> serde::de::Visitor<'de> for SizeVisitor {
            type Value = ImageSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a side in pixels (150) or [height, width]")
            }
            fn visit_i64<E: serde::de::Error>(self, side: i64) -> Result<ImageSize, E> {
                u32::try_from(side)
                    .map(ImageSize::Square)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(side), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, side: u64) -> Result<ImageSize, E> {
                u32::try_from(side)
                    .map(ImageSize::Square)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(side), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ImageSize, A::Error> {
                let height: u32 = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let width: u32 = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(1, &self))?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(3, &self));
                }
                Ok(ImageSize::HeightWidth([height, width]))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl ImageSize {
    pub fn height(&self) -> u32 {
        match self {
            ImageSize::Square(side) => *side,
            ImageSize::HeightWidth([h, _]) => *h,
        }
    }
    pub fn width(&self) -> u32 {
        match self {
            ImageSize::Square(side) => *side,
            ImageSize::HeightWidth([_, w]) => *w,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// conv32-pool-conv64-pool-dense64-dense128-out (the laptop-sized model).
    SmallCnn,
    /// Three conv blocks with dropout, dense 128/64 with dropout.
    DeepCnn,
    Vgg11,
    Vgg11Bn,
    Vgg13,
    Vgg13Bn,
    Vgg16,
    Vgg16Bn,
    Vgg19,
    Vgg19Bn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Flatten the backbone's feature map (the head of `configs/vgg16-art.toml`).
    Flatten,
    /// Global average pool, then the head (small, size-independent).
    Avg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default = "defaults::architecture")]
    pub architecture: Architecture,
    /// Widths of the dense layers between the backbone and the output layer.
    #[serde(default = "defaults::head")]
    pub head: Vec<u32>,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "defaults::pooling")]
    pub pooling: Pooling,
    /// Backbone weights (safetensors or a PyTorch state_dict), torchvision parameter names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PretrainedWeights>,
    #[serde(default)]
    pub freeze_backbone: bool,
    /// Unfreeze the backbone after this many epochs (fine-tuning), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfreeze_after_epochs: Option<u32>,
    /// Backbone learning rate = this factor x train.learning_rate once unfrozen.
    #[serde(default = "defaults::backbone_lr_scale")]
    pub backbone_lr_scale: f64,
}

/// Where a run's pretrained backbone comes from: a weights file, or, in a spec that `client
/// submit` sent, the blob it uploaded the file as (`"blob:<digest>"` in the TOML), which the
/// worker points at the file in its blob store before the run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum PretrainedWeights {
    File(PathBuf),
    Blob(String),
}

impl PretrainedWeights {
    /// How a spec names an uploaded blob.
    pub const BLOB_PREFIX: &str = "blob:";

    /// The weights file, when the spec names one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PretrainedWeights::File(path) => Some(path),
            PretrainedWeights::Blob(_) => None,
        }
    }

    /// The digest of the uploaded blob, when the spec names one.
    pub fn blob(&self) -> Option<&str> {
        match self {
            PretrainedWeights::Blob(digest) => Some(digest),
            PretrainedWeights::File(_) => None,
        }
    }
}

impl From<String> for PretrainedWeights {
    fn from(text: String) -> PretrainedWeights {
        match text.strip_prefix(PretrainedWeights::BLOB_PREFIX) {
            Some(digest) => PretrainedWeights::Blob(digest.to_owned()),
            None => PretrainedWeights::File(PathBuf::from(text)),
        }
    }
}

impl From<PretrainedWeights> for String {
    fn from(weights: PretrainedWeights) -> String {
        weights.to_string()
    }
}

impl fmt::Display for PretrainedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PretrainedWeights::File(path) => write!(f, "{}", path.display()),
            PretrainedWeights::Blob(digest) => {
                write!(f, "{}{digest}", PretrainedWeights::BLOB_PREFIX)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// fp32 everywhere.
    Fp32,
    /// bf16 compute (fp32 master weights and batch-norm statistics) on every device, the CPU
    /// included: fast where the CPU computes bf16 natively, slow (but the same code) elsewhere.
    Bf16,
    /// bf16 where it is fast (CUDA; CPUs with native bf16: AMX or AVX512-BF16), fp32
    /// elsewhere. The run says which it chose.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    #[serde(default = "defaults::epochs")]
    pub epochs: i64,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: i64,
    #[serde(default = "defaults::optimizer")]
    pub optimizer: Optimizer,
    #[serde(default = "defaults::learning_rate")]
    pub learning_rate: f64,
    /// SGD momentum (ignored by Adam/AdamW).
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub label_smoothing: f64,
    #[serde(default = "defaults::precision")]
    pub precision: Precision,
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingSpec>,
    /// Write a resumable checkpoint every N epochs (the last epoch always gets one).
    #[serde(default = "defaults::checkpoint_every_epochs")]
    pub checkpoint_every_epochs: i64,
    /// While the backbone is frozen and its output depends on the image alone (no batch norm,
    /// no dropout, at most flips as augmentation), compute its features once per image and
    /// train the head on them. Speed only: results match an uncached run.
    /// Written out only when off, so specs and run identities from before the switch existed
    /// stay byte for byte what they were.
    #[serde(
        default = "defaults::cache_frozen_features",
        skip_serializing_if = "defaults::is_true"
    )]
    pub cache_frozen_features: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Constant,
    /// Multiply by `gamma` every `step_epochs`.
    Step,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default = "defaults::schedule_kind")]
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 over this many epochs (fractions allowed), before the schedule.
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default = "defaults::step_epochs")]
    pub step_epochs: i64,
    #[serde(default = "defaults::gamma")]
    pub gamma: f64,
    /// Cosine ends at learning_rate x this.
    #[serde(default)]
    pub min_lr_scale: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAccuracy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    #[serde(default = "defaults::patience")]
    pub patience: i64,
    #[serde(default)]
    pub min_delta: f64,
    #[serde(default = "defaults::monitor")]
    pub monitor: Monitor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    #[serde(default = "defaults::yes")]
    pub flip: bool,
    /// Random crop after padding by this fraction of the side (0 = off).
    #[serde(default)]
    pub random_crop: f64,
    /// Brightness/contrast/saturation jitter strength (0 = off).
    #[serde(default)]
    pub color_jitter: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSpec {
    /// Training steps of the proof of concept.
    #[serde(default = "defaults::poc_steps")]
    pub steps: i64,
    /// Reduced square image side for the proof of concept.
    #[serde(default = "defaults::poc_image_size")]
    pub image_size: i64,
    /// Stratified subset size for the proof of concept.
    #[serde(default = "defaults::poc_max_images")]
    pub max_images: i64,
    #[serde(default = "defaults::poc_batch_size")]
    pub batch_size: i64,
}

pub(crate) mod defaults {
    use super::*;
    pub fn name() -> String {
        "experiment".into()
    }
    pub fn validation_split() -> f64 {
        0.2
    }
    pub fn seed() -> u64 {
        42
    }
    pub fn image_size() -> ImageSize {
        ImageSize::Square(150)
    }
    pub fn max_image_pixels() -> u64 {
        40_000_000
    }
    pub fn architecture() -> Architecture {
        Architecture::SmallCnn
    }
    pub fn head() -> Vec<u32> {
        vec![64, 128]
    }
    pub fn pooling() -> Pooling {
        Pooling::Flatten
    }
    pub fn backbone_lr_scale() -> f64 {
        0.1
    }
    pub fn epochs() -> i64 {
        10
    }
    pub fn batch_size() -> i64 {
        32
    }
    pub fn optimizer() -> Optimizer {
        Optimizer::Adam
    }
    pub fn learning_rate() -> f64 {
        1e-3
    }
    pub fn momentum() -> f64 {
        0.9
    }
    pub fn precision() -> Precision {
        Precision::Auto
    }
    pub fn checkpoint_every_epochs() -> i64 {
        1
    }
    pub fn cache_frozen_features() -> bool {
        true
    }
    pub fn is_true(value: &bool) -> bool {
        *value
    }
    pub fn schedule_kind() -> ScheduleKind {
        ScheduleKind::Constant
    }
    pub fn step_epochs() -> i64 {
        10
    }
    pub fn gamma() -> f64 {
        0.1
    }
    pub fn patience() -> i64 {
        3
    }
    pub fn monitor() -> Monitor {
        Monitor::ValLoss
    }
    pub fn yes() -> bool {
        true
    }
    pub fn poc_steps() -> i64 {
        20
    }
    pub fn poc_image_size() -> i64 {
        64
    }
    pub fn poc_max_images() -> i64 {
        200
    }
    pub fn poc_batch_size() -> i64 {
        8
    }
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            path: None,
            paths: Vec::new(),
            train: None,
            validation: None,
            test: None,
            validation_split: defaults::validation_split(),
            test_split: 0.0,
            seed: defaults::seed(),
            image_size: defaults::image_size(),
            max_image_pixels: defaults::max_image_pixels(),
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            architecture: defaults::architecture(),
            head: defaults::head(),
            dropout: 0.0,
            pooling: defaults::pooling(),
            pretrained: None,
            freeze_backbone: false,
            unfreeze_after_epochs: None,
            backbone_lr_scale: defaults::backbone_lr_scale(),
        }
    }
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            epochs: defaults::epochs(),
            batch_size: defaults::batch_size(),
            optimizer: defaults::optimizer(),
            learning_rate: defaults::learning_rate(),
            momentum: defaults::momentum(),
            weight_decay: 0.0,
            label_smoothing: 0.0,
            precision: defaults::precision(),
            seed: defaults::seed(),
            schedule: ScheduleSpec::default(),
            early_stopping: None,
            checkpoint_every_epochs: defaults::checkpoint_every_epochs(),
            cache_frozen_features: defaults::cache_frozen_features(),
        }
    }
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec {
            kind: defaults::schedule_kind(),
            warmup_epochs: 0.0,
            step_epochs: defaults::step_epochs(),
            gamma: defaults::gamma(),
            min_lr_scale: 0.0,
        }
    }
}

impl Default for AugmentSpec {
    fn default() -> Self {
        AugmentSpec {
            flip: true,
            random_crop: 0.0,
            color_jitter: 0.0,
        }
    }
}

impl Default for LocalSpec {
    fn default() -> Self {
        LocalSpec {
            steps: defaults::poc_steps(),
            image_size: defaults::poc_image_size(),
            max_images: defaults::poc_max_images(),
            batch_size: defaults::poc_batch_size(),
        }
    }
}
