//! The laptop commands, which run the engine here: `validate` (spec, dataset and a tiny
//! proof-of-concept training), `train --local`, `evaluate`, `predict` and `export`.

mod device;
pub mod evaluate;
pub mod export;
mod held_out;
pub mod predict;
pub mod train;
pub mod validate;
