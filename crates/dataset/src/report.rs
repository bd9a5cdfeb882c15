//! What a scan found: the manifest of usable images, and every problem with the file it is about.

use crate::manifest::{Manifest, Subset};
use crate::roots::FileProblem;
use crate::source::LocalSource;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The usable images: readable, within the pixel limit, inside their roots.
    pub manifest: Manifest,
    pub roots: Vec<RootSummary>,
    /// Classes whose folders came from several roots or were spelled differently.
    pub merged_classes: Vec<ClassMerge>,
    /// Class folders without a single usable image (left out of the manifest's classes).
    pub empty_classes: Vec<String>,
    /// With explicit subsets: classes that have no image in one of the subsets given.
    pub missing_from_subsets: Vec<MissingClass>,
    /// Files with identical content.
    pub duplicates: Vec<DuplicateGroup>,
    /// Duplicate copies left out because `ScanOptions::deduplicate` was set.
    pub duplicates_dropped: usize,
    /// Image files whose header could not be read (corrupt, truncated, unsupported format).
    pub unreadable: Vec<FileProblem>,
    /// Images over `ScanOptions::max_image_pixels` (possible decompression bombs).
    pub oversized: Vec<OversizedImage>,
    /// Paths refused because they lead outside their root.
    pub rejected: Vec<FileProblem>,
    /// Files lying beside the class folders instead of inside one.
    pub loose_files: Vec<String>,
    /// Hidden files and folders skipped (a hidden folder counts once).
    pub hidden_skipped: usize,
    /// Files that are not images (by extension and content), skipped.
    pub non_images: Vec<String>,
    /// Range of image dimensions among usable images.
    pub image_sizes: Option<SizeRange>,
    #[serde(skip)]
    pub(crate) source: LocalSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootSummary {
    pub path: String,
    /// Prefix of this root's manifest paths when several roots are scanned together.
    pub label: String,
    pub subset: Option<Subset>,
    /// Folder(s) inside the root that were stepped into to reach the class folders.
    pub stepped_into: Option<String>,
    pub images: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassMerge {
    pub class: String,
    pub sources: Vec<ClassSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassSource {
    pub root: String,
    pub folder: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingClass {
    pub class: String,
    pub subset: Subset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateGroup {
    pub digest: String,
    /// Full paths of the copies, with the class each is filed under.
    pub files: Vec<DuplicateFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateFile {
    pub path: String,
    pub class: String,
    pub subset: Option<Subset>,
}

impl DuplicateGroup {
    /// The same picture filed under two classes: a labelling conflict.
    pub fn crosses_classes(&self) -> bool {
        self.files
            .windows(2)
            .any(|w| !w[0].class.eq_ignore_ascii_case(&w[1].class))
    }

    /// The same picture in two subsets: validation or test data leaks into training.
    pub fn crosses_subsets(&self) -> bool {
        self.files.windows(2).any(|w| w[0].subset != w[1].subset)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OversizedImage {
    pub path: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeRange {
    pub min_width: u32,
    pub max_width: u32,
    pub min_height: u32,
    pub max_height: u32,
}

impl SizeRange {
    /// The range of a single image.
    pub(crate) fn of(width: u32, height: u32) -> Self {
        SizeRange {
            min_width: width,
            max_width: width,
            min_height: height,
            max_height: height,
        }
    }

    /// The range widened to take in one more image.
    pub(crate) fn including(self, width: u32, height: u32) -> Self {
        SizeRange {
            min_width: self.min_width.min(width),
            max_width: self.max_width.max(width),
            min_height: self.min_height.min(height),
            max_height: self.max_height.max(height),
        }
    }
}

impl ScanReport {
    /// Reads the manifest's images from the scanned folders and archives.
    pub fn source(&self) -> &LocalSource {
        &self.source
    }

    /// Problems that make the dataset unfit to train on.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let classes = self.manifest.classes.len();
        if classes < 2 {
            errors.push(format!(
                "a classifier needs at least 2 classes with images; found {classes}{}",
                if self.loose_files.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} images lie outside class folders: is the root one level too deep?)",
                        self.loose_files.len()
                    )
                }
            ));
        }
        for problem in &self.rejected {
            errors.push(format!("{}: {}", problem.path, problem.reason));
        }
        errors
    }

    /// Problems worth telling the user about that still leave a usable dataset.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for merge in &self.merged_classes {
            warnings.push(merge.to_string());
        }
        for class in &self.empty_classes {
            warnings.push(format!(
                "class `{class}` has no usable images and is left out"
            ));
        }
        for missing in &self.missing_from_subsets {
            warnings.push(format!(
                "class `{}` has no images in the {} set",
                missing.class, missing.subset
            ));
        }
        for group in &self.duplicates {
            let paths: Vec<String> = group
                .files
                .iter()
                .map(|f| format!("{} [{}]", f.path, f.class))
                .collect();
            let what = if group.crosses_classes() {
                "the same image is filed under different classes"
            } else if group.crosses_subsets() {
                "the same image is in more than one subset"
            } else {
                "duplicate images"
            };
            warnings.push(format!("{what}: {}", paths.join(", ")));
        }
        for problem in &self.unreadable {
            warnings.push(format!(
                "{}: unreadable image, skipped: {}",
                problem.path, problem.reason
            ));
        }
        for image in &self.oversized {
            warnings.push(format!(
                "{}: {}x{} pixels is over the limit, skipped",
                image.path, image.width, image.height
            ));
        }
        for path in &self.loose_files {
            warnings.push(format!("{path}: not inside a class folder, skipped"));
        }
        warnings
    }
}

impl fmt::Display for ClassMerge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .sources
            .iter()
            .map(|s| format!("`{}` from {}", s.folder, s.root))
            .collect();
        write!(
            f,
            "class `{}` merged from {}",
            self.class,
            parts.join(" and ")
        )
    }
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.manifest.class_counts();
        writeln!(
            f,
            "{} images in {} classes, {} bytes",
            self.manifest.entries.len(),
            self.manifest.classes.len(),
            self.manifest.total_bytes()
        )?;
        for (class, count) in self.manifest.classes.iter().zip(counts) {
            writeln!(f, "  {class}: {count}")?;
        }
        if let Some(sizes) = self.image_sizes {
            writeln!(
                f,
                "image sizes: width {}..{}, height {}..{}",
                sizes.min_width, sizes.max_width, sizes.min_height, sizes.max_height
            )?;
        }
        writeln!(
            f,
            "skipped: {} hidden, {} not images, {} unreadable, {} over the pixel limit",
            self.hidden_skipped,
            self.non_images.len(),
            self.unreadable.len(),
            self.oversized.len()
        )?;
        for error in self.errors() {
            writeln!(f, "error: {error}")?;
        }
        for warning in self.warnings() {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}
