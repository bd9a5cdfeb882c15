//! The run: data, model, resumption, the epoch loop, best/last weights, checkpoints, test
//! evaluation, plots and the report (last).

use super::epoch::{EpochPlan, steps_per_epoch, train_epoch};
use super::feature_cache::{FeatureCache, NotCached};
use super::monitor::MetricMonitor;
use super::optimizer::{Optimizer, parameters_of};
use super::precision::Bf16Copy;
use super::split::{SplitIndices, split_manifest};
use super::trainee::Trainee;
use super::validation::evaluate_trainee;
use super::{RunReport, TrainJob, TrainOutcome};
use crate::artifacts::{self, RunDir, plots};
use crate::checkpoint::{self, CheckpointState, MODEL_PREFIX, OPTIMIZER_PREFIX};
use crate::device::device_name;
use crate::events::{EpochMetrics, RunInfo, TrainEvent};
use crate::models::{build_classifier, count_parameters, set_backbone_trainable};
use crate::pipeline::{self, Augment, BatchSource, CacheStatus};
use crate::weights::load_pretrained_backbone;
use crate::{Error, Result};
use easel_spec::{ExperimentSpec, Precision};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tch::Tensor;
use tch::nn::VarStore;

/// Numbers of the spec the run needs, checked (the spec crate's `validate` reports them to the
/// user first; this guards callers that skip it).
struct Settings {
    epochs: u32,
    batch_size: usize,
    checkpoint_every: u32,
    height: u32,
    width: u32,
}

impl Settings {
    fn check(spec: &ExperimentSpec) -> Result<Self> {
        let positive = |key: &str, value: i64| {
            if value > 0 {
                Ok(value)
            } else {
                Err(Error::Invalid(format!("{key} is {value}: it must be > 0")))
            }
        };
        let settings = Settings {
            epochs: positive("train.epochs", spec.train.epochs)? as u32,
            batch_size: positive("train.batch_size", spec.train.batch_size)? as usize,
            checkpoint_every: positive(
                "train.checkpoint_every_epochs",
                spec.train.checkpoint_every_epochs,
            )? as u32,
            height: positive("data.image_size", i64::from(spec.data.image_size.height()))? as u32,
            width: positive("data.image_size", i64::from(spec.data.image_size.width()))? as u32,
        };
        if spec.train.learning_rate.is_nan() || spec.train.learning_rate <= 0.0 {
            return Err(Error::Invalid(format!(
                "train.learning_rate is {}: it must be > 0",
                spec.train.learning_rate
            )));
        }
        Ok(settings)
    }
}

