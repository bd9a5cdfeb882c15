//! `client evaluate DIR data/`: a trained run's best weights on another labelled dataset.

use crate::device::DeviceChoice;
use crate::pipeline::{BatchSource, DecodeTarget, channels_last_on, decode_dataset};
use crate::trained::TrainedModel;
use crate::trainer::validation::evaluate_indices;
use crate::{Error, Result};
use easel_dataset::{ImageSource, Manifest, ManifestEntry};
use std::path::Path;

pub use crate::trainer::validation::Evaluation;

const EVALUATION_BATCH: usize = 64;

/// Classes are matched by name; data holding a class the run never saw is an error (its images
/// could only be wrong). The run's classes missing from the data are fine.
pub fn evaluate(
    run_dir: &Path,
    manifest: &Manifest,
    source: &dyn ImageSource,
    device: DeviceChoice,
) -> Result<Evaluation> {
    let device = device.resolve()?;
    let model = TrainedModel::open(run_dir, device)?;
    let mapping: Vec<Option<usize>> = manifest
        .classes
        .iter()
        .map(|name| model.classes.iter().position(|known| known == name))
        .collect();
    let unknown: Vec<&str> = manifest
        .classes
        .iter()
        .zip(&mapping)
        .filter(|(_, m)| m.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Invalid(format!(
            "the data has classes the model was not trained on: {} (model classes: {})",
            unknown.join(", "),
            model.classes.join(", ")
        )));
    }
    if manifest.entries.is_empty() {
        return Err(Error::Invalid("the data has no images".into()));
    }
    let entries: Vec<&ManifestEntry> = manifest.entries.iter().collect();
    let (height, width) = model.image_size();
    let mut data = decode_dataset(
        &entries,
        source,
        DecodeTarget {
            height,
            width,
            max_pixels: model.spec.data.max_image_pixels,
        },
    )?;
    let labels: Vec<i64> = entries
        .iter()
        .map(|e| mapping[e.class as usize].unwrap_or_default() as i64)
        .collect();
    data.labels = tch::Tensor::from_slice(&labels);
    let source = BatchSource::new(&data, device, channels_last_on(device))?;
    let indices: Vec<i64> = (0..entries.len() as i64).collect();
    Ok(evaluate_indices(
        &model.net,
        &source,
        &indices,
        EVALUATION_BATCH,
        model.classes.len(),
    ))
}
