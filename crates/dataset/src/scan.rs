//! The scan: list every root, merge class folders across roots by name (case-insensitively),
//! read and digest every file in parallel, and sort the results into a manifest and a report.

use crate::error::{Error, Result};
use crate::inspect::{Inspected, inspect};
use crate::manifest::{Manifest, ManifestEntry, Subset};
use crate::report::{
    ClassMerge, ClassSource, DuplicateFile, DuplicateGroup, MissingClass, OversizedImage,
    RootSummary, ScanReport, SizeRange,
};
use crate::roots::{Candidate, FileProblem, RootListing, list_root};
use crate::source::LocalSource;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanOptions {
    /// Images with more pixels (width x height, from the header) are reported and left out.
    pub max_image_pixels: u64,
    /// Files larger than this are not read (reported as unreadable).
    pub max_file_bytes: u64,
    /// Keep one copy of identical files filed under the same class and subset.
    pub deduplicate: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_image_pixels: 40_000_000,
            max_file_bytes: 256 << 20,
            deduplicate: false,
        }
    }
}

/// Explicit train/validation/test roots (each may be several folders or archives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubsetRoots {
    pub train: Vec<PathBuf>,
    pub validation: Vec<PathBuf>,
    pub test: Vec<PathBuf>,
}

/// Scans one or more roots (folders or zip archives, each holding a folder per class); the
/// split into train/validation/test is left to [`crate::split()`].
pub fn scan(roots: &[PathBuf], options: &ScanOptions) -> Result<ScanReport> {
    let tagged: Vec<(PathBuf, Option<Subset>)> = roots.iter().map(|r| (r.clone(), None)).collect();
    scan_tagged(&tagged, options)
}

/// Scans explicit subset roots; every manifest entry carries the subset of its root.
pub fn scan_subsets(roots: &SubsetRoots, options: &ScanOptions) -> Result<ScanReport> {
    let mut tagged = Vec::new();
    for (subset, paths) in [
        (Subset::Train, &roots.train),
        (Subset::Validation, &roots.validation),
        (Subset::Test, &roots.test),
    ] {
        tagged.extend(paths.iter().map(|p| (p.clone(), Some(subset))));
    }
    scan_tagged(&tagged, options)
}

struct ClassInfo {
    /// The spelling of the first root that has this class.
    name: String,
    sources: Vec<(usize, String)>,
}

struct Found {
    root: usize,
    class_key: String,
    candidate: Candidate,
    digest: String,
    size: u64,
    width: u32,
    height: u32,
}