/// Trains `job.spec` on `job.manifest`, resuming from `run_dir/checkpoints/last.ckpt` when it was
/// made for the same spec and dataset. Events go to `on_event` as they happen.
pub fn train(job: &TrainJob, on_event: &mut dyn FnMut(TrainEvent)) -> Result<TrainOutcome> {
    let spec = job.spec;
    let settings = Settings::check(spec)?;
    let device = job.device.resolve()?;
    let cuda = device.is_cuda();
    if cuda {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let classes = job.manifest.classes.clone();
    let num_classes = classes.len();
    if num_classes < 2 {
        return Err(Error::Invalid(format!(
            "the dataset has {num_classes} class(es): a classifier needs at least 2"
        )));
    }
    let split = split_manifest(
        job.manifest,
        spec.data.validation_split,
        spec.data.test_split,
        spec.data.seed,
    )?;
    check_split(&split)?;
    // Before the decode, which can take minutes: a model that cannot fit fails now.
    crate::fits::check_fits(
        &crate::fits::RunShape {
            model: &spec.model,
            optimizer: spec.train.optimizer,
            precision: spec.train.precision,
            num_classes,
            image_hw: (i64::from(settings.height), i64::from(settings.width)),
            batch_size: settings.batch_size as i64,
        },
        device,
    )?;

    let run = RunDir::new(job.run_dir)?;
    let dataset_digest = pipeline::dataset_digest(job.manifest);
    let spec_text = toml::to_string_pretty(spec)
        .map_err(|e| Error::Invalid(format!("cannot write spec.toml: {e}")))?;
    run.write(artifacts::SPEC, spec_text.as_bytes(), on_event)?;
    run.write(
        artifacts::MANIFEST,
        job.manifest.to_json().as_bytes(),
        on_event,
    )?;
    run.write_json(artifacts::CLASSES, &classes, on_event)?;

    let (height, width) = (settings.height, settings.width);
    let source = {
        let loaded = pipeline::load_manifest_reporting(
            job.manifest,
            job.source,
            height,
            width,
            spec.data.max_image_pixels,
            job.cache_dir,
            &mut |decoded, total| {
                on_event(TrainEvent::Note {
                    message: format!("decoding the dataset: {decoded} of {total} images"),
                });
            },
        )?;
        let how = match loaded.cache {
            CacheStatus::Hit => "read from the decoded cache",
            CacheStatus::Written => "decoded and cached",
            CacheStatus::Disabled => "decoded",
        };
        on_event(TrainEvent::Note {
            message: format!(
                "{} images {how} at {height}x{width} in {:.1} s",
                loaded.data.len(),
                loaded.seconds
            ),
        });
        BatchSource::new(&loaded.data, device, cuda)?
    };

    tch::manual_seed(spec.train.seed as i64);
    let mut vs = VarStore::new(device);
    let net = build_classifier(
        &vs.root(),
        &spec.model,
        num_classes as i64,
        (i64::from(height), i64::from(width)),
    )?;
    if let Some(path) = &spec.model.pretrained {
        let report = load_pretrained_backbone(&mut vs, path)?;
        let mut message = format!(
            "pretrained backbone: {} tensors ({} values) loaded from {}",
            report.tensors_loaded,
            report.elements_loaded,
            path.display()
        );
        for note in &report.notes {
            message.push_str("; ");
            message.push_str(note);
        }
        on_event(TrainEvent::Note { message });
    }

    // Hashed once the loader has read the file, so a missing file gets its clearer error.
    let pretrained_digest = match &spec.model.pretrained {
        Some(path) => Some(checkpoint::file_digest(path)?),
        None => None,
    };
    let identity = checkpoint::run_identity(spec, &dataset_digest, pretrained_digest.as_deref());
    let (mut state, resumed) = resume_or_start(&run, &identity, spec, &vs, on_event)?;
    set_backbone_trainable(&vs, !state.backbone_frozen);
    let mut optimizer = Optimizer::new(
        spec.train.optimizer,
        spec.train.momentum,
        spec.train.weight_decay,
        parameters_of(&vs),
    );
    if let Some(tensors) = &resumed {
        let optimizer_tensors: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(name, t)| {
                Some((
                    name.strip_prefix(OPTIMIZER_PREFIX)?.to_string(),
                    t.shallow_clone(),
                ))
            })
            .collect();
        optimizer
            .restore(&state.optimizer_steps, &optimizer_tensors)
            .map_err(|why| Error::artifact(run.path(artifacts::CHECKPOINT), why))?;
    }
    drop(resumed);
    let bf16 = if cuda && spec.train.precision == Precision::Bf16 {
        Some(Bf16Copy::new(
            &vs,
            &spec.model,
            num_classes as i64,
            (i64::from(height), i64::from(width)),
            device,
        )?)
    } else {
        None
    };
    let mut trainee = Trainee {
        vs,
        net,
        optimizer,
        bf16,
    };

    let train_indices: Vec<i64> = split.train.iter().map(|&i| i as i64).collect();
    let validation_indices: Vec<i64> = split.validation.iter().map(|&i| i as i64).collect();
    let steps = steps_per_epoch(train_indices.len(), settings.batch_size);
    let total_steps = steps * u64::from(settings.epochs);
    let (parameters, trainable_parameters) = count_parameters(&trainee.vs);
    on_event(TrainEvent::Started(RunInfo {
        device: device_name(device),
        classes: classes.clone(),
        train_images: split.train.len() as u64,
        validation_images: split.validation.len() as u64,
        test_images: split.test.len() as u64,
        parameters,
        trainable_parameters,
        steps_per_epoch: steps,
        epochs: settings.epochs,
        start_epoch: state.epoch + 1,
    }));
    if state.epoch > 0 {
        on_event(TrainEvent::Note {
            message: format!(
                "resumed after epoch {} from {}",
                state.epoch,
                artifacts::CHECKPOINT
            ),
        });
    }

    let augment = Augment::from_spec(&spec.augment, height, width);
    let session_started = Instant::now();
    let seconds_before = state.seconds;
    let mut global_step = state.global_step;
    let mut checkpointed_epoch = state.epoch;
    let first_epoch = state.epoch + 1;
    let mut features: Option<FeatureCache> = None;
    let mut features_tried = false;
    for epoch in first_epoch..=settings.epochs {
        if state.stopped_early {
            break;
        }
        let cancelled = job.cancel.load(Ordering::Relaxed);
        if !cancelled
            && state.backbone_frozen
            && spec.model.unfreeze_after_epochs.is_some_and(|n| epoch > n)
        {
            state.backbone_frozen = false;
            set_backbone_trainable(&trainee.vs, true);
            let dropped = if features.take().is_some() {
                "; cached features dropped, training on images"
            } else {
                ""
            };
            on_event(TrainEvent::Note {
                message: format!(
                    "backbone unfrozen at epoch {epoch}; backbone learning rate x{}{dropped}",
                    spec.model.backbone_lr_scale
                ),
            });
        }
        let epoch_started = Instant::now();
        if !cancelled
            && state.backbone_frozen
            && spec.train.cache_frozen_features
            && !features_tried
        {
            features_tried = true;
            // The backbone computes the features: the bf16 copy must hold its weights.
            trainee.sync_copy();
            match FeatureCache::build(&trainee, &source, &augment, settings.batch_size, job.cancel)
            {
                Ok(cache) => {
                    on_event(TrainEvent::Note {
                        message: cache.describe(),
                    });
                    features = Some(cache);
                }
                Err(NotCached::Cancelled) => {}
                Err(why) => on_event(TrainEvent::Note {
                    message: format!("frozen backbone features not cached: {why}"),
                }),
            }
        }
        let plan = EpochPlan {
            train: &spec.train,
            augment: &augment,
            train_indices: &train_indices,
            batch_size: settings.batch_size,
            steps_per_epoch: steps,
            total_steps,
            backbone_lr_scale: if spec.model.freeze_backbone {
                spec.model.backbone_lr_scale
            } else {
                1.0
            },
            cancel: job.cancel,
            features: features.as_ref(),
        };
        let totals = if cancelled {
            None
        } else {
            train_epoch(
                &mut trainee,
                &source,
                &plan,
                spec.train.seed,
                epoch,
                &mut global_step,
                on_event,
            )?
        };
        let Some(totals) = totals else {
            if checkpointed_epoch < state.epoch {
                state.seconds = seconds_before + session_started.elapsed().as_secs_f64();
                write_checkpoint(&run, &state, &trainee, on_event)?;
            }
            on_event(TrainEvent::Note {
                message: format!(
                    "cancelled during epoch {epoch}; {} epoch(s) kept",
                    state.epoch
                ),
            });
            return Ok(TrainOutcome::Cancelled {
                completed_epochs: state.epoch,
            });
        };
        if let Some(copy) = &trainee.bf16 {
            copy.push_buffers();
        }
        trainee.sync_copy();
        let validation = evaluate_trainee(
            &trainee,
            &source,
            features.as_ref(),
            &validation_indices,
            settings.batch_size,
            num_classes,
        );
        let metrics = EpochMetrics {
            epoch,
            train_loss: totals.loss,
            train_accuracy: totals.accuracy,
            validation_loss: validation.loss,
            validation_accuracy: validation.accuracy,
            per_class_accuracy: validation.per_class_accuracy,
            confusion: validation.confusion,
            images_per_second: totals.images as f64 / totals.seconds.max(1e-9),
            learning_rate: totals.learning_rate,
            seconds: epoch_started.elapsed().as_secs_f64(),
        };
        let verdict = state.monitor.observe(
            epoch,
            metrics.validation_loss,
            metrics.validation_accuracy,
            spec.train.early_stopping.as_ref(),
        );
        state.history.push(metrics.clone());
        state.epoch = epoch;
        state.global_step = global_step;
        state.stopped_early = verdict.stop;
        state.seconds = seconds_before + session_started.elapsed().as_secs_f64();
        tracing::info!(
            epoch,
            train_loss = metrics.train_loss,
            validation_accuracy = metrics.validation_accuracy,
            "epoch done"
        );
        on_event(TrainEvent::Epoch(metrics));
        write_metrics(&run, &state.history, on_event)?;
        if verdict.new_best {
            run.write_weights(artifacts::BEST_WEIGHTS, &trainee.vs, on_event)?;
        }
        run.write_weights(artifacts::LAST_WEIGHTS, &trainee.vs, on_event)?;
        if epoch == settings.epochs || verdict.stop || epoch % settings.checkpoint_every == 0 {
            write_checkpoint(&run, &state, &trainee, on_event)?;
            checkpointed_epoch = epoch;
        }
        if verdict.stop {
            on_event(TrainEvent::Note {
                message: format!(
                    "early stopping at epoch {epoch}: no improvement of {:?} for {} epoch(s)",
                    state.monitor.monitor, state.monitor.epochs_without_improvement
                ),
            });
        }
    }

    finish(
        &run,
        job,
        &state,
        &mut trainee,
        &source,
        features.as_ref(),
        &split,
        num_classes,
        settings.batch_size,
        &dataset_digest,
        device,
        on_event,
    )
    .map(TrainOutcome::Completed)
}

