//! Reads and writes a run's resumable checkpoint (`checkpoints/last.ckpt`, the format is in
//! [`crate::checkpoint`]): what a run resumes from, and the trainee saved after an epoch.

use super::optimizer::Optimizer;
use super::trainee::Trainee;
use crate::artifacts::{self, RunDir};
use crate::checkpoint::{self, CheckpointState, MODEL_PREFIX, OPTIMIZER_PREFIX};
use crate::events::TrainEvent;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tch::Tensor;
use tch::nn::VarStore;

pub struct Checkpointer<'a> {
    run: &'a RunDir<'a>,
}

/// A checkpoint made for this run, its model already copied into the run's variables.
pub struct Resumed {
    pub state: CheckpointState,
    pub optimizer: SavedOptimizer,
}

/// The optimizer's buffers and step counts from a checkpoint, for the optimizer built after it
/// was read.
pub struct SavedOptimizer {
    steps: BTreeMap<String, u64>,
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
}

impl<'a> Checkpointer<'a> {
    pub fn new(run: &'a RunDir<'a>) -> Self {
        Checkpointer { run }
    }

    /// The checkpoint to continue from, when there is one made for `identity` (see
    /// [`checkpoint::run_identity`]); its model variables are copied into `vs`. A checkpoint of
    /// another spec or dataset, or an unreadable one, is noted and left for a fresh start.
    pub fn resume(
        &self,
        identity: &str,
        vs: &VarStore,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Option<Resumed>> {
        let path = self.run.path(artifacts::CHECKPOINT);
        if !path.exists() {
            return Ok(None);
        }
        match checkpoint::read(&path) {
            Ok((state, tensors)) if state.identity == identity => {
                checkpoint::load_variables(vs, &tensors, MODEL_PREFIX, &path)?;
                let optimizer = SavedOptimizer {
                    steps: state.optimizer_steps.clone(),
                    tensors: tensors
                        .into_iter()
                        .filter_map(|(name, tensor)| {
                            Some((name.strip_prefix(OPTIMIZER_PREFIX)?.to_string(), tensor))
                        })
                        .collect(),
                    path,
                };
                Ok(Some(Resumed { state, optimizer }))
            }
            Ok(_) => {
                on_event(TrainEvent::Note {
                    message: format!(
                        "{} was made for another spec or dataset; starting afresh",
                        artifacts::CHECKPOINT
                    ),
                });
                Ok(None)
            }
            Err(err) => {
                tracing::warn!(error = %err, "checkpoint unreadable; starting afresh");
                on_event(TrainEvent::Note {
                    message: format!("ignoring unreadable checkpoint: {err}"),
                });
                Ok(None)
            }
        }
    }

    /// Saves `state` with the trainee's variables and optimizer state, and announces the file.
    pub fn save(
        &self,
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
        checkpoint::write(
            &self.run.path(artifacts::CHECKPOINT),
            &state,
            &model,
            &optimizer,
        )?;
        on_event(TrainEvent::CheckpointWritten {
            epoch: state.epoch,
            name: artifacts::CHECKPOINT.to_string(),
        });
        self.run.announce(artifacts::CHECKPOINT, on_event)
    }
}

impl SavedOptimizer {
    pub fn restore_into(self, optimizer: &mut Optimizer) -> Result<()> {
        optimizer
            .restore(&self.steps, &self.tensors)
            .map_err(|why| Error::artifact(&self.path, why))
    }
}
