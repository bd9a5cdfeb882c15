//! Content addresses. Datasets, blobs, pretrained weights and artifacts are all named by the
//! blake3 of their bytes in lowercase hex; this crate is the one place that digest is computed,
//! and the one place the bytes a folder of them holds are counted ([`folder_bytes`]).
//! Files are read in a streaming fashion with blake3's own buffered reader (large enough for its
//! SIMD paths), never into memory whole.

use std::fs::File;
use std::io;
use std::path::Path;

/// blake3 of `bytes`, lowercase hex.
pub fn digest_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// blake3 of a file's content and its size in bytes, in one streaming read.
pub fn digest_file_sized(path: &Path) -> io::Result<(u64, String)> {
    let mut digester = Digester::default();
    digester.update_reader(File::open(path)?)?;
    Ok((digester.len(), digester.finish()))
}

/// blake3 of a file's content.
pub fn digest_file(path: &Path) -> io::Result<String> {
    digest_file_sized(path).map(|(_, digest)| digest)
}

/// True when the file at `path` exists with exactly `size` bytes and `digest` (a cheap size check
/// first, so a file of the wrong size is never read).
pub fn file_matches(path: &Path, size: u64, digest: &str) -> bool {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() && metadata.len() == size => {
            digest_file(path).is_ok_and(|actual| actual == digest)
        }
        _ => false,
    }
}

/// An incremental digest, for bytes that arrive in pieces (a download, a stream).
#[derive(Default)]
pub struct Digester {
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Digester {
    pub fn update(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        self.bytes += piece.len() as u64;
    }

    /// Everything `reader` gives, read in a streaming fashion (e.g. what an earlier, cut-off
    /// transfer left on disk).
    pub fn update_reader(&mut self, reader: impl io::Read) -> io::Result<()> {
        let mut counted = Counted {
            inner: reader,
            bytes: 0,
        };
        self.hasher.update_reader(&mut counted)?;
        self.bytes += counted.bytes;
        Ok(())
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The digest of everything seen, lowercase hex.
    pub fn finish(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

/// True for 64 lowercase hex characters. Digests arrive from the network and become file names,
/// so anything else is refused before it touches a path.
pub fn is_valid_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Bytes of regular files under `dir`, recursively (a missing folder holds none).
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_digest_is_the_digest_of_its_bytes_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Larger than blake3's read buffer, so the streaming path is exercised.
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let (size, digest) = digest_file_sized(&path).unwrap();
        assert_eq!(size, content.len() as u64);
        assert_eq!(digest, digest_bytes(&content));
        assert_eq!(digest_file(&path).unwrap(), digest);
        assert!(file_matches(&path, size, &digest));
        assert!(!file_matches(&path, size - 1, &digest));
        assert!(!file_matches(&path, size, &digest_bytes(b"other")));
        assert!(!file_matches(&dir.path().join("absent"), size, &digest));
    }

    #[test]
    fn pieces_digest_like_the_whole() {
        let mut digester = Digester::default();
        assert!(digester.is_empty());
        digester.update(b"hello ");
        digester.update(b"world");
        assert_eq!(digester.len(), 11);
        assert_eq!(digester.finish(), digest_bytes(b"hello world"));
    }

    #[test]
    fn only_lowercase_hex_of_the_right_length_is_a_digest() {
        assert!(is_valid_digest(&digest_bytes(b"x")));
        for bad in [
            "",
            "ABCDEF",
            &"g".repeat(64),
            &"a".repeat(63),
            "../../etc/passwd",
        ] {
            assert!(!is_valid_digest(bad), "{bad}");
        }
    }
}
