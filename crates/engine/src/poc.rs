//! The laptop proof of concept behind `client validate`: a few fp32 training steps on the CPU at
//! a reduced image size. Decodes a small stratified subset (so unreadable images surface), then
//! trains repeatedly on one fixed batch from it: a model that is wired correctly overfits one
//! batch, so its loss must stay finite and fall. Adam at `POC_LEARNING_RATE`, no head dropout.

use crate::models::{build_classifier, set_backbone_trainable};
use crate::pipeline::{BatchSource, DecodeTarget, channels_last_on, decode_dataset};
use crate::trainer::optimizer::{GroupRates, Hyperparameters, Optimizer, parameters_of};
use crate::weights::load_pretrained_backbone;
use crate::{Error, Result};
use easel_dataset::{
    ImageSource, Manifest, ManifestEntry, stratified_subset, stratified_subset_of,
};
use easel_spec::{ExperimentSpec, ModelSpec, Optimizer as OptimizerKind};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Reduction, Tensor};

/// The proof of concept checks that the data and the model are wired so that learning happens,
/// not the run's hyper-parameters (a schedule or a plain SGD rate meant for thousands of steps can
/// barely move the loss in twenty): it always uses Adam at this rate, which overfits one batch
/// with every architecture, VGG without batch norm included.
pub const POC_LEARNING_RATE: f64 = 1e-4;
/// Adam whatever the spec names, for the reason above.
const POC_OPTIMIZER: Hyperparameters = Hyperparameters {
    kind: OptimizerKind::Adam,
    momentum: 0.0,
    weight_decay: 0.0,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PocReport {
    pub steps: u32,
    pub image_size: u32,
    pub images_used: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    pub losses: Vec<f64>,
    pub seconds: f64,
    pub loss_finite: bool,
    /// The mean loss of the last quarter of the steps is below the first step's loss.
    pub loss_fell: bool,
}

pub fn proof_of_concept(
    spec: &ExperimentSpec,
    manifest: &Manifest,
    source: &dyn ImageSource,
    on_step: &mut dyn FnMut(u32, f64),
) -> Result<PocReport> {
    let started = Instant::now();
    let local = &spec.local;
    for (key, value) in [
        ("local.steps", local.steps),
        ("local.image_size", local.image_size),
        ("local.max_images", local.max_images),
        ("local.batch_size", local.batch_size),
    ] {
        if value <= 0 {
            return Err(Error::Invalid(format!("{key} is {value}: it must be > 0")));
        }
    }
    let num_classes = manifest.classes.len();
    if num_classes < 2 || manifest.entries.is_empty() {
        return Err(Error::Invalid(format!(
            "the dataset has {num_classes} class(es) and {} image(s): a classifier needs at least 2 classes",
            manifest.entries.len()
        )));
    }
    let side = local.image_size as u32;
    let subset = stratified_subset(manifest, local.max_images as usize, spec.data.seed);
    let entries: Vec<&ManifestEntry> = subset.iter().map(|&i| &manifest.entries[i]).collect();
    let data = decode_dataset(
        &entries,
        source,
        DecodeTarget {
            height: side,
            width: side,
            max_pixels: spec.data.max_image_pixels,
        },
    )?;
    // The fixed batch: a stratified pick from the subset, as positions in `data`.
    let batch_entries =
        stratified_subset_of(manifest, &subset, local.batch_size as usize, spec.data.seed);
    let positions: Vec<i64> = batch_entries
        .iter()
        .filter_map(|i| subset.binary_search(i).ok())
        .map(|p| p as i64)
        .collect();

    let device = Device::Cpu;
    crate::fits::check_fits(
        &crate::fits::RunShape {
            model: &spec.model,
            optimizer: OptimizerKind::Adam,
            precision: spec.train.precision,
            num_classes,
            image_hw: (i64::from(side), i64::from(side)),
            batch_size: positions.len() as i64,
        },
        device,
    )?;
    tch::manual_seed(spec.train.seed as i64);
    let mut vs = VarStore::new(device);
    // No head dropout: with one fixed batch the loss curve then shows learning, not noise.
    let model = ModelSpec {
        dropout: 0.0,
        ..spec.model.clone()
    };
    let net = build_classifier(
        &vs.root(),
        &model,
        num_classes as i64,
        (side as i64, side as i64),
    )?;
    if let Some(path) = crate::weights::pretrained_file(spec)? {
        load_pretrained_backbone(&mut vs, path)?;
    }
    set_backbone_trainable(&vs, !spec.model.freeze_backbone);
    let mut optimizer = Optimizer::new(POC_OPTIMIZER, parameters_of(&vs));
    let source = BatchSource::new(&data, device, channels_last_on(device))?;
    let (x, y) = source.batch(&source.indices(&positions), None);
    let lr = POC_LEARNING_RATE;
    let mut losses = Vec::with_capacity(local.steps as usize);
    for step in 1..=local.steps as u32 {
        optimizer.zero_grad();
        let logits = net.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
        loss.backward();
        optimizer.step(GroupRates {
            backbone: lr,
            head: lr,
        });
        let value = loss.double_value(&[]);
        losses.push(value);
        on_step(step, value);
    }
    let first_loss = losses.first().copied().unwrap_or(f64::NAN);
    let last_loss = losses.last().copied().unwrap_or(f64::NAN);
    let tail = &losses[losses.len() - (losses.len() / 4).max(1)..];
    let tail_mean = tail.iter().sum::<f64>() / tail.len() as f64;
    let loss_finite = losses.iter().all(|l| l.is_finite());
    Ok(PocReport {
        steps: local.steps as u32,
        image_size: side,
        images_used: entries.len(),
        first_loss,
        last_loss,
        losses,
        seconds: started.elapsed().as_secs_f64(),
        loss_finite,
        loss_fell: loss_finite && tail_mean < first_loss,
    })
}
