//! The decoded-dataset cache: every image of a manifest, decoded and resized once, stored as raw
//! u8 CHW pixels behind a small JSON header. Keyed by the manifest digest and the image size, so
//! a later epoch or a later run with the same data never decodes again.
//!
//! File layout: `MAGIC`, header length (u64 little-endian), header JSON, then `images * 3 * h * w`
//! bytes. Written to a temporary file and renamed, so a reader never sees half a file.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EASELU8\x01";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHeader {
    pub key: String,
    pub images: u64,
    pub height: u32,
    pub width: u32,
}

impl CacheHeader {
    fn pixel_bytes(&self) -> u64 {
        self.images * 3 * u64::from(self.height) * u64::from(self.width)
    }
}

/// blake3 of the dataset digest and the size, hex.
pub fn cache_key(dataset_digest: &str, height: u32, width: u32) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"easel decoded u8 chw v1\n");
    hasher.update(dataset_digest.as_bytes());
    hasher.update(format!("\n{height}x{width}").as_bytes());
    hasher.finalize().to_hex().to_string()
}

pub fn cache_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("decoded-{key}.u8"))
}

/// Reads a cache file made for `expected`; `Ok(None)` when absent or made for something else
/// (a damaged file is treated as absent and rebuilt).
pub fn read(path: &Path, expected: &CacheHeader) -> Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io(path, err)),
    };
    let mut prefix = [0u8; 16];
    if file.read_exact(&mut prefix).is_err() || &prefix[..8] != MAGIC {
        tracing::warn!(path = %path.display(), "decoded cache file unreadable; rebuilding");
        return Ok(None);
    }
    let header_len = u64::from_le_bytes(prefix[8..16].try_into().unwrap_or_default());
    if header_len > 1 << 20 {
        return Ok(None);
    }
    let mut header = vec![0u8; header_len as usize];
    if file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let Ok(header) = serde_json::from_slice::<CacheHeader>(&header) else {
        return Ok(None);
    };
    if &header != expected {
        return Ok(None);
    }
    let mut pixels = Vec::with_capacity(header.pixel_bytes() as usize);
    file.read_to_end(&mut pixels)
        .map_err(|e| Error::io(path, e))?;
    if pixels.len() as u64 != header.pixel_bytes() {
        tracing::warn!(path = %path.display(), "decoded cache file truncated; rebuilding");
        return Ok(None);
    }
    Ok(Some(pixels))
}

pub fn write(path: &Path, header: &CacheHeader, pixels: &[u8]) -> Result<()> {
    debug_assert_eq!(pixels.len() as u64, header.pixel_bytes());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let header_json = serde_json::to_vec(header).map_err(|e| Error::json("cache header", e))?;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
        file.write_all(MAGIC)?;
        file.write_all(&(header_json.len() as u64).to_le_bytes())?;
        file.write_all(&header_json)?;
        file.write_all(pixels)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::io(path, err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let header = CacheHeader {
            key: cache_key("abc", 2, 3),
            images: 2,
            height: 2,
            width: 3,
        };
        let path = cache_path(dir.path(), &header.key);
        let pixels: Vec<u8> = (0..36).collect();
        assert_eq!(read(&path, &header).unwrap(), None);
        write(&path, &header, &pixels).unwrap();
        assert_eq!(read(&path, &header).unwrap(), Some(pixels));
        let other = CacheHeader {
            images: 3,
            ..header.clone()
        };
        assert_eq!(read(&path, &other).unwrap(), None);
        assert_ne!(cache_key("abc", 2, 3), cache_key("abc", 3, 2));
    }
}
