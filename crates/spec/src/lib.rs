//! Easel's configuration files: `experiment.toml` (what to train) and `worker.toml` (how a worker
//! runs). Parsing denies unknown keys and reports every problem at once with its key path and
//! line/column. No libtorch and no async here.

pub mod experiment;

pub use experiment::*;

pub mod worker;
