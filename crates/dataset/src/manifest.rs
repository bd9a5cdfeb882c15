//! The dataset manifest: what a training run sees, independent of where the bytes live.
//! Entries are content-addressed (blake3), so the worker stores blobs by digest and a second
//! upload of the same data sends nothing.

use crate::skipped::Skipped;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to its root, '/'-separated (for zips: the path inside the archive). When
    /// several roots are scanned together it starts with the root's label (its last path
    /// component, numbered if repeated), e.g. `extra.zip/drawings/1.png`, so paths stay distinct.
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Class names, sorted; an entry's `class` indexes this.
    pub classes: Vec<String>,
    /// Sorted by (class, path) so the manifest and its digest are stable.
    pub entries: Vec<ManifestEntry>,
    /// What the scan that made it left out, counted, the first files of each reason named (its
    /// report names them all); a run's report page shows it. Not part of the digest: the same images are the same dataset.
    #[serde(default, skip_serializing_if = "Skipped::is_none")]
    pub skipped: Skipped,
}

/// Two manifests are equal when they list the same images in the same classes, whatever their
/// scans left out (as their digests are).
impl PartialEq for Manifest {
    fn eq(&self, other: &Self) -> bool {
        self.classes == other.classes && self.entries == other.entries
    }
}

impl Eq for Manifest {}

/// Where an entry's bytes come from: the user's folders/zips on the laptop, the worker's
/// digest-addressed blob store on the GPU machine.
pub trait ImageSource: Send + Sync {
    fn read(&self, entry: &ManifestEntry) -> std::io::Result<Vec<u8>>;
}

impl Subset {
    pub const ALL: [Subset; 3] = [Subset::Train, Subset::Validation, Subset::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Subset::Train => "train",
            Subset::Validation => "validation",
            Subset::Test => "test",
        }
    }

    fn tag(subset: Option<Subset>) -> u8 {
        match subset {
            None => 0,
            Some(Subset::Train) => 1,
            Some(Subset::Validation) => 2,
            Some(Subset::Test) => 3,
        }
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ManifestEntry {
    fn sort_key(&self) -> (u32, &str, &str, u8, u64) {
        (
            self.class,
            &self.path,
            &self.digest,
            Subset::tag(self.subset),
            self.size,
        )
    }
}

/// Prefix of the canonical serialization; bump it if the canonical form ever changes.
const CANONICAL_VERSION: &[u8] = b"easel-manifest/v1\0";

impl Manifest {
    /// A manifest with its entries in canonical order.
    pub fn new(classes: Vec<String>, entries: Vec<ManifestEntry>) -> Self {
        let mut manifest = Manifest {
            classes,
            entries,
            skipped: Skipped::default(),
        };
        manifest.sort();
        manifest
    }

    /// Puts entries in canonical order: by class, then path (then digest, subset, size, so
    /// that even entries with equal paths from different roots have one order).
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }

    /// blake3 over a canonical binary form (length-prefixed fields, entries in canonical
    /// order), lowercase hex. Independent of JSON formatting and of entry order, so the same
    /// data gives the same digest on every machine; the decoded-image cache is keyed by it.
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(CANONICAL_VERSION);
        hasher.update(&(self.classes.len() as u64).to_le_bytes());
        for class in &self.classes {
            hash_str(&mut hasher, class);
        }
        let mut entries: Vec<&ManifestEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        hasher.update(&(entries.len() as u64).to_le_bytes());
        for entry in entries {
            hash_str(&mut hasher, &entry.path);
            hasher.update(&entry.class.to_le_bytes());
            hasher.update(&entry.size.to_le_bytes());
            hash_str(&mut hasher, &entry.digest);
            hasher.update(&[Subset::tag(entry.subset)]);
        }
        hasher.finalize().to_hex().to_string()
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The manifest as it travels to a worker: compact JSON, gzipped. Paths share long
    /// prefixes, so a million-image manifest shrinks from ~180 MB of pretty JSON to ~50 MB (the
    /// 32 random bytes of each digest are most of what is left).
    pub fn to_blob(&self) -> Vec<u8> {
        use std::io::Write;
        // Serializing plain strings and integers, and writing to memory, cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 3),
            flate2::Compression::fast(),
        );
        let _ = encoder.write_all(&json);
        encoder.finish().unwrap_or_default()
    }

    /// Parses and checks a manifest (see [`Manifest::validate`]).
    pub fn from_json(text: &str) -> crate::Result<Self> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|source| crate::Error::ManifestJson { source })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Class names unique (case-insensitively), every entry's class in range, every digest a
    /// blake3 hex digest, no empty paths, the left-out files' names within bounds. Manifests
    /// arrive over the network; check them once.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |reason: String| Err(crate::Error::InvalidManifest { reason });
        let mut seen = std::collections::HashSet::new();
        for class in &self.classes {
            if class.is_empty() {
                return invalid("empty class name".to_owned());
            }
            if !seen.insert(class.to_lowercase()) {
                return invalid(format!("class `{class}` is listed twice"));
            }
        }
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.class as usize >= self.classes.len() {
                return invalid(format!(
                    "entry {index} (`{}`) has class {} but there are {} classes",
                    entry.path,
                    entry.class,
                    self.classes.len()
                ));
            }
            if entry.path.is_empty() {
                return invalid(format!("entry {index} has an empty path"));
            }
            if !crate::digest::is_valid_digest(&entry.digest) {
                return invalid(format!(
                    "entry {index} (`{}`) has digest `{}`, not a blake3 hex digest",
                    entry.path, entry.digest
                ));
            }
        }
        self.skipped.validate().map_or(Ok(()), invalid)
    }

    /// Images per class, indexed like `classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for entry in &self.entries {
            if let Some(count) = counts.get_mut(entry.class as usize) {
                *count += 1;
            }
        }
        counts
    }

    /// Sum of all entries' sizes (duplicates counted each time).
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Distinct blobs (digest, size), sorted by digest: what has to be uploaded once.
    pub fn unique_blobs(&self) -> Vec<(&str, u64)> {
        let mut blobs: Vec<(&str, u64)> = self
            .entries
            .iter()
            .map(|e| (e.digest.as_str(), e.size))
            .collect();
        blobs.sort_unstable();
        blobs.dedup_by(|a, b| a.0 == b.0);
        blobs
    }

    /// True when entries carry explicit train/validation/test subsets.
    pub fn has_explicit_subsets(&self) -> bool {
        self.entries.iter().any(|e| e.subset.is_some())
    }

    /// A manifest holding only the entries at `indices` (same classes).
    pub fn select(&self, indices: &[usize]) -> Manifest {
        Manifest::new(
            self.classes.clone(),
            indices
                .iter()
                .filter_map(|&i| self.entries.get(i).cloned())
                .collect(),
        )
    }
}

