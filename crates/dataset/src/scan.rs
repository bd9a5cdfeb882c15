//! The scan: list every root, merge class folders across roots by name (case-insensitively),
//! read and digest every file in parallel, and sort the results into a manifest and a report.

mod classes;
mod duplicates;

use crate::error::{Error, Result};
use crate::inspect::{Inspected, inspect};
use crate::manifest::{Manifest, ManifestEntry, Subset};
use crate::report::{MissingClass, OversizedImage, RootSummary, ScanReport, SizeRange};
use crate::roots::{Candidate, FileProblem, Location, RootListing, list_root};
use crate::skipped::{LeftOutFile, LeftOutReason, Skipped};
use crate::source::LocalSource;
use classes::ClassFolders;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

/// One root as the scan sees it.
struct TaggedRoot {
    path: PathBuf,
    /// The subset its images feed, when the spec names explicit subsets.
    subset: Option<Subset>,
    /// Prefixes its manifest paths when several roots are scanned together.
    label: String,
}

/// An image file that passed inspection, not yet filed into the manifest.
struct Found {
    /// Index of its root.
    root: usize,
    /// Its class folder's name in lowercase: the key classes merge under.
    class_key: String,
    candidate: Candidate,
    digest: String,
    size: u64,
    width: u32,
    height: u32,
    /// A duplicate copy left out because `ScanOptions::deduplicate` was set.
    dropped: bool,
}

/// Everything read from the roots, before it is sorted into the manifest and the report.
struct Scanned {
    roots: Vec<TaggedRoot>,
    classes: ClassFolders,
    found: Vec<Found>,
}

fn scan_tagged(roots: &[(PathBuf, Option<Subset>)], options: &ScanOptions) -> Result<ScanReport> {
    if roots.is_empty() {
        return Err(Error::NoRoots);
    }
    let listings: Vec<RootListing> = roots
        .iter()
        .map(|(path, _)| list_root(path))
        .collect::<Result<_>>()?;
    let roots = tag_roots(roots);
    let classes = ClassFolders::merge(&listings);
    let mut report = empty_report();
    let candidates = take_listings(&mut report, &roots, listings);
    let found = inspect_all(&mut report, candidates, options);
    let mut scanned = Scanned {
        roots,
        classes,
        found,
    };

    let class_index = classes::file_classes(&mut report, &scanned);
    duplicates::group(&mut report, &mut scanned, options.deduplicate);
    let Scanned { roots, found, .. } = scanned;
    let locations = add_entries(&mut report, &roots, found, &class_index);
    report.manifest.sort();
    report.manifest.skipped = skipped_of(&report);
    report.missing_from_subsets = missing_from_subsets(&report.manifest, &roots);
    report.source = LocalSource::new(locations, options.max_file_bytes);
    tracing::debug!(
        images = report.manifest.entries.len(),
        classes = report.manifest.classes.len(),
        "dataset scanned"
    );
    Ok(report)
}

/// The report's left-out files, counted and the first of each reason named, for the manifest
/// to carry.
fn skipped_of(report: &ScanReport) -> Skipped {
    let count = |n: usize| n as u64;
    let mut named = Vec::new();
    let plain = |path: &String| (path.clone(), None);
    name_first(
        &mut named,
        LeftOutReason::NotImage,
        report.non_images.iter().map(plain),
    );
    name_first(
        &mut named,
        LeftOutReason::Unreadable,
        (report.unreadable.iter()).map(|file| (file.path.clone(), Some(file.reason.clone()))),
    );
    name_first(
        &mut named,
        LeftOutReason::OverPixelLimit,
        (report.oversized.iter()).map(|image| {
            let size = format!("{}x{}", image.width, image.height);
            (image.path.clone(), Some(size))
        }),
    );
    name_first(
        &mut named,
        LeftOutReason::OutsideClassFolders,
        report.loose_files.iter().map(plain),
    );
    Skipped {
        hidden: count(report.hidden_skipped),
        not_images: count(report.non_images.len()),
        unreadable: count(report.unreadable.len()),
        over_pixel_limit: count(report.oversized.len()),
        outside_class_folders: count(report.loose_files.len()),
        duplicates: count(report.duplicates_dropped),
        named,
    }
}

