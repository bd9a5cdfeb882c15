//! The decoded-dataset cache: every image of a manifest, decoded and resized once, stored as raw
//! u8 CHW pixels behind a small JSON header. Keyed by the manifest digest and the image size, so
//! a later epoch or a later run with the same data never decodes again.
//!
//! File layout: `MAGIC`, header length (u64 little-endian), header JSON, then `images * 3 * h * w`
//! bytes. A cache is written to a temporary file of its own (two jobs decoding the same data at
//! once never share one) and renamed, so a reader never sees half a file.
//!
//! Neither side holds the pixels in memory: a first decode writes each image at its place in the
//! file as it is decoded, and a reader maps the file (libtorch's `from_file`), so a dataset larger
//! than the host's memory is paged in from disk as batches touch it.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

const MAGIC: &[u8; 8] = b"EASELU8\x01";

/// Temporary files of this process get a fresh number each, beside the process id.
static TEMPORARY_SERIAL: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHeader {
    pub key: String,
    pub images: u64,
    pub height: u32,
    pub width: u32,
}

impl CacheHeader {
    pub fn pixel_bytes(&self) -> u64 {
        self.images * self.image_bytes()
    }

    pub fn image_bytes(&self) -> u64 {
        3 * u64::from(self.height) * u64::from(self.width)
    }

    fn shape(&self) -> [i64; 4] {
        [
            self.images as i64,
            3,
            i64::from(self.height),
            i64::from(self.width),
        ]
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::json("cache header", e))?;
        let mut prefix = MAGIC.to_vec();
        prefix.extend_from_slice(&(json.len() as u64).to_le_bytes());
        prefix.extend_from_slice(&json);
        Ok(prefix)
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

/// Held while one run builds a shared cache file (decoded images, a frozen backbone's
/// features): another run that needs the same file (a sweep's trials, started together) waits
/// for it and then reads what it wrote, so the work is done once. An advisory lock on `<cache>.lock`, released when dropped (or when its
/// process dies, so a killed decoder never blocks the next).
pub struct BuildLock {
    _file: File,
}

impl BuildLock {
    /// Waits until no other run decodes `cache_path`. `None` where the file system takes no
    /// locks: each run then decodes on its own, as before.
    pub fn acquire(cache_path: &Path) -> Option<BuildLock> {
        let path = sibling(cache_path, "lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|file| file.lock().map(|()| file));
        match file {
            Ok(file) => Some(BuildLock { _file: file }),
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "decode lock not taken");
                None
            }
        }
    }
}

/// Who writes a cache file: the run's owner and how it names itself (empty: nobody to name).
#[derive(Debug, Clone, Copy, Default)]
pub struct Author<'a> {
    pub owner: &'a str,
    pub label: &'a str,
}

impl Author<'_> {
    /// Who wrote the cache at `cache_path`, as this author may be told; `None` when it was
    /// this run itself, or nobody said.
    pub fn told_writer_of(&self, cache_path: &Path) -> Option<String> {
        writer_of(cache_path, self.owner).filter(|writer| writer != self.label)
    }
}

/// Which run wrote a cache file, and whose it is (`<cache>.by`: owner, then label), so a run
/// that reads it can say whose work it reuses. Best effort: a cache without one is a cache.
pub fn record_writer(cache_path: &Path, owner: &str, label: &str) {
    if !label.is_empty() {
        let _ = std::fs::write(sibling(cache_path, "by"), format!("{owner}\n{label}\n"));
    }
}

/// The run that wrote the cache, when it said, as `owner` may be told: a run of another owner
/// is "another run" (job ids say nothing about other users' work).
pub fn writer_of(cache_path: &Path, owner: &str) -> Option<String> {
    let text = std::fs::read_to_string(sibling(cache_path, "by")).ok()?;
    let (writer_owner, label) = text.split_once('\n')?;
    let label = label.trim();
    if label.is_empty() {
        None
    } else if writer_owner == owner {
        Some(label.to_owned())
    } else {
        Some("another run".to_owned())
    }
}

/// A temporary file beside `path`, this process's and this write's own.
pub(crate) fn temporary_sibling(path: &Path) -> PathBuf {
    sibling(
        path,
        &format!(
            "tmp-{}-{}",
            std::process::id(),
            TEMPORARY_SERIAL.fetch_add(1, Ordering::Relaxed)
        ),
    )
}

