//! A zip archive that many threads read at once. The central directory is parsed once; each read
//! clones the archive handle (an `Arc` plus a file offset) and reads with positional I/O, so
//! threads neither share a seek position nor take a lock.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zip::ZipArchive;

#[derive(Clone)]
pub(crate) struct SharedArchive {
    path: PathBuf,
    archive: ZipArchive<PositionalFile>,
}

impl std::fmt::Debug for SharedArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedArchive")
            .field("path", &self.path)
            .finish()
    }
}

impl SharedArchive {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let reader = PositionalFile {
            file: Arc::new(file),
            pos: 0,
            len,
        };
        let archive = ZipArchive::new(reader).map_err(|source| Error::Zip {
            path: path.to_owned(),
            source,
        })?;
        Ok(SharedArchive {
            path: path.to_owned(),
            archive,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.archive.len()
    }

    /// Name and kind of entry `index` (without reading its data).
    pub fn entry_info(&self, index: usize) -> io::Result<EntryInfo> {
        let mut archive = self.archive.clone();
        let entry = archive.by_index_raw(index).map_err(zip_to_io)?;
        Ok(EntryInfo {
            // Archives written on Windows sometimes use backslashes as separators.
            name: entry.name().replace('\\', "/"),
            is_dir: entry.is_dir(),
            is_symlink: entry.is_symlink(),
        })
    }

    /// The decompressed bytes of entry `index`; the zip reader checks its CRC at the end.
    /// Refuses entries that declare more than `max_bytes` (zip bombs), and reads no further
    /// than declared.
    pub fn read(&self, index: usize, max_bytes: u64) -> io::Result<Vec<u8>> {
        let mut archive = self.archive.clone();
        let entry = archive.by_index(index).map_err(zip_to_io)?;
        let size = entry.size();
        if size > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry declares {size} bytes, more than the limit of {max_bytes}"),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.take(size.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry holds {} bytes but declares {size}", bytes.len()),
            ));
        }
        Ok(bytes)
    }
}

pub(crate) struct EntryInfo {
    pub name: String,
    pub is_dir: bool,
    pub is_symlink: bool,
}

fn zip_to_io(error: zip::result::ZipError) -> io::Error {
    match error {
        zip::result::ZipError::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// A file handle whose clones share the open file but keep their own position.
#[derive(Clone)]
struct PositionalFile {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl Read for PositionalFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = read_at(&self.file, buf, self.pos)?;
        self.pos += read as u64;
        Ok(read)
    }
}

impl Seek for PositionalFile {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let new_pos = match target {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = new_pos.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}
