//! What a run leaves in its run directory besides the checkpoint: its inputs first (`spec.toml`,
//! `manifest.json`, `classes.json`); after every epoch the metrics and the best and last
//! weights; at the end the test evaluation with the best weights, the plots, the mistakes on the
//! held-out images (`mistakes.json`), the page a person reads (`report.html`) and `report.json`,
//! written last.

use super::RunReport;
use super::data::RunData;
use super::feature_cache::FeatureCache;
use super::mistakes::{Mistakes, find_mistakes};
use super::trainee::Trainee;
use super::validation::{Scored, TopClasses};
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
    manifest: &'a Manifest,
    spec_text: String,
    classes: &'a [String],
    device: tch::Device,
    dataset_digest: String,
    /// What the machine costs an hour, when known.
    price_per_hour: Option<f64>,
}

impl<'a> RunOutputs<'a> {
    /// Writes the run's inputs into `run`, where the rest of its outputs will go.
    pub fn begin(
        run: &'a RunDir<'a>,
        spec: &'a ExperimentSpec,
        manifest: &'a Manifest,
        device: tch::Device,
        price_per_hour: Option<f64>,
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
            manifest,
            spec_text,
            classes: &manifest.classes,
            device,
            dataset_digest,
            price_per_hour,
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

    /// Test evaluation (with the best weights), plots, mistakes (from the best epoch's
    /// `best_validation` classes when this session has them), the page, then `report.json`.
    pub fn finish(
        &self,
        state: &CheckpointState,
        trainee: &mut Trainee,
        data: &RunData,
        features: Option<&FeatureCache>,
        best_validation: Option<&TopClasses>,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<RunReport> {
        let final_metrics = state.history.last().cloned().ok_or_else(|| {
            Error::artifact(self.run.path(artifacts::CHECKPOINT), "no epoch was trained")
        })?;
        let best_epoch = state.monitor.best_epoch.max(1);
        let best = state
            .history
            .get(best_epoch as usize - 1)
            .cloned()
            .unwrap_or_else(|| final_metrics.clone());
        let best_validation = if self.load_best_weights(trainee)? {
            best_validation
        } else {
            on_event(TrainEvent::Note {
                message: format!(
                    "no {}: the monitored metric never improved, so the last weights are evaluated",
                    artifacts::BEST_WEIGHTS
                ),
            });
            None
        };
        let scored_test = self.test(trainee, data, features, on_event);
        let test = scored_test.as_ref().map(|scored| &scored.evaluation);
        let confusion = test.map_or(&best.confusion, |t| &t.confusion);
        let confusion_of = match test {
            Some(test) => format!("the {} test images, best weights", test.images),
            None => format!(
                "the {} validation images at the best epoch ({best_epoch})",
                data.validation.len()
            ),
        };
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
            test_accuracy: test.map(|t| t.accuracy),
            test_loss: test.map(|t| t.loss),
            stopped_early: state.stopped_early,
            seconds: state.seconds,
            dataset_digest: self.dataset_digest.clone(),
        };
        let started = std::time::Instant::now();
        let known = [
            best_validation,
            scored_test.as_ref().map(|scored| &scored.top),
        ];
        let mistakes = find_mistakes(trainee, data, features, self.manifest, known)?;
        self.run.write_json(
            artifacts::MISTAKES,
            &mistakes.listing(self.classes),
            on_event,
        )?;
        let page = RunPageInputs {
            report: &report,
            history: &state.history,
            confusion: (confusion, &confusion_of),
            mistakes: &mistakes,
        };
        let bytes = self.write_page(&page, data, on_event)?;
        on_event(TrainEvent::Note {
            message: format!(
                "{} written in {:.2} s ({:.1} MB): {} of {} held-out images wrong",
                artifacts::REPORT_PAGE,
                started.elapsed().as_secs_f64(),
                bytes as f64 / 1e6,
                mistakes.wrong.len(),
                mistakes.examined
            ),
        });
        self.run.write_json(artifacts::REPORT, &report, on_event)?;
        Ok(report)
    }

    /// `report.html`: the run for a person (see `easel_report::RunPage`); returns its size.
    fn write_page(
        &self,
        page: &RunPageInputs,
        data: &RunData,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<usize> {
        let mut class_counts = vec![easel_report::ClassCounts::default(); self.classes.len()];
        let class_of = |index: i64| self.manifest.entries[index as usize].class as usize;
        for &index in &data.train {
            class_counts[class_of(index)].train += 1;
        }
        for &index in &data.validation {
            class_counts[class_of(index)].validation += 1;
        }
        for &index in &data.test {
            class_counts[class_of(index)].test += 1;
        }
        let environment = [
            ("Easel", env!("CARGO_PKG_VERSION").to_string()),
            ("libtorch", crate::runtime_info().libtorch_version),
            ("device", device_name(self.device)),
        ];
        let skipped = &self.manifest.skipped;
        let left_out_files: Vec<(String, String)> = (skipped.named_within_limit())
            .map(|file| (file.path.clone(), file.why()))
            .collect();
        let shown = page.mistakes.shown(data);
        let html = easel_report::RunPage {
            report: page.report,
            history: page.history,
            confusion: page.confusion.0,
            confusion_of: page.confusion.1,
            class_counts: &class_counts,
            skipped: &skipped.counts(),
            left_out_files: &left_out_files,
            price_per_hour: self.price_per_hour,
            spec_toml: &self.spec_text,
            environment: &environment,
            mistakes: &shown,
            images_examined: page.mistakes.examined,
            all_mistakes: &page.mistakes.pairs(),
        }
        .render();
        self.run
            .write(artifacts::REPORT_PAGE, html.as_bytes(), on_event)?;
        Ok(html.len())
    }

    /// Loads the best weights into `trainee` (and its bf16 copy) for the evaluations at the end;
    /// returns false, leaving the last weights, when there are none (a run whose monitored
    /// metric never improved, such as a loss that was NaN from the start).
    fn load_best_weights(&self, trainee: &mut Trainee) -> Result<bool> {
        let best_path = self.run.path(artifacts::BEST_WEIGHTS);
        if !best_path.is_file() {
            return Ok(false);
        }
        trainee
            .vs
            .load(&best_path)
            .map_err(|e| Error::artifact(&best_path, e.to_string()))?;
        trainee.sync_copy();
        Ok(true)
    }

    /// The best weights (loaded) on the test split, when there is one.
    fn test(
        &self,
        trainee: &Trainee,
        data: &RunData,
        features: Option<&FeatureCache>,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Option<Scored> {
        if data.test.is_empty() {
            return None;
        }
        let scored = data.evaluate(trainee, features, &data.test);
        let test = &scored.evaluation;
        on_event(TrainEvent::Note {
            message: format!(
                "test accuracy {:.4} (loss {:.4}) on {} images, best weights",
                test.accuracy, test.loss, test.images
            ),
        });
        Some(scored)
    }
}

/// What `report.html` shows besides the run's data and spec.
struct RunPageInputs<'a> {
    report: &'a RunReport,
    history: &'a [EpochMetrics],
    /// The confusion matrix shown, and whose it is.
    confusion: (&'a [Vec<u64>], &'a str),
    mistakes: &'a Mistakes,
}
