//! Semantic checks of an experiment spec: everything serde's types cannot say. Pure: no file
//! system access here (see `resolve.rs` for the dataset and weights paths).

use crate::error::Problem;
use crate::experiment::*;
use crate::load::Validate;

/// Smallest image side any model accepts; below this even the small CNN pools to nothing.
pub const MIN_IMAGE_SIDE: u32 = 8;
/// Largest image side accepted; far beyond what the models are meant for.
pub const MAX_IMAGE_SIDE: u32 = 4096;

impl Validate for ExperimentSpec {
    fn validate(&self) -> Vec<Problem> {
        let mut checks = Checks::default();
        if self.name.trim().is_empty() {
            checks.fail("name", "must not be empty");
        }
        check_data(&self.data, &mut checks);
        check_model(&self.model, self.train.epochs, &mut checks);
        check_train(&self.train, &mut checks);
        check_augment(&self.augment, &mut checks);
        check_local(&self.local, &mut checks);
        checks.problems
    }
}

impl ExperimentSpec {
    /// Every semantic problem (see [`Validate`]); empty when the spec is usable.
    pub fn validate(&self) -> Vec<Problem> {
        Validate::validate(self)
    }
}

fn check_data(data: &DataSpec, checks: &mut Checks) {
    let split_roots = data.path.is_some() || !data.paths.is_empty();
    let explicit_roots = data.train.is_some() || data.validation.is_some() || data.test.is_some();
    if !split_roots && !explicit_roots {
        checks.fail(
            "data",
            "no dataset given: set `path` to a folder with one sub-folder per class (or a .zip), \
             or `train` and `validation` folders",
        );
    }
    if data.path.is_some() && !data.paths.is_empty() {
        checks.fail("data.paths", "give either `path` or `paths`, not both");
    }
    if split_roots && explicit_roots {
        let key = if data.train.is_some() {
            "data.train"
        } else if data.validation.is_some() {
            "data.validation"
        } else {
            "data.test"
        };
        checks.fail(
            key,
            "give either `path`/`paths` (split by validation_split) or explicit `train`/`validation`/`test` folders, not both",
        );
    }
    check_object_store_roots(data, checks);
    if explicit_roots && data.train.is_none() {
        checks.fail(
            "data.train",
            "`validation`/`test` folders need a `train` folder too",
        );
    }
    checks.fraction("data.validation_split", data.validation_split);
    checks.fraction("data.test_split", data.test_split);
    if data.validation_split + data.test_split >= 1.0 {
        checks.fail(
            "data.test_split",
            format!(
                "validation_split + test_split must be below 1 (some images must be left to train on), got {}",
                data.validation_split + data.test_split
            ),
        );
    }
    if split_roots && !explicit_roots && data.validation_split == 0.0 {
        checks.fail(
            "data.validation_split",
            "must be above 0: the validation images choose the best weights and drive early stopping (e.g. 0.2)",
        );
    }
    if explicit_roots
        && data.train.is_some()
        && data.validation.is_none()
        && data.validation_split == 0.0
    {
        checks.fail(
            "data.validation",
            "no validation images: add a `validation` folder or set validation_split (drawn from `train`)",
        );
    }
    for (axis, side) in [
        ("height", data.image_size.height()),
        ("width", data.image_size.width()),
    ] {
        let key = match data.image_size {
            ImageSize::Square(_) => "data.image_size".to_string(),
            ImageSize::HeightWidth(_) => {
                format!("data.image_size[{}]", usize::from(axis == "width"))
            }
        };
        if side < MIN_IMAGE_SIDE {
            checks.fail(
                key,
                format!("image {axis} must be at least {MIN_IMAGE_SIDE} pixels, got {side}"),
            );
        } else if side > MAX_IMAGE_SIDE {
            checks.fail(
                key,
                format!("image {axis} must be at most {MAX_IMAGE_SIDE} pixels, got {side}"),
            );
        }
    }
    let pixels = u64::from(data.image_size.height()) * u64::from(data.image_size.width());
    if data.max_image_pixels < pixels {
        checks.fail(
            "data.max_image_pixels",
            format!(
                "must be at least the training image size ({pixels} pixels), got {}",
                data.max_image_pixels
            ),
        );
    }
}

/// An object-store dataset is one URL holding the whole dataset (a folder per class below it):
/// the worker copies it, so it cannot be merged with folders that only exist on this machine.
fn check_object_store_roots(data: &DataSpec, checks: &mut Checks) {
    let keyed = data.keyed_paths();
    let urls: Vec<&(String, &std::path::PathBuf)> = keyed
        .iter()
        .filter(|(_, path)| crate::resolve::object_store_url(path).is_some())
        .collect();
    for (key, path) in &urls {
        let url = path.display();
        if !(key == "data.path" || key.starts_with("data.paths[")) {
            checks.fail(
                key.as_str(),
                format!(
                    "an object-store URL ({url}) can only be given as `data.path`; \
                     `train`/`validation`/`test` must be local folders"
                ),
            );
        } else if keyed.len() > 1 {
            checks.fail(
                key.as_str(),
                format!(
                    "an object-store dataset ({url}) must be the only dataset root: \
                     it cannot be mixed with other roots"
                ),
            );
        } else if !has_bucket(&url.to_string()) {
            checks.fail(
                key.as_str(),
                format!(
                    "object-store URL needs a bucket: e.g. s3://bucket/datasets/pets, got {url}"
                ),
            );
        }
    }
}

