//! The learner: trains a run's epochs from wherever its state stands, until the last epoch,
//! early stopping or the cancel flag. Each epoch it unfreezes the backbone when due, trains
//! (on the frozen backbone's cached features while they serve), validates, records the metrics
//! and weights, and saves the checkpoint when the policy says.

use super::checkpoint_policy::CheckpointPolicy;
use super::checkpointer::Checkpointer;
use super::data::RunData;
use super::early_stopping::EarlyStopping;
use super::epoch::{EpochPlan, TrainTotals, steps_per_epoch, train_epoch};
use super::feature_cache::{FeatureCache, NotCached};
use super::outputs::RunOutputs;
use super::settings::Settings;
use super::shared_features::{self, Obtained};
use super::trainee::Trainee;
use super::validation::{Scored, TopClasses};
use crate::Result;
use crate::artifacts;
use crate::checkpoint::CheckpointState;
use crate::device::device_name;
use crate::events::{EpochMetrics, RunInfo, TrainEvent};
use crate::models::{count_parameters, set_backbone_trainable};
use crate::pipeline::Augment;
use easel_spec::{ExperimentSpec, ModelSpec, TrainSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the learner does over a run: the spec's training settings and the policies it follows.
pub struct TrainingPlan<'a> {
    pub train: &'a TrainSpec,
    pub model: &'a ModelSpec,
    pub epochs: u32,
    pub augment: Augment,
    pub checkpoints: CheckpointPolicy,
    pub early_stopping: Option<EarlyStopping>,
}

impl<'a> TrainingPlan<'a> {
    pub fn of(spec: &'a ExperimentSpec, settings: &Settings) -> Self {
        TrainingPlan {
            train: &spec.train,
            model: &spec.model,
            epochs: settings.epochs,
            augment: Augment::from_spec(&spec.augment, settings.height, settings.width),
            checkpoints: CheckpointPolicy::new(settings.checkpoint_every, settings.epochs),
            early_stopping: spec.train.early_stopping.as_ref().map(EarlyStopping::new),
        }
    }
}

/// How the epochs ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The last epoch trained, or early stopping ended the run.
    Completed,
    /// Stopped by the cancel flag; `completed_epochs` are saved in the checkpoint.
    Cancelled { completed_epochs: u32 },
}

pub struct Learner<'a> {
    trainee: Trainee,
    data: &'a RunData,
    plan: TrainingPlan<'a>,
    checkpointer: Checkpointer<'a>,
    outputs: &'a RunOutputs<'a>,
    cancel: &'a AtomicBool,
    steps_per_epoch: u64,
    /// The frozen backbone's features, computed before the first epoch trained with it frozen
    /// and dropped when it unfreezes.
    features: Option<FeatureCache>,
    features_tried: bool,
    /// The validation images' most likely classes at the best epoch of this session (the
    /// report's mistakes come from them without another pass).
    best_validation: Option<TopClasses>,
}

/// This session's place in the run (a resumed run is a new session).
struct Session {
    started: Instant,
    seconds_before: f64,
    global_step: u64,
    /// The epochs the checkpoint on disk holds.
    saved_epoch: u32,
}

impl Session {
    /// Training seconds of the run: earlier sessions' and this one's.
    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }
}

impl<'a> Learner<'a> {
    pub fn new(
        trainee: Trainee,
        data: &'a RunData,
        plan: TrainingPlan<'a>,
        checkpointer: Checkpointer<'a>,
        outputs: &'a RunOutputs<'a>,
        cancel: &'a AtomicBool,
    ) -> Self {
        Learner {
            steps_per_epoch: steps_per_epoch(data.train.len(), data.batch_size),
            trainee,
            data,
            plan,
            checkpointer,
            outputs,
            cancel,
            features: None,
            features_tried: false,
            best_validation: None,
        }
    }

    /// What the run ends with, for the evaluations after the epochs.
    pub fn into_trained(self) -> Trained {
        Trained {
            trainee: self.trainee,
            features: self.features,
            best_validation: self.best_validation,
        }
    }

