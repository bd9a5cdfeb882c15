//! `client predict DIR image...`: class probabilities for image files.

use crate::device::DeviceChoice;
use crate::pipeline::{channels_last, decode_rgb_chw, normalise};
use crate::trained::TrainedModel;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const PREDICTION_BATCH: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub class: String,
    pub probability: f64,
    /// Every class with its probability, most likely first (callers keep as many as they show).
    pub top: Vec<(String, f64)>,
}

pub fn predict(
    run_dir: &Path,
    images: &[PathBuf],
    device: DeviceChoice,
) -> Result<Vec<Prediction>> {
    let device = device.resolve()?;
    let model = TrainedModel::open(run_dir, device)?;
    let (height, width) = model.image_size();
    let max_pixels = model.spec.data.max_image_pixels;
    let _no_grad = tch::no_grad_guard();
    let mut predictions = Vec::with_capacity(images.len());
    for chunk in images.chunks(PREDICTION_BATCH) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * height as usize * width as usize);
        for path in chunk {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            pixels.extend(decode_rgb_chw(
                &bytes,
                &path.display().to_string(),
                max_pixels,
                height,
                width,
            )?);
        }
        let batch = Tensor::from_data_size(
            &pixels,
            &[chunk.len() as i64, 3, i64::from(height), i64::from(width)],
            Kind::Uint8,
        )
        .to_device(device);
        let x = normalise(&(batch.to_kind(Kind::Float) / 255.0));
        let x = if device.is_cuda() {
            channels_last(&x)
        } else {
            x
        };
        let probabilities = model
            .net
            .forward_t(&x, false)
            .to_kind(Kind::Float)
            .softmax(-1, Kind::Float);
        let probabilities: Vec<Vec<f64>> = Vec::try_from(
            probabilities
                .to_kind(Kind::Double)
                .to_device(tch::Device::Cpu),
        )?;
        for (path, row) in chunk.iter().zip(probabilities) {
            predictions.push(prediction_for(path, &row, &model.classes));
        }
    }
    Ok(predictions)
}

fn prediction_for(path: &Path, probabilities: &[f64], classes: &[String]) -> Prediction {
    let mut ranked: Vec<(usize, f64)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<(String, f64)> = ranked
        .iter()
        .map(|&(i, p)| (classes[i].clone(), p))
        .collect();
    let (class, probability) = top.first().cloned().unwrap_or_default();
    Prediction {
        path: path.to_path_buf(),
        class,
        probability,
        top,
    }
}
