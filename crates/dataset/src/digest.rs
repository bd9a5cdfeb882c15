//! Content digests and the digest-addressed blob layout the worker stores datasets in.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub use easel_digest::{digest_bytes, is_valid_digest};

/// blake3 of a file's content, read in a streaming fashion; errors name the file.
pub fn digest_file(path: &Path) -> Result<String> {
    easel_digest::digest_file(path).map_err(|e| Error::io(path, e))
}

/// Where a blob lives in a blob store folder: `<dir>/<digest[0..2]>/<digest>`. The two-character
/// fan-out keeps any one folder small for datasets of hundreds of thousands of files.
pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    if !is_valid_digest(digest) {
        return Err(Error::InvalidDigest {
            digest: digest.to_owned(),
        });
    }
    Ok(dir.join(&digest[..2]).join(digest))
}

/// The folder of a blob store that damaged blobs are moved to. The worker empties it, and
/// stops counting their bytes against its upload quota, the next time it reads that count.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Moves the blob `digest`, found not to hold its digest's content (torn by a power loss, a bad
/// disk), out of the store into its quarantine folder: it then counts as missing, and the next
/// submit that needs it uploads it again. Returns where it went.
pub fn quarantine_blob(dir: &Path, digest: &str) -> Result<PathBuf> {
    let path = blob_path(dir, digest)?;
    let quarantine = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&quarantine).map_err(|e| Error::io(&quarantine, e))?;
    let moved = quarantine.join(digest);
    std::fs::rename(&path, &moved).map_err(|e| Error::io(&path, e))?;
    tracing::warn!(blob = %digest, to = %moved.display(), "damaged blob moved aside");
    Ok(moved)
}

/// Checks that the file at `path` has content digest `digest`.
pub fn verify_blob(path: &Path, digest: &str) -> Result<()> {
    if !is_valid_digest(digest) {
        return Err(Error::InvalidDigest {
            digest: digest.to_owned(),
        });
    }
    let actual = digest_file(path)?;
    if actual != digest {
        return Err(Error::DigestMismatch {
            path: path.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_path_fans_out_by_first_two_characters() {
        let digest = digest_bytes(b"abc");
        let path = blob_path(Path::new("/blobs"), &digest).unwrap();
        assert_eq!(path, Path::new("/blobs").join(&digest[..2]).join(&digest));
    }

    #[test]
    fn blob_path_refuses_anything_but_a_digest() {
        for bad in [
            "../../etc/passwd",
            "",
            "ABCDEF",
            &"g".repeat(64),
            &"a".repeat(63),
        ] {
            let err = blob_path(Path::new("/blobs"), bad).unwrap_err();
            assert!(matches!(err, Error::InvalidDigest { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn verify_blob_detects_changed_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"hello").unwrap();
        verify_blob(&path, &digest_bytes(b"hello")).unwrap();
        let err = verify_blob(&path, &digest_bytes(b"hellO")).unwrap_err();
        assert!(err.to_string().contains("content digest is"), "{err}");
        assert!(err.to_string().contains("blob"), "{err}");
    }
}
