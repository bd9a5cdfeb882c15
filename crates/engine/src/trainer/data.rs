//! The run's images: split into training, validation and test before anything is decoded, then
//! decoded (through the decoded cache) onto the training device.

use super::feature_cache::FeatureCache;
use super::shared_features::SharedCacheDir;
use super::split::{SplitIndices, split_manifest};
use super::trainee::Trainee;
use super::validation::{Scored, evaluate_trainee};
use crate::events::TrainEvent;
use crate::pipeline::{self, BatchSource, CacheStatus, DecodeTarget, channels_last_on};
use crate::{Error, Result};
use easel_dataset::{ImageSource, Manifest};
use easel_spec::DataSpec;
use std::path::Path;

/// Where a run's images come from.
#[derive(Clone, Copy)]
pub struct DataSource<'a> {
    pub manifest: &'a Manifest,
    pub images: &'a dyn ImageSource,
    /// Decoded-dataset cache (u8, keyed by manifest digest + size); `None` decodes every run.
    pub cache_dir: Option<&'a Path>,
    /// Who this run is (`job <id>`), recorded beside a cache it decodes so a run that reuses
    /// it can say whose work it reads.
    pub run_label: &'a str,
    /// Whose run this is (see `TrainJob::owner`).
    pub owner: &'a str,
}

/// The split of a dataset whose images are not decoded yet.
pub struct SplitData<'a> {
    source: DataSource<'a>,
    split: SplitIndices,
    pub num_classes: usize,
}

/// A run's images on the training device, by split.
pub struct RunData {
    pub source: BatchSource,
    /// Dataset indices of the images of each split.
    pub train: Vec<i64>,
    pub validation: Vec<i64>,
    pub test: Vec<i64>,
    pub num_classes: usize,
    /// Images per batch, in training and in evaluation.
    pub batch_size: usize,
    /// Where a frozen backbone's features are shared with other runs on these images (none
    /// without a decoded cache).
    pub shared: Option<SharedCacheDir>,
}

impl<'a> DataSource<'a> {
    /// Splits the manifest as `data` says; refused when a classifier could not be trained on it.
    pub fn split(self, data: &DataSpec) -> Result<SplitData<'a>> {
        let num_classes = self.manifest.classes.len();
        if num_classes < 2 {
            return Err(Error::Invalid(format!(
                "the dataset has {num_classes} class(es): a classifier needs at least 2"
            )));
        }
        let split = split_manifest(
            self.manifest,
            data.validation_split,
            data.test_split,
            data.seed,
        )?;
        if split.train.is_empty() {
            return Err(Error::Invalid("no training images after the split".into()));
        }
        if split.validation.is_empty() {
            return Err(Error::Invalid(
                "no validation images: set data.validation_split > 0 or give a validation root"
                    .into(),
            ));
        }
        Ok(SplitData {
            source: self,
            split,
            num_classes,
        })
    }
}

impl SplitData<'_> {
    /// Decodes every image to `target` (or reads the decoded cache) onto `device`, saying how.
    pub fn load(
        self,
        target: DecodeTarget,
        batch_size: usize,
        device: tch::Device,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<RunData> {
        let loaded = pipeline::load_manifest_reporting(
            self.source.manifest,
            self.source.images,
            target,
            self.source.cache_dir,
            pipeline::cache::Author {
                owner: self.source.owner,
                label: self.source.run_label,
            },
            &mut |decoded, total| {
                on_event(TrainEvent::Note {
                    message: format!("decoding the dataset: {decoded} of {total} images"),
                });
            },
        )?;
        let writer = loaded.decoded_by.clone();
        let how = match (loaded.cache, writer) {
            (CacheStatus::Hit, Some(writer)) => {
                format!("reused from the decoded cache ({writer} decoded them)")
            }
            (CacheStatus::Hit, None) => "read from the decoded cache".to_owned(),
            (CacheStatus::Written, _) => "decoded and cached".to_owned(),
            (CacheStatus::Disabled, _) => "decoded".to_owned(),
        };
        on_event(TrainEvent::Note {
            message: format!(
                "{} images {how} at {}x{} in {:.1} s",
                loaded.data.len(),
                target.height,
                target.width,
                loaded.seconds
            ),
        });
        let indices = |split: &[usize]| -> Vec<i64> { split.iter().map(|&i| i as i64).collect() };
        Ok(RunData {
            source: BatchSource::new(&loaded.data, device, channels_last_on(device))?,
            train: indices(&self.split.train),
            validation: indices(&self.split.validation),
            test: indices(&self.split.test),
            num_classes: self.num_classes,
            batch_size,
            shared: shared_cache_dir(loaded.cache_file.as_deref(), &self.source),
        })
    }
}

/// Shared features sit beside the decoded cache they come from, keyed by it.
fn shared_cache_dir(cache_file: Option<&Path>, run: &DataSource) -> Option<SharedCacheDir> {
    let file = cache_file?;
    Some(SharedCacheDir {
        dir: file.parent()?.to_path_buf(),
        images_key: file.file_name()?.to_str()?.to_owned(),
        run_label: run.run_label.to_owned(),
        owner: run.owner.to_owned(),
    })
}

impl RunData {
    /// The trainee on the images at `indices`, from the frozen backbone's cached features when
    /// there are some (on a bf16 run, the copy must hold the current weights).
    pub fn evaluate(
        &self,
        trainee: &Trainee,
        features: Option<&FeatureCache>,
        indices: &[i64],
    ) -> Scored {
        evaluate_trainee(
            trainee,
            &self.source,
            features,
            indices,
            self.batch_size,
            self.num_classes,
        )
    }
}