pub(crate) fn sibling(cache_path: &Path, extension: &str) -> PathBuf {
    let mut name = cache_path.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// Whether `name` (a file name in a cache folder) is a finished cache file: decoded images, or
/// a frozen backbone's features (`trainer::shared_features`).
pub fn is_cache_file(name: &str) -> bool {
    (name.starts_with("decoded-") && name.ends_with(".u8"))
        || (name.starts_with(FEATURES_PREFIX) && name.ends_with(FEATURES_SUFFIX))
}

/// Whether `name` is a temporary file a cache write left behind (its writer was killed).
pub fn is_temporary_file(name: &str) -> bool {
    (name.starts_with("decoded-") || name.starts_with(FEATURES_PREFIX)) && name.contains(".tmp-")
}

/// `features-<key>.bin`: a frozen backbone's features, shared by the runs that agree on them.
pub const FEATURES_PREFIX: &str = "features-";
pub const FEATURES_SUFFIX: &str = ".bin";

/// The cache's pixels `[N, 3, H, W]`, mapped from `path` when the file was made for `expected`;
/// `Ok(None)` when absent or made for something else (a damaged file is treated as absent and
/// rebuilt).
pub fn read(path: &Path, expected: &CacheHeader) -> Result<Option<Tensor>> {
    let mut file = match File::open(path) {
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
    let offset = 16 + header_len;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if file_len != offset + header.pixel_bytes() {
        tracing::warn!(path = %path.display(), "decoded cache file truncated; rebuilding");
        return Ok(None);
    }
    map_pixels(path, &mut file, &header, offset).map(Some)
}

/// The pixels of a whole cache file, mapped (or read, for a path libtorch cannot be handed).
fn map_pixels(path: &Path, file: &mut File, header: &CacheHeader, offset: u64) -> Result<Tensor> {
    let total = offset + header.pixel_bytes();
    let Some(name) = path.to_str() else {
        let mut pixels = vec![0u8; header.pixel_bytes() as usize];
        file.read_exact_at(&mut pixels, offset)
            .map_err(|e| Error::io(path, e))?;
        return Ok(Tensor::from_data_size(
            &pixels,
            &header.shape(),
            Kind::Uint8,
        ));
    };
    // A shared mapping: its pages are the page cache's, reclaimable under memory pressure and
    // never charged as private memory (a private writable mapping of a file larger than memory
    // plus swap is refused by the kernel's commit accounting). Nothing writes through it: batches
    // are gathered into fresh tensors.
    let whole = Tensor::f_from_file(name, true, total as i64, (Kind::Uint8, Device::Cpu))
        .map_err(|e| Error::Invalid(format!("cannot map {}: {e}", path.display())))?;
    Ok(whole
        .narrow(0, offset as i64, header.pixel_bytes() as i64)
        .view(header.shape()))
}

/// A cache file being written: its room taken on disk up front (a full disk is refused before
/// any decoding), each image written at its place, and renamed into place by `finish`. Dropped
/// unfinished, the temporary file is removed.
pub struct CacheWriter {
    path: PathBuf,
    temporary: PathBuf,
    file: Option<File>,
    header: CacheHeader,
    offset: u64,
}

impl CacheWriter {
    pub fn create(path: &Path, header: &CacheHeader) -> Result<CacheWriter> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let prefix = header.encode()?;
        let temporary = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            TEMPORARY_SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let total = prefix.len() as u64 + header.pixel_bytes();
        let file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        let mut writer = CacheWriter {
            path: path.to_path_buf(),
            temporary,
            file: Some(file),
            header: header.clone(),
            offset: prefix.len() as u64,
        };
        let file = writer
            .file
            .as_mut()
            .ok_or_else(|| Error::io(path, gone()))?;
        if let Err(err) = take_room(file, total) {
            return Err(if err.kind() == std::io::ErrorKind::StorageFull {
                Error::Invalid(format!(
                    "the decoded cache of {} images needs {} bytes in {} and the disk has not \
                     that much free",
                    header.images,
                    total,
                    dir.display()
                ))
            } else {
                Error::io(&writer.temporary, err)
            });
        }
        file.write_all(&prefix)
            .map_err(|e| Error::io(&writer.temporary, e))?;
        Ok(writer)
    }

    /// Writes image `index`'s CHW pixels (callable from many threads at once).
    pub fn write_image(&self, index: usize, chw: &[u8]) -> Result<()> {
        debug_assert_eq!(chw.len() as u64, self.header.image_bytes());
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| Error::io(&self.temporary, gone()))?;
        file.write_all_at(chw, self.offset + index as u64 * self.header.image_bytes())
            .map_err(|e| Error::io(&self.temporary, e))
    }

    /// Makes the file durable, renames it into place and maps its pixels.
    pub fn finish(mut self) -> Result<Tensor> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::io(&self.temporary, gone()))?;
        let placed = file
            .sync_all()
            .map_err(|e| Error::io(&self.temporary, e))
            .and_then(|()| {
                std::fs::rename(&self.temporary, &self.path).map_err(|e| Error::io(&self.path, e))
            });
        if let Err(err) = placed {
            // The temporary file would otherwise hold the cache's whole size until a restart.
            let _ = std::fs::remove_file(&self.temporary);
            return Err(err);
        }
        map_pixels(&self.path, &mut file, &self.header, self.offset)
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Takes `total` bytes of disk for `file` now, so a disk that cannot hold the cache fails here
/// rather than part-way through a long decode. A file system without `fallocate` gets a sparse
/// file of that length.
fn take_room(file: &File, total: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, total) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => file.set_len(total),
        Err(err) => Err(err.into()),
    }
}

