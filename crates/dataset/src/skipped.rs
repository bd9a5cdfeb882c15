//! What a scan left out of its manifest: counted by reason, and the first few files of each
//! reason named, so that the run's page on the worker can say which files they were.

use serde::{Deserialize, Serialize};

/// Files a scan left out of its manifest, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Skipped {
    pub hidden: u64,
    pub not_images: u64,
    pub unreadable: u64,
    pub over_pixel_limit: u64,
    /// Beside the class folders instead of inside one.
    pub outside_class_folders: u64,
    /// Copies of another image's content, left out because the scan was told to.
    pub duplicates: u64,
    /// The first [`Skipped::NAMED_PER_REASON`] files of each reason but hidden and duplicate
    /// (a hidden file was hidden on purpose; a duplicate's content is in the data).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named: Vec<LeftOutFile>,
}

/// Why a named file was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftOutReason {
    NotImage,
    Unreadable,
    OverPixelLimit,
    OutsideClassFolders,
}

impl LeftOutReason {
    pub fn describe(self) -> &'static str {
        match self {
            LeftOutReason::NotImage => "not an image",
            LeftOutReason::Unreadable => "unreadable",
            LeftOutReason::OverPixelLimit => "over the pixel limit",
            LeftOutReason::OutsideClassFolders => "outside the class folders",
        }
    }
}

/// One file a scan left out, as its root sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOutFile {
    pub reason: LeftOutReason,
    pub path: String,
    /// What was wrong with it, where the scan says more than the reason ("truncated JPEG",
    /// "9000x9000").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl LeftOutFile {
    /// Why it was left out, as a person reads it: "unreadable: bad image header".
    pub fn why(&self) -> String {
        let reason = self.reason.describe();
        match &self.detail {
            Some(detail) => format!("{reason}: {detail}"),
            None => reason.to_string(),
        }
    }
}

impl Skipped {
    /// How many files of each reason a manifest names: enough to find the pattern (a stray
    /// `.DS_Store` copy, a folder of PDFs), few enough that a large dataset's manifest stays small.
    pub const NAMED_PER_REASON: usize = 10;

    /// Most files a manifest may name, all reasons together: far more than a scan names, few
    /// enough that what a manifest names cannot swell the page written from it.
    pub const MAX_NAMED: usize = 1_000;
    /// Longest path or detail of a named file, in bytes.
    pub const MAX_NAMED_TEXT_BYTES: usize = 4_096;

    /// Why the named files are out of bounds, if they are.
    pub fn validate(&self) -> Option<String> {
        if self.named.len() > Self::MAX_NAMED {
            return Some(format!(
                "it names {} left-out files; at most {} are allowed",
                self.named.len(),
                Self::MAX_NAMED
            ));
        }
        let too_long = |text: &str| text.len() > Self::MAX_NAMED_TEXT_BYTES;
        let (index, _) = self.named.iter().enumerate().find(|(_, file)| {
            too_long(&file.path) || file.detail.as_deref().is_some_and(too_long)
        })?;
        Some(format!(
            "left-out file {index} has a path or detail over {} bytes",
            Self::MAX_NAMED_TEXT_BYTES
        ))
    }

    /// (why, how many) for each reason with any files, in a fixed order.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        [
            ("hidden", self.hidden),
            ("not images", self.not_images),
            ("unreadable", self.unreadable),
            ("over the pixel limit", self.over_pixel_limit),
            ("outside the class folders", self.outside_class_folders),
            ("duplicates", self.duplicates),
        ]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .collect()
    }

    pub fn is_none(&self) -> bool {
        *self == Skipped::default()
    }

    /// The named files, at most [`Skipped::NAMED_PER_REASON`] of each reason (a manifest from
    /// elsewhere may name more).
    pub fn named_within_limit(&self) -> impl Iterator<Item = &LeftOutFile> {
        let mut seen = std::collections::HashMap::<LeftOutReason, usize>::new();
        self.named.iter().filter(move |file| {
            let count = seen.entry(file.reason).or_default();
            *count += 1;
            *count <= Self::NAMED_PER_REASON
        })
    }
}
