//! What a training run reports, as plain values. The worker turns them into gRPC events and JSON
//! lines; `client train --local` into a progress bar. No tch types here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrainEvent {
    Started(RunInfo),
    /// Throttled: at most every few seconds (reading the loss costs a host sync).
    Step(StepProgress),
    Epoch(EpochMetrics),
    /// A resumable checkpoint was written under the run directory.
    CheckpointWritten {
        epoch: u32,
        name: String,
    },
    /// A finished artifact file (path relative to the run directory) is complete on disk and may
    /// be copied to object storage.
    ArtifactWritten {
        name: String,
        bytes: u64,
    },
    /// Human-readable note (e.g. "backbone unfrozen", "early stopping at epoch 7").
    Note {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub device: String,
    pub classes: Vec<String>,
    pub train_images: u64,
    pub validation_images: u64,
    pub test_images: u64,
    pub parameters: u64,
    pub trainable_parameters: u64,
    pub steps_per_epoch: u64,
    pub epochs: u32,
    /// First epoch this run trains, 1-based (greater than 1 when resumed from a checkpoint).
    pub start_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepProgress {
    pub epoch: u32,
    pub step: u64,
    pub steps_per_epoch: u64,
    pub loss: f64,
    pub images_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub validation_loss: f64,
    pub validation_accuracy: f64,
    /// Validation accuracy per class, in class order.
    pub per_class_accuracy: Vec<f64>,
    /// Validation confusion matrix: `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    pub images_per_second: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}