fn check_split(split: &SplitIndices) -> Result<()> {
    if split.train.is_empty() {
        return Err(Error::Invalid("no training images after the split".into()));
    }
    if split.validation.is_empty() {
        return Err(Error::Invalid(
            "no validation images: set data.validation_split > 0 or give a validation root".into(),
        ));
    }
    Ok(())
}

/// The checkpoint to continue from, when there is one made for this spec and dataset.
fn resume_or_start(
    run: &RunDir,
    identity: &str,
    spec: &ExperimentSpec,
    vs: &VarStore,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<(CheckpointState, Option<HashMap<String, Tensor>>)> {
    let mut fresh = checkpoint::new_state(identity.to_string());
    fresh.monitor = MetricMonitor::new(spec.train.early_stopping.as_ref());
    fresh.backbone_frozen = spec.model.freeze_backbone;
    let path = run.path(artifacts::CHECKPOINT);
    if !path.exists() {
        return Ok((fresh, None));
    }
    match checkpoint::read(&path) {
        Ok((state, tensors)) if state.identity == identity => {
            checkpoint::load_variables(vs, &tensors, MODEL_PREFIX, &path)?;
            Ok((state, Some(tensors)))
        }
        Ok(_) => {
            on_event(TrainEvent::Note {
                message: format!(
                    "{} was made for another spec or dataset; starting afresh",
                    artifacts::CHECKPOINT
                ),
            });
            Ok((fresh, None))
        }
        Err(err) => {
            tracing::warn!(error = %err, "checkpoint unreadable; starting afresh");
            on_event(TrainEvent::Note {
                message: format!("ignoring unreadable checkpoint: {err}"),
            });
            Ok((fresh, None))
        }
    }
}

fn write_checkpoint(
    run: &RunDir,
    state: &CheckpointState,
    trainee: &Trainee,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<()> {
    let mut state = state.clone();
    state.optimizer_steps = trainee.optimizer.step_counts();
    let mut model: Vec<(String, Tensor)> = trainee.vs.variables().into_iter().collect();
    model.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = trainee.optimizer.state_tensors();
    optimizer.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint::write(&run.path(artifacts::CHECKPOINT), &state, &model, &optimizer)?;
    on_event(TrainEvent::CheckpointWritten {
        epoch: state.epoch,
        name: artifacts::CHECKPOINT.to_string(),
    });
    run.announce(artifacts::CHECKPOINT, on_event)
}

fn write_metrics(
    run: &RunDir,
    history: &[EpochMetrics],
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<()> {
    let mut text = String::new();
    for metrics in history {
        text.push_str(
            &serde_json::to_string(metrics).map_err(|e| Error::json(artifacts::METRICS, e))?,
        );
        text.push('\n');
    }
    run.write(artifacts::METRICS, text.as_bytes(), on_event)
}

/// Test evaluation (with the best weights), plots, then `report.json`.
#[allow(clippy::too_many_arguments)]
fn finish(
    run: &RunDir,
    job: &TrainJob,
    state: &CheckpointState,
    trainee: &mut Trainee,
    source: &BatchSource,
    features: Option<&FeatureCache>,
    split: &SplitIndices,
    num_classes: usize,
    batch_size: usize,
    dataset_digest: &str,
    device: tch::Device,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<RunReport> {
    let final_metrics =
        state.history.last().cloned().ok_or_else(|| {
            Error::artifact(run.path(artifacts::CHECKPOINT), "no epoch was trained")
        })?;
    let best_epoch = state.monitor.best_epoch.max(1);
    let best = state
        .history
        .get(best_epoch as usize - 1)
        .unwrap_or(&final_metrics);
    let mut confusion = best.confusion.clone();
    let mut test = None;
    if !split.test.is_empty() {
        let best_path = run.path(artifacts::BEST_WEIGHTS);
        trainee
            .vs
            .load(&best_path)
            .map_err(|e| Error::artifact(&best_path, e.to_string()))?;
        trainee.sync_copy();
        let indices: Vec<i64> = split.test.iter().map(|&i| i as i64).collect();
        let totals = evaluate_trainee(trainee, source, features, &indices, batch_size, num_classes);
        on_event(TrainEvent::Note {
            message: format!(
                "test accuracy {:.4} (loss {:.4}) on {} images, best weights",
                totals.accuracy, totals.loss, totals.images
            ),
        });
        confusion = totals.confusion.clone();
        test = Some(totals);
    }
    run.write(
        artifacts::CURVES_PLOT,
        plots::curves_svg(&state.history).as_bytes(),
        on_event,
    )?;
    run.write(
        artifacts::CONFUSION_PLOT,
        plots::confusion_svg(&job.manifest.classes, &confusion).as_bytes(),
        on_event,
    )?;
    let report = RunReport {
        name: job.spec.name.clone(),
        classes: job.manifest.classes.clone(),
        device: device_name(device),
        epochs_run: state.epoch,
        best_epoch,
        best_validation_accuracy: best.validation_accuracy,
        final_metrics,
        test_accuracy: test.as_ref().map(|t| t.accuracy),
        test_loss: test.as_ref().map(|t| t.loss),
        stopped_early: state.stopped_early,
        seconds: state.seconds,
        dataset_digest: dataset_digest.to_string(),
    };
    run.write_json(artifacts::REPORT, &report, on_event)?;
    Ok(report)
}
