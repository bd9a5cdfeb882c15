//! ONNX models of Easel's classifiers: ONNX's own messages, generated from `proto/onnx/onnx.proto`
//! by prost ([`proto`]), and [`ClassifierGraph`], which lays out the chain of layers Easel's models
//! are (convolution, batch norm, ReLU, max pool, flatten or average pool, dense layers) as ONNX
//! nodes with their weights as initializers, ending in the class probabilities.

/// ONNX's messages (`package onnx`), generated at build time.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

mod graph;

pub use graph::{ClassifierGraph, Weights};

/// The operator set the graphs use: ONNX 1.12's (opset 17), read by every ONNX Runtime since 1.12
/// and by the other runtimes people deploy with; every operator used here is older than it.
pub const OPSET: i64 = 17;

/// The IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;
