//! `[executor]` in worker.toml: where a worker's jobs train. `local` (the default) starts each
//! job's training process on the worker's own machine; `slurm` submits each job to a Slurm
//! cluster with `sbatch`, the worker running where the Slurm commands are and its data dir on
//! the filesystem the compute nodes share.

use serde::{Deserialize, Serialize};

use crate::error::Problem;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    #[serde(default)]
    pub kind: ExecutorKind,
    #[serde(default)]
    pub slurm: SlurmConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// A training process on this machine, one per training slot.
    #[default]
    Local,
    /// One Slurm job per Easel job; Slurm places and queues them.
    Slurm,
}

/// How each job is submitted to Slurm (`sbatch` options; empty: the cluster's default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub qos: String,
    /// `--time`, e.g. `"04:00:00"`.
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub constraint: String,
    /// GPUs each job asks for (`--gres=gpu:N`); 0 asks for none (a CPU job).
    #[serde(default = "default_gpus_per_job")]
    pub gpus_per_job: u32,
    /// Passed to `sbatch` as they are, after Easel's own options.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Seconds between looks at a job's state (`squeue`) and output.
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
    /// Seconds before the time limit at which Slurm signals the training process, so it
    /// checkpoints and the worker submits it again to go on from there.
    #[serde(default = "default_signal_seconds")]
    pub signal_before_end_seconds: u32,
    /// Times a job that stopped without finishing (time limit, preemption without requeue) is
    /// submitted again from its checkpoint before it fails.
    #[serde(default = "default_resubmits")]
    pub max_resubmits: u32,
    /// Where `sbatch`, `squeue`, `scontrol` and `scancel` are; empty: on the PATH.
    #[serde(default)]
    pub bin_dir: String,
}

fn default_gpus_per_job() -> u32 {
    1
}
fn default_poll_seconds() -> u64 {
    2
}
fn default_signal_seconds() -> u32 {
    120
}
fn default_resubmits() -> u32 {
    3
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: String::new(),
            account: String::new(),
            qos: String::new(),
            time: String::new(),
            constraint: String::new(),
            gpus_per_job: default_gpus_per_job(),
            extra_args: Vec::new(),
            poll_seconds: default_poll_seconds(),
            signal_before_end_seconds: default_signal_seconds(),
            max_resubmits: default_resubmits(),
            bin_dir: String::new(),
        }
    }
}

impl ExecutorConfig {
    /// Every problem with the values, each with its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let slurm = &self.slurm;
        if slurm.poll_seconds == 0 {
            problems.push(Problem::new("executor.slurm.poll_seconds", "must be > 0"));
        }
        for (key, value) in [
            ("partition", &slurm.partition),
            ("account", &slurm.account),
            ("qos", &slurm.qos),
            ("time", &slurm.time),
            ("constraint", &slurm.constraint),
        ] {
            if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(Problem::new(
                    format!("executor.slurm.{key}"),
                    format!("`{value}` holds a space or a control character"),
                ));
            }
        }
        problems
    }
}
