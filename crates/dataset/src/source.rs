//! Where a training run reads image bytes from: the user's folders and archives (laptop), or the
//! worker's digest-addressed blob store. Both check the bytes against the manifest's digest, so
//! a file edited after the scan, or a damaged blob, fails loudly instead of training on it.

use crate::digest::{blob_path, digest_bytes, quarantine_blob};
use crate::inspect::read_all;
use crate::manifest::{ImageSource, Manifest, ManifestEntry};
use crate::roots::Location;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads the images a scan found, by content digest (copies of the same content are
/// interchangeable). Cheap to clone; zip archives stay open and are read from many threads.
#[derive(Debug, Clone, Default)]
pub struct LocalSource {
    by_digest: Arc<HashMap<String, (Location, String)>>,
    max_file_bytes: u64,
}

impl LocalSource {
    pub(crate) fn new(by_digest: HashMap<String, (Location, String)>, max_file_bytes: u64) -> Self {
        LocalSource {
            by_digest: Arc::new(by_digest),
            max_file_bytes,
        }
    }

    /// The files a scan of the single folder `root` found, as `manifest` lists them (each at
    /// `root/<entry path>`): another process reads what a scan found without scanning again.
    pub fn for_folder(root: &Path, manifest: &Manifest, max_file_bytes: u64) -> Self {
        let by_digest = manifest
            .entries
            .iter()
            .map(|entry| {
                let path = root.join(&entry.path);
                let display = path.display().to_string();
                (entry.digest.clone(), (Location::File(path), display))
            })
            .collect();
        LocalSource::new(by_digest, max_file_bytes)
    }

    /// Number of distinct images this source can read.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Reads a blob by digest, checked against it.
    pub fn read_digest(&self, digest: &str) -> io::Result<Vec<u8>> {
        let (location, display) = self.lookup(digest)?;
        let bytes = read_all(location, self.max_file_bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("{display}: {e}")))?;
        check_digest(&bytes, digest, display)?;
        Ok(bytes)
    }

    /// Opens a blob by digest to read in pieces (an upload streams large files instead of
    /// holding them whole); unlike `read_digest`, the caller checks the digest of what it read.
    /// Zip entries are read whole, as the archive cannot be shared by several open readers.
    pub fn open_digest(&self, digest: &str) -> io::Result<Box<dyn io::Read + Send>> {
        let (location, display) = self.lookup(digest)?;
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{display}: {e}"));
        match location {
            Location::File(path) => Ok(Box::new(std::fs::File::open(path).map_err(named)?)),
            Location::ZipEntry { .. } => Ok(Box::new(io::Cursor::new(
                read_all(location, self.max_file_bytes).map_err(named)?,
            ))),
        }
    }

    fn lookup(&self, digest: &str) -> io::Result<&(Location, String)> {
        self.by_digest.get(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no scanned file has digest {digest}"),
            )
        })
    }

    /// Full path of the file holding `digest`, for messages.
    pub fn display_path(&self, digest: &str) -> Option<&str> {
        self.by_digest
            .get(digest)
            .map(|(_, display)| display.as_str())
    }
}

impl ImageSource for LocalSource {
    fn read(&self, entry: &ManifestEntry) -> io::Result<Vec<u8>> {
        self.read_digest(&entry.digest).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound && self.display_path(&entry.digest).is_none() {
                io::Error::new(
                    e.kind(),
                    format!("{}: not among the scanned files", entry.path),
                )
            } else {
                e
            }
        })
    }
}

/// The worker's blob store: `<dir>/<digest[0..2]>/<digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobStoreSource {
    pub dir: PathBuf,
}

impl BlobStoreSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BlobStoreSource { dir: dir.into() }
    }
}

impl ImageSource for BlobStoreSource {
    fn read(&self, entry: &ManifestEntry) -> io::Result<Vec<u8>> {
        let path = blob_path(&self.dir, &entry.digest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let bytes = std::fs::read(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} (blob of `{}`): {e}", path.display(), entry.path),
            )
        })?;
        if let Err(damaged) = check_digest(&bytes, &entry.digest, &path.display().to_string()) {
            // Left in place it would count as present forever, and every job using it fail.
            let moved = quarantine_blob(&self.dir, &entry.digest)
                .map(|_| "it was moved aside; submitting again uploads it again")
                .unwrap_or("it could not be moved aside");
            return Err(io::Error::new(
                damaged.kind(),
                format!(
                    "blob of `{}` damaged on the worker: {damaged}; {moved}",
                    entry.path
                ),
            ));
        }
        Ok(bytes)
    }
}

fn check_digest(bytes: &[u8], expected: &str, display: &str) -> io::Result<()> {
    let actual = digest_bytes(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{display}: content changed: digest is {actual}, expected {expected}"),
        ))
    }
}
