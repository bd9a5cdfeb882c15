//! Loss, accuracy, per-class accuracy and confusion matrix of a model over some images, with the
//! sums kept on the device and read once at the end; during a run also each image's most likely
//! classes (kept on the device), from which the run's report shows its mistakes.

use super::feature_cache::FeatureCache;
use super::trainee::{ModelInput, Trainee};
use crate::models::Classifier;
use crate::pipeline::BatchSource;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// A model's results on some labelled images: a validation or test split during a run, or
/// another dataset afterwards (`client evaluate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub images: u64,
    pub accuracy: f64,
    pub loss: f64,
    /// In the run's class order (`classes.json`).
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]`, the run's class order.
    pub confusion: Vec<Vec<u64>>,
}

/// How many of each image's most likely classes a run keeps (the report lists three).
pub const TOP_CLASSES: i64 = 3;

/// Each evaluated image's most likely classes, most likely first, in the order the images were
/// evaluated: `classes` `[n, k]` (i64) and their `probabilities` `[n, k]` (f32), on the
/// evaluation's device.
#[derive(Debug)]
pub struct TopClasses {
    pub classes: Tensor,
    pub probabilities: Tensor,
}

/// An evaluation during a run, with each image's most likely classes.
#[derive(Debug)]
pub struct Scored {
    pub evaluation: Evaluation,
    pub top: TopClasses,
}

/// Evaluates `net` (eval mode, no gradients) on the images at `indices` of `source`.
pub fn evaluate_indices(
    net: &Classifier,
    source: &BatchSource,
    indices: &[i64],
    batch_size: usize,
    num_classes: usize,
) -> Evaluation {
    evaluate_batches(
        &source.indices(indices),
        source.device(),
        batch_size,
        num_classes,
        |batch| {
            let (x, y) = source.batch(batch, None);
            (net.forward_t(&x, false), y)
        },
    )
    .0
}

/// Evaluates the trainee (its bf16 copy on a bf16 run, which must hold the current weights) on
/// the images at `indices`, from the cached backbone features when there are some.
pub fn evaluate_trainee(
    trainee: &Trainee,
    source: &BatchSource,
    features: Option<&FeatureCache>,
    indices: &[i64],
    batch_size: usize,
    num_classes: usize,
) -> Scored {
    let index = match features {
        Some(cache) => cache.indices(indices),
        None => source.indices(indices),
    };
    let (evaluation, top) =
        evaluate_batches(&index, source.device(), batch_size, num_classes, |batch| {
            let (input, y) = match features {
                Some(cache) => cache.batch(batch, false),
                None => {
                    let (x, y) = source.batch(batch, None);
                    (ModelInput::Images(x), y)
                }
            };
            (trainee.logits(&input, false), y)
        });
    Scored {
        evaluation,
        top: top.unwrap_or_else(|| TopClasses {
            classes: Tensor::zeros([0, 1], (Kind::Int64, source.device())),
            probabilities: Tensor::zeros([0, 1], (Kind::Float, source.device())),
        }),
    }
}

/// Sums loss and confusion over `index` in batches, and keeps each image's most likely classes
/// on the device (none for no images); `logits_of(batch indices)` gives a batch's logits and
/// labels on `device`.
fn evaluate_batches(
    index: &Tensor,
    device: tch::Device,
    batch_size: usize,
    num_classes: usize,
    mut logits_of: impl FnMut(&Tensor) -> (Tensor, Tensor),
) -> (Evaluation, Option<TopClasses>) {
    let _no_grad = tch::no_grad_guard();
    let classes = num_classes as i64;
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut confusion = Tensor::zeros([classes * classes], (Kind::Int64, device));
    let total = index.size()[0];
    let top_k = TOP_CLASSES.min(classes);
    let (mut top_classes, mut top_probabilities) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < total {
        let length = (batch_size as i64).min(total - start);
        let (logits, y) = logits_of(&index.narrow(0, start, length));
        let logits = logits.to_kind(Kind::Float);
        let (probabilities, classes_of) =
            logits.softmax(-1, Kind::Float).topk(top_k, -1, true, true);
        top_probabilities.push(probabilities);
        // The most likely class as the report's mistakes name it (argmax may break ties
        // another way).
        let predicted = classes_of.select(1, 0);
        top_classes.push(classes_of);
        loss_sum += logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0);

        // index_add_, not bincount: bincount reads its input's size back to the host (twice a
        // batch), which waits for the device; this stays queued on it.
        let cells = &y * classes + predicted;
        let _ = confusion.index_add_(0, &cells, &Tensor::ones([length], (Kind::Int64, device)));
        start += length;
    }
    let confusion: Vec<i64> =
        Vec::try_from(confusion.to_device(tch::Device::Cpu)).unwrap_or_default();
    let loss = loss_sum.double_value(&[]);
    let top = (!top_classes.is_empty()).then(|| TopClasses {
        classes: Tensor::cat(&top_classes, 0),
        probabilities: Tensor::cat(&top_probabilities, 0),
    });
    (totals_from(confusion, loss, num_classes), top)
}

fn totals_from(flat: Vec<i64>, loss_sum: f64, num_classes: usize) -> Evaluation {
    let confusion: Vec<Vec<u64>> = flat
        .chunks(num_classes.max(1))
        .map(|row| row.iter().map(|&v| v.max(0) as u64).collect())
        .collect();
    let images: u64 = confusion.iter().flatten().sum();
    let correct: u64 = (0..num_classes).map(|c| confusion[c][c]).sum();
    let per_class_accuracy = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let n: u64 = row.iter().sum();
            if n == 0 {
                0.0
            } else {
                row[c] as f64 / n as f64
            }
        })
        .collect();
    Evaluation {
        images,
        loss: if images == 0 {
            0.0
        } else {
            loss_sum / images as f64
        },
        accuracy: if images == 0 {
            0.0
        } else {
            correct as f64 / images as f64
        },
        per_class_accuracy,
        confusion,
    }
}
