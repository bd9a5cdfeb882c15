//! Folder-per-class datasets: scan, content-addressed manifest, stratified split. No libtorch.
//!
//! - [`scan`] / [`scan_subsets`] read folders and zip archives into a [`ScanReport`]: the
//!   [`Manifest`] of usable images plus every problem found, and a [`LocalSource`] to read them.
//! - [`split()`] / [`stratified_subset`] pick train/validation/test indices by seed.
//! - [`BlobStoreSource`] reads the same manifest from a worker's digest-addressed blob folder.

mod digest;
mod error;
mod filetype;
mod inspect;
pub mod manifest;
mod report;
mod roots;
mod scan;
mod skipped;
mod source;
pub mod split;
mod zip_archive;

pub use digest::{
    QUARANTINE_DIR, blob_path, digest_bytes, digest_file, is_valid_digest, quarantine_blob,
    verify_blob,
};
pub use error::{Error, Result};
pub use manifest::*;
pub use report::{
    ClassMerge, ClassSource, DuplicateFile, DuplicateGroup, MissingClass, OversizedImage,
    RootSummary, ScanReport, SizeRange,
};
pub use roots::FileProblem;
pub use scan::{ScanOptions, SubsetRoots, scan, scan_subsets};
pub use skipped::{LeftOutFile, LeftOutReason, Skipped};
pub use source::{BlobStoreSource, LocalSource};
pub use split::{Split, split, stratified_subset, stratified_subset_of};