/// `scheme://bucket/...` names a bucket (`file:///dir` names a folder instead).
fn has_bucket(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, rest)| {
        if scheme.eq_ignore_ascii_case("file") {
            rest.starts_with('/') && rest.len() > 1
        } else {
            rest.split('/')
                .next()
                .is_some_and(|bucket| !bucket.is_empty())
        }
    })
}

fn check_model(model: &ModelSpec, epochs: i64, checks: &mut Checks) {
    if model.head.is_empty() {
        checks.fail(
            "model.head",
            "must list at least one dense layer width, e.g. [64, 128]",
        );
    }
    for (index, width) in model.head.iter().enumerate() {
        if *width == 0 {
            checks.fail(
                format!("model.head[{index}]"),
                "layer widths must be at least 1, got 0",
            );
        }
    }
    checks.fraction("model.dropout", model.dropout);
    if model.freeze_backbone && model.pretrained.is_none() {
        checks.fail(
            "model.freeze_backbone",
            "needs `pretrained` weights: a frozen random backbone learns nothing",
        );
    }
    if let Some(after) = model.unfreeze_after_epochs {
        if model.pretrained.is_none() {
            checks.fail(
                "model.unfreeze_after_epochs",
                "needs `pretrained` weights to fine-tune",
            );
        } else if !model.freeze_backbone {
            checks.fail(
                "model.unfreeze_after_epochs",
                "has no effect unless freeze_backbone = true",
            );
        }
        if epochs >= 1 && i64::from(after) >= epochs {
            checks.fail(
                "model.unfreeze_after_epochs",
                format!("must be below train.epochs ({epochs}) or the backbone never unfreezes, got {after}"),
            );
        }
    }
    checks.positive("model.backbone_lr_scale", model.backbone_lr_scale);
}

fn check_train(train: &TrainSpec, checks: &mut Checks) {
    checks.int_range("train.epochs", train.epochs, 1, 100_000);
    checks.int_range("train.batch_size", train.batch_size, 1, 65_536);
    checks.positive("train.learning_rate", train.learning_rate);
    checks.fraction("train.momentum", train.momentum);
    checks.non_negative("train.weight_decay", train.weight_decay);
    checks.fraction("train.label_smoothing", train.label_smoothing);
    checks.int_range(
        "train.checkpoint_every_epochs",
        train.checkpoint_every_epochs,
        1,
        100_000,
    );

    let schedule = &train.schedule;
    checks.non_negative("train.schedule.warmup_epochs", schedule.warmup_epochs);
    if train.epochs >= 1 && schedule.warmup_epochs >= train.epochs as f64 {
        checks.fail(
            "train.schedule.warmup_epochs",
            format!(
                "must be below train.epochs ({}), got {}",
                train.epochs, schedule.warmup_epochs
            ),
        );
    }
    checks.int_range(
        "train.schedule.step_epochs",
        schedule.step_epochs,
        1,
        100_000,
    );
    if !(schedule.gamma > 0.0 && schedule.gamma <= 1.0) {
        checks.fail(
            "train.schedule.gamma",
            format!("must be above 0 and at most 1, got {}", schedule.gamma),
        );
    }
    if !(0.0..=1.0).contains(&schedule.min_lr_scale) {
        checks.fail(
            "train.schedule.min_lr_scale",
            format!("must be from 0 to 1, got {}", schedule.min_lr_scale),
        );
    }

    if let Some(early) = &train.early_stopping {
        checks.int_range("train.early_stopping.patience", early.patience, 1, 100_000);
        checks.non_negative("train.early_stopping.min_delta", early.min_delta);
    }
}

fn check_augment(augment: &AugmentSpec, checks: &mut Checks) {
    if !(0.0..0.5).contains(&augment.random_crop) {
        checks.fail(
            "augment.random_crop",
            format!(
                "must be at least 0 and below 0.5 (padding as a fraction of the side), got {}",
                augment.random_crop
            ),
        );
    }
    if !(0.0..=1.0).contains(&augment.color_jitter) {
        checks.fail(
            "augment.color_jitter",
            format!("must be from 0 to 1, got {}", augment.color_jitter),
        );
    }
}

fn check_local(local: &LocalSpec, checks: &mut Checks) {
    checks.int_range("local.steps", local.steps, 1, 10_000);
    checks.int_range(
        "local.image_size",
        local.image_size,
        i64::from(MIN_IMAGE_SIDE),
        i64::from(MAX_IMAGE_SIDE),
    );
    checks.int_range("local.max_images", local.max_images, 1, 1_000_000);
    checks.int_range("local.batch_size", local.batch_size, 1, 65_536);
}

#[derive(Default)]
struct Checks {
    problems: Vec<Problem>,
}

impl Checks {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn int_range(&mut self, path: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.fail(path, format!("must be at least {min}, got {value}"));
        } else if value > max {
            self.fail(path, format!("must be at most {max}, got {value}"));
        }
    }

    /// In [0, 1): splits, dropout, momentum, label smoothing.
    fn fraction(&mut self, path: &str, value: f64) {
        if !(0.0..1.0).contains(&value) {
            self.fail(path, format!("must be at least 0 and below 1, got {value}"));
        }
    }

    fn positive(&mut self, path: &str, value: f64) {
        // Written so NaN fails too.
        if !(value > 0.0 && value.is_finite()) {
            self.fail(path, format!("must be above 0, got {value}"));
        }
    }

    fn non_negative(&mut self, path: &str, value: f64) {
        if !(value >= 0.0 && value.is_finite()) {
            self.fail(path, format!("must be 0 or more, got {value}"));
        }
    }
}
