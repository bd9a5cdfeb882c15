//! The dataset manifest: what a training run sees, independent of where the bytes live.
//! Entries are content-addressed (blake3), so the worker stores blobs by digest and a second
//! upload of the same data sends nothing.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to its root, '/'-separated (for zips: the path inside the archive).
    pub path: String,
    /// Index into `Manifest::classes`.
    pub class: u32,
    pub size: u64,
    /// blake3 of the file's bytes, lowercase hex.
    pub digest: String,
    /// Which subset this image belongs to when the data spec names explicit train/validation/test
    /// roots; `None` when the split is drawn by seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<Subset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    Train,
    Validation,
    Test,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Class names, sorted; an entry's `class` indexes this.
    pub classes: Vec<String>,
    /// Sorted by (class, path) so the manifest and its digest are stable.
    pub entries: Vec<ManifestEntry>,
}

/// Where an entry's bytes come from: the user's folders/zips on the laptop, the worker's
/// digest-addressed blob store on the GPU machine.
pub trait ImageSource: Send + Sync {
    fn read(&self, entry: &ManifestEntry) -> std::io::Result<Vec<u8>>;
}