fn gone() -> std::io::Error {
    std::io::Error::other("the cache file was already finished")
}

/// Writes a whole cache file from pixels in memory.
pub fn write(path: &Path, header: &CacheHeader, pixels: &[u8]) -> Result<()> {
    debug_assert_eq!(pixels.len() as u64, header.pixel_bytes());
    let writer = CacheWriter::create(path, header)?;
    let image_bytes = header.image_bytes().max(1) as usize;
    for (index, image) in pixels.chunks(image_bytes).enumerate() {
        writer.write_image(index, image)?;
    }
    writer.finish().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overwrite(path: &Path, bytes: &[u8]) {
        File::create(path).unwrap().write_all(bytes).unwrap();
    }

    fn header(images: u64) -> CacheHeader {
        CacheHeader {
            key: cache_key("abc", 2, 3),
            images,
            height: 2,
            width: 3,
        }
    }

    #[test]
    fn a_cache_names_its_writer_to_the_same_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decoded-x.u8");
        assert_eq!(writer_of(&path, "ana"), None);
        record_writer(&path, "ana", "job 20261206-000000-0001");
        assert_eq!(
            writer_of(&path, "ana").as_deref(),
            Some("job 20261206-000000-0001")
        );
        assert_eq!(writer_of(&path, "bo").as_deref(), Some("another run"));
        let author = Author {
            owner: "ana",
            label: "job 20261206-000000-0001",
        };
        assert_eq!(
            author.told_writer_of(&path),
            None,
            "a run is not told of itself"
        );
    }

    #[test]
    fn round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(2);
        let path = cache_path(dir.path(), &header.key);
        let pixels: Vec<u8> = (0..36).collect();
        assert!(read(&path, &header).unwrap().is_none());
        write(&path, &header, &pixels).unwrap();
        let mapped = read(&path, &header).unwrap().unwrap();
        assert_eq!(mapped.size(), vec![2, 3, 2, 3]);
        assert_eq!(Vec::<u8>::try_from(mapped.flatten(0, -1)).unwrap(), pixels);
        let other = CacheHeader {
            images: 3,
            ..header.clone()
        };
        assert!(read(&path, &other).unwrap().is_none());
        assert_ne!(cache_key("abc", 2, 3), cache_key("abc", 3, 2));
    }

    #[test]
    fn a_truncated_or_foreign_file_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(2);
        let path = cache_path(dir.path(), &header.key);
        write(&path, &header, &[7; 36]).unwrap();
        let whole = std::fs::read(&path).unwrap();
        overwrite(&path, &whole[..whole.len() - 1]);
        assert!(read(&path, &header).unwrap().is_none());
        overwrite(&path, b"not a cache file at all");
        assert!(read(&path, &header).unwrap().is_none());
    }

    #[test]
    fn two_writers_of_one_cache_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(2);
        let path = cache_path(dir.path(), &header.key);
        let first = CacheWriter::create(&path, &header).unwrap();
        let second = CacheWriter::create(&path, &header).unwrap();
        assert_ne!(first.temporary, second.temporary);
        for index in 0..2 {
            first.write_image(index, &[1; 18]).unwrap();
            second.write_image(index, &[2; 18]).unwrap();
        }
        let first_pixels = first.finish().unwrap();
        // The second finishes while the first's file is mapped: the first mapping is unchanged.
        let second_pixels = second.finish().unwrap();
        assert_eq!(first_pixels.sum(Kind::Int64).int64_value(&[]), 36);
        assert_eq!(second_pixels.sum(Kind::Int64).int64_value(&[]), 72);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(is_cache_file(&names[0]), "{names:?}");
    }

    #[test]
    fn an_unfinished_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(2);
        let path = cache_path(dir.path(), &header.key);
        let writer = CacheWriter::create(&path, &header).unwrap();
        writer.write_image(0, &[3; 18]).unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
