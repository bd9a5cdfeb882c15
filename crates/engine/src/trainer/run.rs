//! A whole run, in order: the spec checked, the data split, the model's fit on the device
//! checked, the run's inputs written, the images decoded, the model built and resumed from its
//! checkpoint, the epochs trained by the learner, and the run's last outputs written.

use super::checkpointer::Checkpointer;
use super::data::DataSource;
use super::learner::{Fit, Learner, TrainingPlan};
use super::model_setup::InitialModel;
use super::monitor::MetricMonitor;
use super::outputs::RunOutputs;
use super::settings::Settings;
use super::{TrainJob, TrainOutcome};
use crate::Result;
use crate::artifacts::RunDir;
use crate::checkpoint::{self, CheckpointState};
use crate::compute_precision::ComputePrecision;
use crate::events::TrainEvent;
use crate::fits::{RunShape, check_fits};
use crate::pipeline::DecodeTarget;
use easel_spec::ExperimentSpec;
use std::path::Path;

/// Trains `job.spec` on `job.manifest`, resuming from `run_dir/checkpoints/last.ckpt` when it was
/// made for the same spec and dataset. Events go to `on_event` as they happen.
pub fn train(job: &TrainJob, on_event: &mut dyn FnMut(TrainEvent)) -> Result<TrainOutcome> {
    let label = run_label(job.run_dir);
    let data = DataSource {
        manifest: job.manifest,
        images: job.source,
        cache_dir: job.cache_dir,
        run_label: &label,
        owner: job.owner,
    };
    let outcome = run(job, data, on_event);
    // A worker training in-process runs job after job: the next may need other sizes.
    easel_aten::release_cpu_block_cache();
    outcome
}

fn run(
    job: &TrainJob,
    data: DataSource,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome> {
    let (spec, device, run_dir, cancel) = (job.spec, job.device, job.run_dir, job.cancel);
    let settings = Settings::check(spec)?;
    let device = device.resolve()?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let split = data.split(&spec.data)?;
    // Before the decode, which can take minutes: a model that cannot fit fails now.
    check_fits(
        &RunShape {
            model: &spec.model,
            optimizer: spec.train.optimizer,
            precision: spec.train.precision,
            num_classes: split.num_classes,
            image_hw: settings.image_hw(),
            batch_size: settings.batch_size as i64,
        },
        device,
    )?;
    let run_dir = RunDir::new(run_dir)?;
    let outputs = RunOutputs::begin(
        &run_dir,
        spec,
        data.manifest,
        device,
        job.price_per_hour,
        on_event,
    )?;
    let target = DecodeTarget {
        height: settings.height,
        width: settings.width,
        max_pixels: spec.data.max_image_pixels,
    };
    let data = split.load(target, settings.batch_size, device, on_event)?;

    let model = InitialModel::build(
        spec,
        data.num_classes,
        settings.image_hw(),
        device,
        on_event,
    )?;
    let checkpointer = Checkpointer::new(&run_dir);
    let identity = run_identity(spec, outputs.dataset_digest())?;
    let (mut state, saved_optimizer) = match checkpointer.resume(&identity, &model.vs, on_event)? {
        Some(resumed) => (resumed.state, Some(resumed.optimizer)),
        None => (fresh_state(identity, spec), None),
    };
    let precision = ComputePrecision::resolve(spec.train.precision, device);
    on_event(TrainEvent::Note {
        message: format!("computing in {}", precision.reason),
    });
    let trainee = model.into_trainee(spec, &precision, state.backbone_frozen, saved_optimizer)?;

    let plan = TrainingPlan::of(spec, &settings);
    let mut learner = Learner::new(trainee, &data, plan, checkpointer, &outputs, cancel);
    match learner.fit(&mut state, on_event)? {
        Fit::Cancelled { completed_epochs } => Ok(TrainOutcome::Cancelled { completed_epochs }),
        Fit::Completed => {
            let mut trained = learner.into_trained();
            let report = outputs.finish(
                &state,
                &mut trained.trainee,
                &data,
                trained.features.as_ref(),
                trained.best_validation.as_ref(),
                on_event,
            )?;
            Ok(TrainOutcome::Completed(report))
        }
    }
}

/// How a run names itself to others: `job <id>` for a worker's job (its run directory is
/// `<jobs>/<id>/run`), else its run directory.
fn run_label(run_dir: &Path) -> String {
    let parent_name = || run_dir.parent()?.file_name()?.to_str();
    match (run_dir.file_name().and_then(|n| n.to_str()), parent_name()) {
        (Some("run"), Some(job)) => format!("job {job}"),
        _ => format!("the run in {}", run_dir.display()),
    }
}

/// What a checkpoint must match to be resumed (see [`checkpoint::run_identity`]).
fn run_identity(spec: &ExperimentSpec, dataset_digest: &str) -> Result<String> {
    // Hashed once the loader has read the file, so a missing file gets its clearer error.
    let pretrained_digest = match crate::weights::pretrained_file(spec)? {
        Some(path) => Some(checkpoint::file_digest(path)?),
        None => None,
    };
    Ok(checkpoint::run_identity(
        spec,
        dataset_digest,
        pretrained_digest.as_deref(),
    ))
}

/// The state of a run that has trained no epoch yet.
fn fresh_state(identity: String, spec: &ExperimentSpec) -> CheckpointState {
    let mut fresh = checkpoint::new_state(identity);
    fresh.monitor = MetricMonitor::new(spec.train.early_stopping.as_ref());
    fresh.backbone_frozen = spec.model.freeze_backbone;
    fresh
}
