//! The dataset a spec names, scanned on this machine: by `validate` and `train --local`, and by
//! `submit` to build the manifest it ships.

use anyhow::Context;
use easel_dataset::{ScanOptions, ScanReport, SubsetRoots};
use easel_spec::{DataSources, ExperimentSpec};

/// Scans the folders/zips of a loaded spec (paths already absolute). Problems with single files
/// are in the report (`errors()` / `warnings()`); only a root that cannot be read at all fails.
pub fn scan_spec_data(spec: &ExperimentSpec) -> anyhow::Result<ScanReport> {
    let options = ScanOptions {
        max_image_pixels: spec.data.max_image_pixels,
        ..ScanOptions::default()
    };
    match spec
        .data
        .sources()
        .context("the spec names no dataset (data.path or data.train)")?
    {
        DataSources::ObjectStore { url } => anyhow::bail!(
            "the dataset {url} is in object storage: a worker reads it (`client submit`); \
             training on this machine needs a local folder"
        ),
        DataSources::Split { roots } => easel_dataset::scan(&roots, &options)
            .with_context(|| format!("cannot scan the dataset {}", list(&roots))),
        DataSources::Explicit {
            train,
            validation,
            test,
        } => {
            let roots = SubsetRoots {
                train: vec![train],
                validation: validation.into_iter().collect(),
                test: test.into_iter().collect(),
            };
            easel_dataset::scan_subsets(&roots, &options)
                .context("cannot scan the dataset's train/validation/test folders")
        }
    }
}

fn list(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
