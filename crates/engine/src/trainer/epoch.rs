//! One training epoch: shuffled batches, forward/backward/update, loss and accuracy summed on the
//! device (no host sync per step), a throttled progress event, the cancel flag every step.

use super::feature_cache::FeatureCache;
use super::optimizer::GroupRates;
use super::schedule::learning_rate;
pub use super::trainee::{ModelInput, Trainee};
use crate::Result;
use crate::events::{StepProgress, TrainEvent};
use crate::pipeline::{Augment, BatchSource, Batches};
use easel_spec::TrainSpec;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tch::{Kind, Reduction, Tensor};

/// Progress events at most this often (reading the loss waits for the device).
const STEP_EVENT_INTERVAL: Duration = Duration::from_secs(2);

pub struct EpochPlan<'a> {
    pub train: &'a TrainSpec,
    pub augment: &'a Augment,
    /// Dataset indices of the training images.
    pub train_indices: &'a [i64],
    pub batch_size: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    /// Backbone learning rate = this x the scheduled rate.
    pub backbone_lr_scale: f64,
    pub cancel: &'a AtomicBool,
    /// The frozen backbone's features of every image, when they are cached: the head trains on
    /// them instead of on images.
    pub features: Option<&'a FeatureCache>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainTotals {
    pub loss: f64,
    pub accuracy: f64,
    pub images: u64,
    pub seconds: f64,
    pub learning_rate: f64,
}

/// Steps of an epoch over `images` at `batch_size`. A last batch of a single image is dropped:
/// batch norm cannot train on one image.
pub fn steps_per_epoch(images: usize, batch_size: usize) -> u64 {
    let batch_size = batch_size.max(1);
    let full = images / batch_size;
    let rest = images % batch_size;
    (full + usize::from(rest >= 2 || (rest == 1 && batch_size == 1))) as u64
}

/// Derives the libtorch seed and the shuffle seed of an epoch from the run's seed, so a run
/// resumed at any epoch draws exactly what the uninterrupted run drew.
pub fn epoch_seed(seed: u64, epoch: u32) -> u64 {
    let hash = blake3::hash(format!("easel epoch seed {seed} {epoch}").as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or_default())
}

/// Where an epoch's inputs come from: batches of images, or the cached features of the frozen
/// backbone.
enum EpochInputs<'a> {
    Images(Batches<'a>),
    Features {
        cache: &'a FeatureCache,
        order: Tensor,
    },
}

/// Trains one epoch (1-based `epoch`); `None` when the cancel flag stopped it part-way.
pub fn train_epoch(
    trainee: &mut Trainee,
    source: &BatchSource,
    plan: &EpochPlan,
    seed: u64,
    epoch: u32,
    global_step: &mut u64,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Option<TrainTotals>> {
    let started = Instant::now();
    let epoch_seed = epoch_seed(seed, epoch);
    tch::manual_seed(epoch_seed as i64);
    let mut order = plan.train_indices.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed));
    let mut inputs = match plan.features {
        Some(cache) => EpochInputs::Features {
            cache,
            order: cache.indices(&order),
        },
        None => {
            EpochInputs::Images(source.batches(&order, plan.batch_size, plan.steps_per_epoch)?)
        }
    };
    let device = source.device();
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut correct = Tensor::zeros([], (Kind::Int64, device));
    let mut images = 0u64;
    let mut last_event = Instant::now();
    let mut lr = plan.train.learning_rate;
    let total = plan.train_indices.len() as i64;
    for step in 0..plan.steps_per_epoch {
        if plan.cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        lr = learning_rate(
            plan.train,
            *global_step,
            plan.steps_per_epoch,
            plan.total_steps,
        );
        let rates = GroupRates {
            backbone: lr * plan.backbone_lr_scale,
            head: lr,
        };
        let start = step as i64 * plan.batch_size as i64;
        let length = (plan.batch_size as i64).min(total - start);
        let (input, y) = match &mut inputs {
            EpochInputs::Features { cache, order } => {
                cache.batch(&order.narrow(0, start, length), plan.augment.flip)
            }
            EpochInputs::Images(batches) => match batches.next_batch(Some(plan.augment))? {
                Some((x, y)) => (ModelInput::Images(x), y),
                None => break,
            },
        };
        let logits = train_step_on(trainee, &input, &y, plan.train.label_smoothing, rates);
        loss_sum += logits.1 * length as f64;
        correct += logits.0.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
        images += length as u64;
        *global_step += 1;
        if last_event.elapsed() >= STEP_EVENT_INTERVAL {
            last_event = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            on_event(TrainEvent::Step(StepProgress {
                epoch,
                step: step + 1,
                steps_per_epoch: plan.steps_per_epoch,
                loss: loss_sum.double_value(&[]) / images as f64,
                images_per_second: images as f64 / seconds.max(1e-9),
            }));
        }
    }
    let loss = loss_sum.double_value(&[]) / images.max(1) as f64;
    let accuracy = correct.int64_value(&[]) as f64 / images.max(1) as f64;
    Ok(Some(TrainTotals {
        loss,
        accuracy,
        images,
        seconds: started.elapsed().as_secs_f64(),
        learning_rate: lr,
    }))
}

/// Forward, backward and update on one batch of images; returns the logits (detached) and the
/// loss.
pub fn train_step(
    trainee: &mut Trainee,
    x: &Tensor,
    y: &Tensor,
    label_smoothing: f64,
    rates: GroupRates,
) -> (Tensor, Tensor) {
    let input = ModelInput::Images(x.shallow_clone());
    train_step_on(trainee, &input, y, label_smoothing, rates)
}

/// Forward, backward and update on one batch of images or cached features.
pub fn train_step_on(
    trainee: &mut Trainee,
    input: &ModelInput,
    y: &Tensor,
    label_smoothing: f64,
    rates: GroupRates,
) -> (Tensor, Tensor) {
    match &trainee.bf16 {
        Some(copy) => {
            copy.pull_trainable_weights();
            copy.zero_grad();
        }
        None => trainee.optimizer.zero_grad(),
    }
    let logits = trainee.logits(input, true);
    let loss = logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, label_smoothing);
    loss.backward();
    let Trainee {
        optimizer, bf16, ..
    } = trainee;
    match bf16 {
        Some(copy) => optimizer.step_with(rates, |parameter| copy.gradient(&parameter.name)),
        None => optimizer.step(rates),
    }
    (logits.detach(), loss.detach())
}