fn hash_str(hasher: &mut blake3::Hasher, text: &str) {
    hasher.update(&(text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}
/// The gzip header's first two bytes: a manifest blob starting with them is gzipped.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The JSON text of a manifest blob: gzipped ([`Manifest::to_blob`]) or plain JSON (what
/// earlier clients sent). Inflating stops past `max_json_bytes`, so a small blob cannot expand
/// into more memory than the worker allows for a manifest.
pub fn manifest_blob_json(blob: &[u8], max_json_bytes: u64) -> crate::Result<String> {
    use std::io::Read;
    let invalid = |reason: String| crate::Error::InvalidManifest { reason };
    if !blob.starts_with(&GZIP_MAGIC) {
        return String::from_utf8(blob.to_vec())
            .map_err(|_| invalid("neither gzip nor UTF-8 JSON".into()));
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(blob)
        .take(max_json_bytes.saturating_add(1))
        .read_to_end(&mut json)
        .map_err(|e| invalid(format!("gzip: {e}")))?;
    if json.len() as u64 > max_json_bytes {
        return Err(invalid(format!(
            "inflates to more than {max_json_bytes} bytes of JSON, the most this worker takes"
        )));
    }
    String::from_utf8(json).map_err(|_| invalid("inflates to text that is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(images: usize) -> Manifest {
        let classes = vec!["impressionism".to_string(), "baroque".to_string()];
        let entries = (0..images)
            .map(|i| ManifestEntry {
                path: format!("{}/painting_{i:07}.jpg", classes[i % 2]),
                class: (i % 2) as u32,
                size: 40_000 + i as u64,
                digest: easel_digest::digest_bytes(&i.to_le_bytes()),
                subset: None,
            })
            .collect();
        Manifest::new(classes, entries)
    }

    #[test]
    fn a_manifest_blob_round_trips_and_is_a_fraction_of_the_json() {
        let manifest = manifest(10_000);
        let blob = manifest.to_blob();
        let json = manifest_blob_json(&blob, 1 << 30).unwrap();
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
        let pretty = manifest.to_json().len();
        assert!(
            blob.len() * 3 < pretty,
            "{} bytes gzipped against {pretty} of JSON",
            blob.len()
        );
        // What earlier clients sent: plain JSON.
        let plain = manifest_blob_json(manifest.to_json().as_bytes(), 1 << 30).unwrap();
        assert_eq!(Manifest::from_json(&plain).unwrap(), manifest);
    }

    #[test]
    fn a_blob_inflating_past_the_limit_or_not_a_manifest_is_refused() {
        use std::io::Write;
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![b' '; 8 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        let refused = manifest_blob_json(&bomb, 1 << 20).unwrap_err().to_string();
        assert!(
            refused.contains("inflates to more than 1048576 bytes"),
            "{refused}"
        );
        let torn = &manifest(10).to_blob()[..20];
        assert!(
            manifest_blob_json(torn, 1 << 20)
                .unwrap_err()
                .to_string()
                .contains("gzip")
        );
        assert!(manifest_blob_json(&[0xff, 0xfe, 0x00], 1 << 20).is_err());
    }
}
