//! Easel's training engine: the only crate that links libtorch. Plain blocking code; callers run
//! it on a dedicated thread and stop it through a cancel flag.

pub mod events;

pub use events::*;