fn scan_tagged(roots: &[(PathBuf, Option<Subset>)], options: &ScanOptions) -> Result<ScanReport> {
    if roots.is_empty() {
        return Err(Error::NoRoots);
    }
    let listings: Vec<RootListing> = roots
        .iter()
        .map(|(path, _)| list_root(path))
        .collect::<Result<_>>()?;
    let labels = root_labels(roots.iter().map(|(path, _)| path.as_path()));
    let prefix_paths = roots.len() > 1;

    let mut classes: BTreeMap<String, ClassInfo> = BTreeMap::new();
    for (root, listing) in listings.iter().enumerate() {
        for folder in &listing.class_folders {
            let info = classes
                .entry(folder.to_lowercase())
                .or_insert_with(|| ClassInfo {
                    name: folder.clone(),
                    sources: Vec::new(),
                });
            info.sources.push((root, folder.clone()));
        }
    }

    let mut report = ScanReport {
        manifest: Manifest {
            classes: Vec::new(),
            entries: Vec::new(),
        },
        roots: Vec::new(),
        merged_classes: Vec::new(),
        empty_classes: Vec::new(),
        missing_from_subsets: Vec::new(),
        duplicates: Vec::new(),
        duplicates_dropped: 0,
        unreadable: Vec::new(),
        oversized: Vec::new(),
        rejected: Vec::new(),
        loose_files: Vec::new(),
        hidden_skipped: 0,
        non_images: Vec::new(),
        image_sizes: None,
        source: LocalSource::default(),
    };
    let mut candidates = Vec::new();
    for (root, listing) in listings.into_iter().enumerate() {
        report.roots.push(RootSummary {
            path: roots[root].0.display().to_string(),
            label: labels[root].clone(),
            subset: roots[root].1,
            stepped_into: listing.stepped_into,
            images: 0,
        });
        report.hidden_skipped += listing.hidden_skipped;
        report.loose_files.extend(listing.loose_files);
        report.rejected.extend(listing.rejected);
        candidates.extend(listing.candidates.into_iter().map(|c| (root, c)));
    }

    let inspected: Vec<Inspected> = candidates
        .par_iter()
        .map(|(_, candidate)| inspect(candidate, options.max_image_pixels, options.max_file_bytes))
        .collect();
    let mut found = Vec::new();
    for ((root, candidate), outcome) in candidates.into_iter().zip(inspected) {
        match outcome {
            Inspected::Image {
                digest,
                size,
                width,
                height,
            } => found.push(Found {
                root,
                class_key: candidate.class_folder.to_lowercase(),
                candidate,
                digest,
                size,
                width,
                height,
            }),
            Inspected::NotAnImage => report.non_images.push(candidate.display),
            Inspected::Unreadable { reason } => report.unreadable.push(FileProblem {
                path: candidate.display,
                reason,
            }),
            Inspected::Oversized { width, height } => report.oversized.push(OversizedImage {
                path: candidate.display,
                width,
                height,
            }),
        }
    }

    // Classes with at least one usable image, sorted by name.
    let mut class_names: Vec<(&String, &ClassInfo)> = classes.iter().collect();
    class_names.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let mut class_index = HashMap::new();
    for (key, info) in class_names {
        if found.iter().any(|f| &f.class_key == key) {
            class_index.insert(key.clone(), report.manifest.classes.len() as u32);
            report.manifest.classes.push(info.name.clone());
        } else {
            report.empty_classes.push(info.name.clone());
        }
        let distinct_roots = info.sources.windows(2).any(|w| w[0].0 != w[1].0);
        let respelled = info.sources.iter().any(|(_, folder)| folder != &info.name);
        let is_subset_scan = info
            .sources
            .iter()
            .any(|(root, _)| roots[*root].1.is_some());
        if respelled || (distinct_roots && !is_subset_scan) {
            report.merged_classes.push(ClassMerge {
                class: info.name.clone(),
                sources: info
                    .sources
                    .iter()
                    .map(|(root, folder)| ClassSource {
                        root: roots[*root].0.display().to_string(),
                        folder: folder.clone(),
                    })
                    .collect(),
            });
        }
    }

    let mut entries = Vec::with_capacity(found.len());
    let mut locations = HashMap::new();
    let mut by_digest: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, item) in found.iter().enumerate() {
        by_digest.entry(&item.digest).or_default().push(index);
    }
    let mut dropped = vec![false; found.len()];
    for (digest, copies) in &by_digest {
        if copies.len() < 2 {
            continue;
        }
        let mut files: Vec<(usize, DuplicateFile)> = copies
            .iter()
            .map(|&i| {
                let item = &found[i];
                (
                    i,
                    DuplicateFile {
                        path: item.candidate.display.clone(),
                        class: classes[&item.class_key].name.clone(),
                        subset: roots[item.root].1,
                    },
                )
            })
            .collect();
        files.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        if options.deduplicate {
            let mut kept = Vec::new();
            for (i, file) in &files {
                let key = (found[*i].class_key.as_str(), file.subset);
                if kept.contains(&key) {
                    dropped[*i] = true;
                    report.duplicates_dropped += 1;
                } else {
                    kept.push(key);
                }
            }
        }
        report.duplicates.push(DuplicateGroup {
            digest: (*digest).to_owned(),
            files: files.into_iter().map(|(_, f)| f).collect(),
        });
    }

    let mut sizes: Option<SizeRange> = None;
    for (item, dropped) in found.into_iter().zip(dropped) {
        if dropped {
            continue;
        }
        report.roots[item.root].images += 1;
        sizes = Some(match sizes {
            None => SizeRange {
                min_width: item.width,
                max_width: item.width,
                min_height: item.height,
                max_height: item.height,
            },
            Some(s) => SizeRange {
                min_width: s.min_width.min(item.width),
                max_width: s.max_width.max(item.width),
                min_height: s.min_height.min(item.height),
                max_height: s.max_height.max(item.height),
            },
        });
        let path = if prefix_paths {
            format!("{}/{}", labels[item.root], item.candidate.rel_path)
        } else {
            item.candidate.rel_path.clone()
        };
        entries.push(ManifestEntry {
            path,
            class: class_index[&item.class_key],
            size: item.size,
            digest: item.digest.clone(),
            subset: roots[item.root].1,
        });
        locations
            .entry(item.digest)
            .or_insert((item.candidate.location, item.candidate.display));
    }
    report.image_sizes = sizes;
    report.manifest.entries = entries;
    report.manifest.sort();
    report.missing_from_subsets = missing_from_subsets(&report.manifest, roots);
    report.source = LocalSource::new(locations, options.max_file_bytes);
    tracing::debug!(
        images = report.manifest.entries.len(),
        classes = report.manifest.classes.len(),
        "dataset scanned"
    );
    Ok(report)
}

fn missing_from_subsets(
    manifest: &Manifest,
    roots: &[(PathBuf, Option<Subset>)],
) -> Vec<MissingClass> {
    let mut missing = Vec::new();
    for subset in Subset::ALL {
        if !roots.iter().any(|(_, s)| *s == Some(subset)) {
            continue;
        }
        for (class_index, class) in manifest.classes.iter().enumerate() {
            let present = manifest
                .entries
                .iter()
                .any(|e| e.class as usize == class_index && e.subset == Some(subset));
            if !present {
                missing.push(MissingClass {
                    class: class.clone(),
                    subset,
                });
            }
        }
    }
    missing
}

/// Short, distinct names for the roots: their last path component, numbered when repeated.
fn root_labels<'a>(roots: impl Iterator<Item = &'a Path>) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for (index, root) in roots.enumerate() {
        let name = match root.file_name() {
            Some(name) => Some(name.to_owned()),
            None => root
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_owned())),
        };
        let base = name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("root{}", index + 1));
        let mut label = base.clone();
        let mut n = 2;
        while labels.contains(&label) {
            label = format!("{base}-{n}");
            n += 1;
        }
        labels.push(label);
    }
    labels
}
