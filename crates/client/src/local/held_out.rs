//! `client evaluate RUN_DIR DATA --split test|validation`: only the images the run held out of
//! training. The run's own `manifest.json` and `spec.toml` give its split (the same seeded,
//! stratified split the trainer drew, in `easel_dataset::split`); the images are found in DATA by
//! class, path below the root and blake3 digest, so a copy of the dataset elsewhere works as
//! well, and a file changed since the run does not pass for the one it held out.

use anyhow::{Context, bail};
use easel_dataset::{Manifest, ManifestEntry, Subset};
use easel_spec::{ExperimentSpec, outputs};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeldOut {
    /// The test split: never trained on, never used to pick the best epoch.
    Test,
    /// The validation split: never trained on, but it picked the best epoch.
    Validation,
}

impl HeldOut {
    pub fn name(self) -> &'static str {
        match self {
            HeldOut::Test => "test",
            HeldOut::Validation => "validation",
        }
    }

    fn subset(self) -> Subset {
        match self {
            HeldOut::Test => Subset::Test,
            HeldOut::Validation => Subset::Validation,
        }
    }
}

/// `scanned` cut to the images of the run in `run_dir` that its split put in `held_out`.
pub fn held_out_images(
    run_dir: &Path,
    held_out: HeldOut,
    scanned: &Manifest,
) -> anyhow::Result<Manifest> {
    let read = |name: &str| {
        let path = run_dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let spec: ExperimentSpec = toml::from_str(&read(outputs::SPEC)?).with_context(|| {
        format!(
            "{} is not a run's spec",
            run_dir.join(outputs::SPEC).display()
        )
    })?;
    let run_manifest = Manifest::from_json(&read(outputs::MANIFEST)?).with_context(|| {
        format!(
            "{} is not a manifest",
            run_dir.join(outputs::MANIFEST).display()
        )
    })?;
    let data = &spec.data;
    let split = easel_dataset::split(
        &run_manifest,
        data.validation_split,
        data.test_split,
        data.seed,
    )
    .context("cannot redraw the run's split")?;
    let indices = split.get(held_out.subset());
    if indices.is_empty() {
        bail!(
            "the run kept no {} images (its data.{}_split is 0): evaluate on a folder of new images instead",
            held_out.name(),
            held_out.name()
        );
    }
    let wanted: HashSet<Identity> = indices
        .iter()
        .map(|&i| key(&run_manifest, &run_manifest.entries[i]))
        .collect();
    let mut found = HashSet::new();
    let mut entries = Vec::new();
    for entry in &scanned.entries {
        let identity = key(scanned, entry);
        if wanted.contains(&identity) && found.insert(identity) {
            entries.push(entry.clone());
        }
    }
    if found.len() < wanted.len() {
        let missing = indices
            .iter()
            .map(|&i| &run_manifest.entries[i])
            .find(|entry| !found.contains(&key(&run_manifest, entry)))
            .map_or(String::new(), |entry| format!(" (first: {})", entry.path));
        bail!(
            "the data has {} of the run's {} {} images{missing}: give the folder the run was trained on",
            found.len(),
            wanted.len(),
            held_out.name()
        );
    }
    Ok(Manifest {
        classes: scanned.classes.clone(),
        entries,
        skipped: scanned.skipped.clone(),
    })
}

/// An image as the split knows it: class, path below its root, blake3 digest.
type Identity = (String, String, String);

fn key(manifest: &Manifest, entry: &ManifestEntry) -> Identity {
    (
        manifest.classes[entry.class as usize].clone(),
        entry.path.clone(),
        entry.digest.clone(),
    )
}
