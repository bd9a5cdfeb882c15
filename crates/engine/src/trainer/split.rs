//! Which manifest entries train, validate and test: the dataset crate's stratified, seeded split
//! (explicit subsets respected), so `client validate` and the trainer agree.

use crate::{Error, Result};
use easel_dataset::Manifest;

pub use easel_dataset::Split as SplitIndices;

pub fn split_manifest(
    manifest: &Manifest,
    validation_split: f64,
    test_split: f64,
    seed: u64,
) -> Result<SplitIndices> {
    easel_dataset::split(manifest, validation_split, test_split, seed).map_err(|e| {
        Error::Invalid(format!(
            "data split (data.validation_split / data.test_split): {e}"
        ))
    })
}
