//! What a run leaves in its run directory besides the checkpoint: its inputs first (`spec.toml`,
//! `manifest.json`, `classes.json`); after every epoch the metrics and the best and last
//! weights; at the end the test evaluation with the best weights, the plots and `report.json`,
//! written last.

use super::RunReport;
use super::data::RunData;
use super::feature_cache::FeatureCache;
use super::trainee::Trainee;
use super::validation::Evaluation;
use crate::artifacts::{self, RunDir, plots};
use crate::checkpoint::CheckpointState;
use crate::device::device_name;
use crate::events::{EpochMetrics, TrainEvent};
use crate::{Error, Result, pipeline};
use easel_dataset::Manifest;
use easel_spec::ExperimentSpec;
use tch::nn::VarStore;

pub struct RunOutputs<'a> {
    run: &'a RunDir<'a>,
    name: &'a str,
    classes: &'a [String],
    device: tch::Device,
    dataset_digest: String,
}

impl<'a> RunOutputs<'a> {
    /// Writes the run's inputs into `run`, where the rest of its outputs will go.
    pub fn begin(
        run: &'a RunDir<'a>,
        spec: &'a ExperimentSpec,
        manifest: &'a Manifest,
        device: tch::Device,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Self> {
        let dataset_digest = pipeline::dataset_digest(manifest);
        let spec_text = toml::to_string_pretty(spec)
            .map_err(|e| Error::Invalid(format!("cannot write spec.toml: {e}")))?;
        run.write(artifacts::SPEC, spec_text.as_bytes(), on_event)?;
        run.write(artifacts::MANIFEST, manifest.to_json().as_bytes(), on_event)?;
        run.write_json(artifacts::CLASSES, &manifest.classes, on_event)?;
        Ok(RunOutputs {
            run,
            name: &spec.name,
            classes: &manifest.classes,
            device,
            dataset_digest,
        })
    }

    pub fn classes(&self) -> &[String] {
        self.classes
    }

    /// The dataset's identity in the report and the checkpoint.
    pub fn dataset_digest(&self) -> &str {
        &self.dataset_digest
    }

    /// After an epoch: the metrics so far, the best weights when this epoch is the best, and
    /// the last weights.
    pub fn write_epoch(
        &self,
        history: &[EpochMetrics],
        vs: &VarStore,
        new_best: bool,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        let mut text = String::new();
        for metrics in history {
            text.push_str(
                &serde_json::to_string(metrics).map_err(|e| Error::json(artifacts::METRICS, e))?,
            );
            text.push('\n');
        }
        self.run
            .write(artifacts::METRICS, text.as_bytes(), on_event)?;
        if new_best {
            self.run
                .write_weights(artifacts::BEST_WEIGHTS, vs, on_event)?;
        }
        self.run
            .write_weights(artifacts::LAST_WEIGHTS, vs, on_event)
    }

    /// Test evaluation (with the best weights), plots, then `report.json`.
    pub fn finish(
        &self,
        state: &CheckpointState,
        trainee: &mut Trainee,
        data: &RunData,
        features: Option<&FeatureCache>,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<RunReport> {
        let final_metrics = state.history.last().cloned().ok_or_else(|| {
            Error::artifact(self.run.path(artifacts::CHECKPOINT), "no epoch was trained")
        })?;
        let best_epoch = state.monitor.best_epoch.max(1);
        let best = state
            .history
            .get(best_epoch as usize - 1)
            .unwrap_or(&final_metrics);
        let test = self.test_best_weights(trainee, data, features, on_event)?;
        let confusion = test.as_ref().map_or(&best.confusion, |t| &t.confusion);
        self.run.write(
            artifacts::CURVES_PLOT,
            plots::curves_svg(&state.history).as_bytes(),
            on_event,
        )?;
        self.run.write(
            artifacts::CONFUSION_PLOT,
            plots::confusion_svg(self.classes, confusion).as_bytes(),
            on_event,
        )?;
        let report = RunReport {
            name: self.name.to_string(),
            classes: self.classes.to_vec(),
            device: device_name(self.device),
            epochs_run: state.epoch,
            best_epoch,
            best_validation_accuracy: best.validation_accuracy,
            final_metrics,
            test_accuracy: test.as_ref().map(|t| t.accuracy),
            test_loss: test.as_ref().map(|t| t.loss),
            stopped_early: state.stopped_early,
            seconds: state.seconds,
            dataset_digest: self.dataset_digest.clone(),
        };
        self.run.write_json(artifacts::REPORT, &report, on_event)?;
        Ok(report)
    }

    /// The best weights on the test split, when there is one (they are loaded into `trainee`).
    fn test_best_weights(
        &self,
        trainee: &mut Trainee,
        data: &RunData,
        features: Option<&FeatureCache>,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Option<Evaluation>> {
        if data.test.is_empty() {
            return Ok(None);
        }
        let best_path = self.run.path(artifacts::BEST_WEIGHTS);
        trainee
            .vs
            .load(&best_path)
            .map_err(|e| Error::artifact(&best_path, e.to_string()))?;
        trainee.sync_copy();
        let test = data.evaluate(trainee, features, &data.test);
        on_event(TrainEvent::Note {
            message: format!(
                "test accuracy {:.4} (loss {:.4}) on {} images, best weights",
                test.accuracy, test.loss, test.images
            ),
        });
        Ok(Some(test))
    }
}