    /// Trains the epochs after `state.epoch`, recording each in `state`.
    pub fn fit(
        &mut self,
        state: &mut CheckpointState,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Fit> {
        self.announce(state, on_event);
        let mut session = Session {
            started: Instant::now(),
            seconds_before: state.seconds,
            global_step: state.global_step,
            saved_epoch: state.epoch,
        };
        for epoch in state.epoch + 1..=self.plan.epochs {
            if state.stopped_early {
                break;
            }
            if self.cancel.load(Ordering::Relaxed) {
                return self.stop_cancelled(state, &session, epoch, on_event);
            }
            self.unfreeze_if_due(state, epoch, on_event);
            let epoch_started = Instant::now();
            if state.backbone_frozen && self.plan.train.cache_frozen_features {
                self.cache_frozen_features(on_event);
            }
            let Some(totals) = self.train_one_epoch(epoch, &mut session.global_step, on_event)?
            else {
                return self.stop_cancelled(state, &session, epoch, on_event);
            };
            let (metrics, top) = self.validate(epoch, &totals, epoch_started);
            let verdict = state.monitor.observe(
                epoch,
                metrics.validation_loss,
                metrics.validation_accuracy,
                self.plan.early_stopping.as_ref(),
            );
            if verdict.new_best {
                self.best_validation = Some(top);
            }
            state.history.push(metrics.clone());
            state.epoch = epoch;
            state.global_step = session.global_step;
            state.stopped_early = verdict.stop;
            state.seconds = session.seconds();
            tracing::info!(
                epoch,
                train_loss = metrics.train_loss,
                validation_accuracy = metrics.validation_accuracy,
                "epoch done"
            );
            on_event(TrainEvent::Epoch(metrics));
            self.outputs.write_epoch(
                &state.history,
                &self.trainee.vs,
                verdict.new_best,
                on_event,
            )?;
            if self.plan.checkpoints.due_after(epoch, verdict.stop) {
                self.checkpointer.save(state, &self.trainee, on_event)?;
                session.saved_epoch = epoch;
            }
            if verdict.stop {
                on_event(TrainEvent::Note {
                    message: format!(
                        "early stopping at epoch {epoch}: no improvement of {:?} for {} epoch(s)",
                        state.monitor.monitor, state.monitor.patience.epochs_without_improvement
                    ),
                });
            }
        }
        Ok(Fit::Completed)
    }

    fn announce(&self, state: &CheckpointState, on_event: &mut dyn FnMut(TrainEvent)) {
        let (parameters, trainable_parameters) = count_parameters(&self.trainee.vs);
        on_event(TrainEvent::Started(RunInfo {
            device: device_name(self.trainee.vs.device()),
            classes: self.outputs.classes().to_vec(),
            train_images: self.data.train.len() as u64,
            validation_images: self.data.validation.len() as u64,
            test_images: self.data.test.len() as u64,
            parameters,
            trainable_parameters,
            steps_per_epoch: self.steps_per_epoch,
            epochs: self.plan.epochs,
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
    }

    /// Ends a cancelled run, saving the epochs its checkpoint lacks.
    fn stop_cancelled(
        &self,
        state: &mut CheckpointState,
        session: &Session,
        epoch: u32,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Fit> {
        if self
            .plan
            .checkpoints
            .due_on_cancel(session.saved_epoch, state.epoch)
        {
            state.seconds = session.seconds();
            self.checkpointer.save(state, &self.trainee, on_event)?;
        }
        on_event(TrainEvent::Note {
            message: format!(
                "cancelled during epoch {epoch}; {} epoch(s) kept",
                state.epoch
            ),
        });
        Ok(Fit::Cancelled {
            completed_epochs: state.epoch,
        })
    }

    fn unfreeze_if_due(
        &mut self,
        state: &mut CheckpointState,
        epoch: u32,
        on_event: &mut dyn FnMut(TrainEvent),
    ) {
        let model = self.plan.model;
        let due = model.unfreeze_after_epochs.is_some_and(|n| epoch > n);
        if !(state.backbone_frozen && due) {
            return;
        }
        state.backbone_frozen = false;
        set_backbone_trainable(&self.trainee.vs, true);
        let dropped = if self.features.take().is_some() {
            "; cached features dropped, training on images"
        } else {
            ""
        };
        on_event(TrainEvent::Note {
            message: format!(
                "backbone unfrozen at epoch {epoch}; backbone learning rate x{}{dropped}",
                model.backbone_lr_scale
            ),
        });
    }

    /// Computes the frozen backbone's features once; a model or augmentation they cannot serve
    /// is told once and trains on images.
    fn cache_frozen_features(&mut self, on_event: &mut dyn FnMut(TrainEvent)) {
        if self.features_tried {
            return;
        }
        self.features_tried = true;
        // The backbone computes the features: the bf16 copy must hold its weights.
        self.trainee.sync_copy();
        let (trainee, source, augment) = (&self.trainee, &self.data.source, &self.plan.augment);
        let batch_size = self.data.batch_size;
        let obtained = match &self.data.shared {
            Some(shared) => {
                shared_features::obtain(shared, trainee, source, augment, batch_size, self.cancel)
            }
            None => FeatureCache::build(trainee, source, augment, batch_size, self.cancel).map(
                |cache| Obtained::Computed {
                    cache,
                    shared: false,
                },
            ),
        };
        match obtained {
            Ok(Obtained::Computed { cache, shared }) => {
                on_event(TrainEvent::Note {
                    message: cache.describe(),
                });
                if shared {
                    on_event(TrainEvent::Note {
                        message: "frozen backbone features shared: runs on these images with \
                                  this backbone read them instead of computing them again"
                            .into(),
                    });
                }
                self.features = Some(cache);
            }
            Ok(Obtained::Reused(cache, writer)) => {
                on_event(TrainEvent::Note {
                    message: format!(
                        "frozen backbone features reused from {}: {} images, {:.1} MB, no \
                         backbone pass; the head trains on them",
                        writer.unwrap_or_else(|| "the shared cache".to_owned()),
                        cache.views()[0].size()[0],
                        cache.bytes() as f64 / 1e6
                    ),
                });
                self.features = Some(cache);
            }
            Err(NotCached::Cancelled) => {}
            Err(why) => on_event(TrainEvent::Note {
                message: format!("frozen backbone features not cached: {why}"),
            }),
        }
    }

    /// `None` when the cancel flag stopped the epoch.
    fn train_one_epoch(
        &mut self,
        epoch: u32,
        global_step: &mut u64,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Option<TrainTotals>> {
        let model = self.plan.model;
        let plan = EpochPlan {
            train: self.plan.train,
            augment: &self.plan.augment,
            train_indices: &self.data.train,
            batch_size: self.data.batch_size,
            steps_per_epoch: self.steps_per_epoch,
            total_steps: self.steps_per_epoch * u64::from(self.plan.epochs),
            backbone_lr_scale: if model.freeze_backbone {
                model.backbone_lr_scale
            } else {
                1.0
            },
            cancel: self.cancel,
            features: self.features.as_ref(),
        };
        train_epoch(
            &mut self.trainee,
            &self.data.source,
            &plan,
            self.plan.train.seed,
            epoch,
            global_step,
            on_event,
        )
    }

    /// The epoch's metrics (its training totals and the validation split's evaluation), and the
    /// validation images' most likely classes.
    fn validate(
        &self,
        epoch: u32,
        totals: &TrainTotals,
        started: Instant,
    ) -> (EpochMetrics, TopClasses) {
        if let Some(copy) = &self.trainee.bf16 {
            copy.push_buffers();
        }
        self.trainee.sync_copy();
        let Scored {
            evaluation: validation,
            top,
        } = self
            .data
            .evaluate(&self.trainee, self.features.as_ref(), &self.data.validation);
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
            seconds: started.elapsed().as_secs_f64(),
        };
        (metrics, top)
    }
}

/// A finished fit: the trained model, the features cached for it, and the best epoch's
/// validation classes when this session trained it.
pub struct Trained {
    pub trainee: Trainee,
    pub features: Option<FeatureCache>,
    pub best_validation: Option<TopClasses>,
}
