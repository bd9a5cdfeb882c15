//! A finished (or fetched) run directory opened for inference: its resolved spec, class names and
//! best weights in a fresh model.

use crate::artifacts;
use crate::models::{Classifier, build_classifier};
use crate::{Error, Result};
use easel_spec::ExperimentSpec;
use std::path::Path;
use tch::nn::VarStore;

pub struct TrainedModel {
    pub spec: ExperimentSpec,
    pub classes: Vec<String>,
    pub net: Classifier,
}

/// A run directory's resolved spec and class names (`spec.toml`, `classes.json`).
pub(crate) fn spec_and_classes(run_dir: &Path) -> Result<(ExperimentSpec, Vec<String>)> {
    let read = |name: &str| {
        let path = run_dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| Error::io(path, e))
    };
    let spec: ExperimentSpec = toml::from_str(&read(artifacts::SPEC)?)
        .map_err(|e| Error::artifact(run_dir.join(artifacts::SPEC), e.to_string()))?;
    let classes: Vec<String> = serde_json::from_str(&read(artifacts::CLASSES)?)
        .map_err(|e| Error::artifact(run_dir.join(artifacts::CLASSES), e.to_string()))?;
    Ok((spec, classes))
}

impl TrainedModel {
    pub fn open(run_dir: &Path, device: tch::Device) -> Result<Self> {
        let (spec, classes) = spec_and_classes(run_dir)?;
        let mut vs = VarStore::new(device);
        let image_hw = (
            i64::from(spec.data.image_size.height()),
            i64::from(spec.data.image_size.width()),
        );
        let net = build_classifier(&vs.root(), &spec.model, classes.len() as i64, image_hw)?;
        let weights = run_dir.join(artifacts::BEST_WEIGHTS);
        vs.load(&weights)
            .map_err(|e| Error::artifact(&weights, e.to_string()))?;
        Ok(TrainedModel { spec, classes, net })
    }

    pub fn image_size(&self) -> (u32, u32) {
        (
            self.spec.data.image_size.height(),
            self.spec.data.image_size.width(),
        )
    }
}