/// Adds the first [`Skipped::NAMED_PER_REASON`] of `files` (path, detail) to `named`; the rest
/// are never copied.
fn name_first(
    named: &mut Vec<LeftOutFile>,
    reason: LeftOutReason,
    files: impl Iterator<Item = (String, Option<String>)>,
) {
    let first = files.take(Skipped::NAMED_PER_REASON);
    named.extend(first.map(|(path, detail)| LeftOutFile {
        reason,
        path,
        detail,
    }));
}

fn tag_roots(roots: &[(PathBuf, Option<Subset>)]) -> Vec<TaggedRoot> {
    let labels = root_labels(roots.iter().map(|(path, _)| path.as_path()));
    roots
        .iter()
        .zip(labels)
        .map(|((path, subset), label)| TaggedRoot {
            path: path.clone(),
            subset: *subset,
            label,
        })
        .collect()
}

fn empty_report() -> ScanReport {
    ScanReport {
        manifest: Manifest::new(Vec::new(), Vec::new()),
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
    }
}

/// Records what listing each root found beside its images (one summary per root, hidden,
/// loose and rejected files) and returns the files to inspect, each with its root's index.
fn take_listings(
    report: &mut ScanReport,
    roots: &[TaggedRoot],
    listings: Vec<RootListing>,
) -> Vec<(usize, Candidate)> {
    let mut candidates = Vec::new();
    for (index, (root, listing)) in roots.iter().zip(listings).enumerate() {
        report.roots.push(RootSummary {
            path: root.path.display().to_string(),
            label: root.label.clone(),
            subset: root.subset,
            stepped_into: listing.stepped_into,
            images: 0,
        });
        report.hidden_skipped += listing.hidden_skipped;
        report.loose_files.extend(listing.loose_files);
        report.rejected.extend(listing.rejected);
        candidates.extend(listing.candidates.into_iter().map(|c| (index, c)));
    }
    candidates
}

/// Reads and digests every candidate in parallel; the images are returned, every other file is
/// reported with why it was left out.
fn inspect_all(
    report: &mut ScanReport,
    candidates: Vec<(usize, Candidate)>,
    options: &ScanOptions,
) -> Vec<Found> {
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
                dropped: false,
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
    found
}

/// Lists every image but the duplicate copies left out in the manifest, counts them per root
/// and takes the range of their sizes. Returns where each digest's bytes are.
fn add_entries(
    report: &mut ScanReport,
    roots: &[TaggedRoot],
    found: Vec<Found>,
    class_index: &HashMap<String, u32>,
) -> HashMap<String, (Location, String)> {
    let prefix_paths = roots.len() > 1;
    let mut locations = HashMap::new();
    report.manifest.entries.reserve(found.len());
    for item in found.into_iter().filter(|item| !item.dropped) {
        let root = &roots[item.root];
        report.roots[item.root].images += 1;
        report.image_sizes = Some(match report.image_sizes {
            None => SizeRange::of(item.width, item.height),
            Some(range) => range.including(item.width, item.height),
        });
        let path = if prefix_paths {
            format!("{}/{}", root.label, item.candidate.rel_path)
        } else {
            item.candidate.rel_path.clone()
        };
        report.manifest.entries.push(ManifestEntry {
            path,
            class: class_index[&item.class_key],
            size: item.size,
            digest: item.digest.clone(),
            subset: root.subset,
        });
        locations
            .entry(item.digest)
            .or_insert((item.candidate.location, item.candidate.display));
    }
    locations
}

fn missing_from_subsets(manifest: &Manifest, roots: &[TaggedRoot]) -> Vec<MissingClass> {
    let mut missing = Vec::new();
    for subset in Subset::ALL {
        if !roots.iter().any(|root| root.subset == Some(subset)) {
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
