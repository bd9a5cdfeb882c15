//! Folder-per-class datasets: scan, content-addressed manifest, stratified split. No libtorch.

pub mod manifest;

pub use manifest::*;
