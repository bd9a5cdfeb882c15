//! The laptop commands, which run the engine here: `validate` (spec, dataset and a tiny
//! proof-of-concept training), `train --local`, `evaluate` and `predict`.

mod device;
pub mod evaluate;
pub mod predict;
pub mod train;
pub mod validate;
