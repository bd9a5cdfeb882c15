//! Easel's configuration files: `experiment.toml` (what to train) and `worker.toml` (how a worker
//! runs). Parsing denies unknown keys and reports every problem at once with its key path and
//! line/column. No libtorch and no async here.
//!
//! Any `deny_unknown_fields` serde type gets the same treatment through [`parse_toml`] /
//! [`load_toml`] and an implementation of [`Validate`].

mod document;
pub mod error;
pub mod executor;
pub mod experiment;
pub mod load;
mod messages;
pub mod outputs;
pub mod resolve;
pub mod sweep;
pub mod validate;

pub use error::{Position, Problem, SpecError, SpecErrors};
pub use experiment::*;
pub use load::{Parsed, Validate, load_toml, parse_toml, read_toml};
pub use resolve::{DataSources, load_experiment, object_store_url, parse_experiment, spec_folder};
pub use validate::{MAX_IMAGE_SIDE, MIN_IMAGE_SIDE};

pub mod worker;
