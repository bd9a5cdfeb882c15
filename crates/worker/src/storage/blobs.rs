//! Dataset blobs by content digest, shared by every job: `<data>/blobs/<digest[0..2]>/<digest>`.
//!
//! Uploads commit chunk by chunk into `<data>/blobs/partial/<digest>`, with the committed length
//! in `<digest>.offset` (written after the chunk's bytes, by rename), so a cut-off upload resumes
//! from the last whole chunk and a torn write past the committed offset is discarded. A blob
//! becomes visible only after its whole content matched its blake3 digest.
//!
//! Every new blob is checked against the upload budget (`space.rs`) before its first byte is
//! written, and again whenever a chunk declares another size than its blob holds; a disk that
//! fills up mid-blob discards that blob's partial and says so. At start, partials untouched for
//! a week are removed and the rest hold the bytes they wrote, so no byte on disk escapes the
//! quota or the free-disk floor across a restart. Blobs found damaged (here, or by a training
//! process reading the store) are moved to the quarantine folder, which is emptied, and their
//! bytes uncounted, whenever the budget is read.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::storage::space::{Available, UploadBudget, human_bytes, is_disk_full};
use easel_digest::folder_bytes;

pub struct Chunk {
    pub digest: String,
    pub total_size: u64,
    pub offset: u64,
    pub data: Vec<u8>,
    pub crc32c: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub committed_offset: u64,
    pub complete: bool,
    pub bytes_written: u64,
}

/// A partial upload untouched this long is taken as abandoned and removed at the next start
/// (a client resuming within a week finds its bytes still there).
const ABANDONED_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the worker's config allows uploads (`[upload]`).
#[derive(Debug, Clone, Copy)]
pub struct BlobLimits {
    pub max_chunk_bytes: u64,
    pub max_blob_bytes: u64,
    /// 0: no quota.
    pub max_stored_bytes: u64,
    pub min_free_bytes: u64,
}

pub struct BlobStore {
    dir: PathBuf,
    max_chunk_bytes: u64,
    max_blob_bytes: u64,
    budget: UploadBudget,
    /// One writer per digest at a time.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl BlobStore {
    pub fn open(dir: PathBuf, limits: BlobLimits) -> Result<Self> {
        let partial = dir.join("partial");
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        // Its bytes are in no count yet: the stored bytes are counted below, without them.
        empty_quarantine(&dir.join(easel_dataset::QUARANTINE_DIR));
        // Only a quota needs the bytes held: counted once here (a walk of the folder, long for
        // millions of blobs, so skipped without one), then kept up to date as blobs come and go.
        let stored = if limits.max_stored_bytes > 0 {
            folder_bytes(&dir).saturating_sub(folder_bytes(&partial))
        } else {
            0
        };
        let budget = UploadBudget::new(
            dir.clone(),
            limits.max_stored_bytes,
            limits.min_free_bytes,
            stored,
        );
        let store = BlobStore {
            dir,
            max_chunk_bytes: limits.max_chunk_bytes,
            max_blob_bytes: limits.max_blob_bytes,
            budget,
            locks: Mutex::default(),
        };
        store.expire_abandoned(ABANDONED_AFTER);
        store.hold_partials_on_disk();
        sweep_unrenamed_wholes(store.dir.clone(), SystemTime::now());
        Ok(store)
    }

    /// Drops partial uploads nobody has added to for `after`: a client that gave up leaves its
    /// bytes behind, and they would otherwise hold the disk forever.
    fn expire_abandoned(&self, after: Duration) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("partial")) else {
            return;
        };
        let mut latest: HashMap<String, SystemTime> = HashMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = name.split('.').next().unwrap_or_default().to_owned();
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            let newest = latest.entry(digest).or_insert(modified);
            *newest = (*newest).max(modified);
        }
        for (digest, modified) in latest {
            let idle = SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default();
            if idle > after && easel_digest::is_valid_digest(&digest) {
                tracing::info!(blob = %digest, idle_hours = idle.as_secs() / 3600, "abandoned partial upload removed");
                self.discard(&digest);
                remove_if_present(
                    &self
                        .dir
                        .join("partial")
                        .join(format!("{digest}.offset.tmp")),
                );
            }
        }
    }

    /// Holds the bytes of each partial upload left from before this start (a read of the
    /// partial folder alone): without it a restart would forget them, and a client could
    /// restart the worker and upload as much again. Their offset files, a few bytes each, are
    /// not counted (nor are they while the upload runs).
    fn hold_partials_on_disk(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("partial")) else {
            return;
        };
        let (mut partials, mut bytes) = (0u64, 0u64);
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(digest) = name.to_str().filter(|n| easel_digest::is_valid_digest(n)) else {
                continue;
            };
            let written = entry.metadata().map_or(0, |meta| meta.len());
            self.budget.hold_written(digest, written);
            partials += 1;
            bytes += written;
        }
        if partials > 0 {
            tracing::info!(
                partials,
                bytes,
                "partial uploads found; their bytes count against the upload limits"
            );
        }
    }

    /// Deletes the blobs moved to the quarantine folder, by this process or by a training
    /// process reading the store (`easel_dataset::quarantine_blob`), and stops counting them as
    /// stored. Done each time the budget is read, so the count never holds a blob that left the
    /// store, whoever moved it; the folder is nearly always empty or missing (one read).
    fn reclaim_quarantined(&self) {
        let freed = empty_quarantine(&self.dir.join(easel_dataset::QUARANTINE_DIR));
        if freed > 0 {
            self.budget.removed(freed);
        }
    }

    /// Holds `size` bytes for blob `digest` (see `UploadBudget::hold`). Every chunk asks, so
    /// the quarantine folder is read only when the room seems short: what it frees may be what
    /// the blob needs.
    fn hold(&self, digest: &str, size: u64) -> Result<()> {
        self.budget.hold(digest, size).or_else(|_| {
            self.reclaim_quarantined();
            self.budget.hold(digest, size)
        })
    }

    /// Lets uploads take room from `caches` when the disk is short (see `UploadBudget`).
    pub fn give_way(&self, caches: Arc<dyn crate::storage::space::Reclaimable>) {
        self.budget.give_way(caches);
    }

    /// What uploads may add now, and which limit binds.
    pub fn available(&self) -> Result<Available> {
        self.reclaim_quarantined();
        self.budget.available()
    }

    /// Deletes a stored blob; returns the bytes freed (0 when it was not there).
    pub fn remove(&self, digest: &str) -> Result<u64> {
        let path = self.final_path(digest)?;
        let lock = self.lock(digest);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&path, e)),
        };
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        self.budget.removed(size);
        Ok(size)
    }

    /// The content of a stored blob, read whole (for manifests, which the worker parses) and
    /// checked against its digest (see `damaged`).
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.final_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if easel_digest::digest_bytes(&bytes) != digest {
            return Err(self.damaged(digest));
        }
        Ok(bytes)
    }

    /// Checks a stored blob's content against its digest before it is used (pretrained
    /// weights, which libtorch reads by path).
    pub fn check_intact(&self, digest: &str) -> Result<()> {
        let path = self.final_path(digest)?;
        match easel_dataset::verify_blob(&path, digest) {
            Ok(()) => Ok(()),
            Err(easel_dataset::Error::DigestMismatch { .. }) => Err(self.damaged(digest)),
            Err(error) => Err(Error::FailedPrecondition(format!("blob {digest}: {error}"))),
        }
    }

    /// A stored blob whose bytes are not its digest's (torn by a power loss, a failing disk):
    /// moved to the quarantine folder, so it counts as missing and the next submit uploads it
    /// again instead of every job that needs it failing.
    fn damaged(&self, digest: &str) -> Error {
        let moved = match easel_dataset::quarantine_blob(&self.dir, digest) {
            Ok(_) => {
                self.reclaim_quarantined();
                "it was moved aside; submit again to upload it again"
            }
            Err(_) => "it could not be moved aside",
        };
        Error::FailedPrecondition(format!(
            "blob {digest} is damaged on the worker (its content no longer matches its digest); \
             {moved}"
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_chunk_bytes(&self) -> u64 {
        self.max_chunk_bytes
    }

    fn final_path(&self, digest: &str) -> Result<PathBuf> {
        easel_dataset::blob_path(&self.dir, digest)
            .map_err(|e| Error::InvalidArgument(format!("blob digest: {e}")))
    }

    fn partial_path(&self, digest: &str) -> PathBuf {
        self.dir.join("partial").join(digest)
    }

    fn offset_path(&self, digest: &str) -> PathBuf {
        self.dir.join("partial").join(format!("{digest}.offset"))
    }

    pub fn contains(&self, digest: &str) -> Result<bool> {
        Ok(self.final_path(digest)?.is_file())
    }

    /// Bytes of `digest` committed by earlier chunks (0 when none).
    pub fn committed_offset(&self, digest: &str) -> Result<u64> {
        self.final_path(digest)?;
        match std::fs::read_to_string(self.offset_path(digest)) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(_) => Ok(0),
        }
    }

    /// The digests not stored yet, each with its committed offset.
    pub fn missing(&self, digests: &[String]) -> Result<Vec<(String, u64)>> {
        let mut missing = Vec::new();
        for digest in digests {
            if !self.contains(digest)? {
                missing.push((digest.clone(), self.committed_offset(digest)?));
            }
        }
        Ok(missing)
    }

    /// Checks and commits one chunk (blocking file IO: call from a blocking thread).
    pub fn write_chunk(&self, chunk: &Chunk) -> Result<ChunkOutcome> {
        let digest = &chunk.digest;
        let final_path = self.final_path(digest)?;
        let length = chunk.data.len() as u64;
        if length > self.max_chunk_bytes {
            return Err(Error::InvalidArgument(format!(
                "blob {digest}: chunk of {length} bytes exceeds the worker's limit of {} bytes",
                self.max_chunk_bytes
            )));
        }
        if chunk.total_size > self.max_blob_bytes {
            return Err(Error::InvalidArgument(format!(
                "blob {digest}: {} bytes exceeds the worker's limit of {} bytes per file",
                chunk.total_size, self.max_blob_bytes
            )));
        }
        if chunk.offset + length > chunk.total_size {
            return Err(Error::InvalidArgument(format!(
                "blob {digest}: chunk at offset {} of {length} bytes runs past the blob's size {}",
                chunk.offset, chunk.total_size
            )));
        }
        let actual_crc = easel_proto::protocol::chunk_checksum(&chunk.data);
        if actual_crc != chunk.crc32c {
            return Err(Error::DataLoss(format!(
                "blob {digest}: chunk at offset {} is corrupted (crc32c {actual_crc:08x}, sent {:08x}); \
                 nothing of it was kept, resend it",
                chunk.offset, chunk.crc32c
            )));
        }
        let lock = self.lock(digest);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        if final_path.is_file() {
            return Ok(ChunkOutcome {
                committed_offset: chunk.total_size,
                complete: true,
                bytes_written: 0,
            });
        }
        if chunk.offset == 0 && length == chunk.total_size {
            return self
                .store_whole(chunk)
                .map_err(|error| self.disk_full(digest, chunk.total_size, error));
        }
        let committed = self.committed_offset(digest)?;
        if chunk.offset + length <= committed && length > 0 {
            // Already committed by an earlier attempt: acknowledge without rewriting.
            return Ok(ChunkOutcome {
                committed_offset: committed,
                complete: false,
                bytes_written: 0,
            });
        }
        if chunk.offset != committed {
            return Err(Error::FailedPrecondition(format!(
                "blob {digest}: chunk starts at offset {} but the worker holds {committed} bytes; resume from {committed}",
                chunk.offset
            )));
        }
        // Every chunk, not only the first: a later one may declare a larger size than the first
        // held, or resume a partial that holds only what it wrote before a restart.
        self.hold(digest, chunk.total_size)?;
        self.append(chunk, committed)
            .map_err(|error| self.disk_full(digest, chunk.total_size, error))
    }

    /// A whole blob in one chunk (most images): checked in memory, written once and renamed into
    /// place, with no offset bookkeeping and no second read. It replaces any partial an earlier
    /// cut-off upload left (the same digest, so the same bytes).
    fn store_whole(&self, chunk: &Chunk) -> Result<ChunkOutcome> {
        let digest = &chunk.digest;
        let actual = easel_digest::digest_bytes(&chunk.data);
        if actual != *digest {
            return Err(Error::DataLoss(format!(
                "blob {digest}: the uploaded content does not match its digest (its blake3 is \
                 {actual}); nothing was kept"
            )));
        }
        self.hold(digest, chunk.total_size)?;
        let final_path = self.final_path(digest)?;
        // Staged beside its final place rather than in partial/: small blobs written by several
        // streams at once would all queue on that one folder's lock.
        let staging = final_path.with_extension("whole");
        let written = ensure_folder(&final_path)
            .and_then(|()| {
                std::fs::write(&staging, &chunk.data).map_err(|e| Error::io(&staging, e))
            })
            .and_then(|()| {
                std::fs::rename(&staging, &final_path).map_err(|e| Error::io(&final_path, e))
            });
        if let Err(error) = written {
            remove_if_present(&staging);
            // A partial of it from an earlier upload is still on disk, under this hold now.
            if !self.partial_path(digest).exists() {
                self.budget.release(digest);
            }
            return Err(error);
        }
        // What a cut-off earlier upload of it left is of no use now (its partial is written
        // before its offset, so a partial with or without an offset).
        if self.partial_path(digest).exists() {
            self.discard(digest);
        }
        self.budget.stored(digest, chunk.total_size);
        Ok(ChunkOutcome {
            committed_offset: chunk.total_size,
            complete: true,
            bytes_written: chunk.total_size,
        })
    }

    /// Writes a checked chunk at the committed offset and commits it (the blob when it is the
    /// last).
    fn append(&self, chunk: &Chunk, committed: u64) -> Result<ChunkOutcome> {
        let digest = &chunk.digest;
        let final_path = self.final_path(digest)?;
        let length = chunk.data.len() as u64;
        let partial = self.partial_path(digest);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?;
        // Anything past the committed offset is a torn write from an interrupted chunk.
        file.set_len(committed)
            .map_err(|e| Error::io(&partial, e))?;
        file.seek(SeekFrom::Start(committed))
            .map_err(|e| Error::io(&partial, e))?;
        // No fsync per chunk: after a power loss the offset file may run ahead of the data, but
        // the whole-blob digest check then discards the partial, so nothing wrong is ever kept.
        file.write_all(&chunk.data)
            .map_err(|e| Error::io(&partial, e))?;
        drop(file);
        let now_committed = committed + length;
        if now_committed < chunk.total_size {
            self.write_offset(digest, now_committed)?;
            return Ok(ChunkOutcome {
                committed_offset: now_committed,
                complete: false,
                bytes_written: length,
            });
        }
        self.finish(digest, &partial, &final_path)?;
        self.budget.stored(digest, chunk.total_size);
        Ok(ChunkOutcome {
            committed_offset: now_committed,
            complete: true,
            bytes_written: length,
        })
    }

    /// A full disk mid-blob: the partial goes (a half-written blob helps nobody), the error says
    /// what was needed. Other errors pass through.
    fn disk_full(&self, digest: &str, total_size: u64, error: Error) -> Error {
        let full = matches!(&error, Error::Io { source, .. } if is_disk_full(source));
        if !full {
            return error;
        }
        self.discard(digest);
        let free = self
            .budget
            .available()
            .map(|a| a.explain())
            .unwrap_or_default();
        tracing::warn!(blob = %digest, %error, "disk full during an upload; partial discarded");
        Error::ResourceExhausted(format!(
            "the worker's disk filled up while writing blob {digest} ({}): the partial upload was \
             discarded; {free}",
            human_bytes(total_size)
        ))
    }

    fn finish(&self, digest: &str, partial: &Path, final_path: &Path) -> Result<()> {
        if let Err(error) = easel_dataset::verify_blob(partial, digest) {
            self.discard(digest);
            return Err(Error::DataLoss(format!(
                "blob {digest}: the uploaded content does not match its digest ({error}); the partial upload was discarded"
            )));
        }
        ensure_folder(final_path)?;
        std::fs::rename(partial, final_path).map_err(|e| Error::io(final_path, e))?;
        // A leftover offset is harmless: a complete blob wins over it.
        remove_if_present(&self.offset_path(digest));
        Ok(())
    }

    /// Drops a partial upload. The offset goes first: an offset left beside a removed partial
    /// would make the next upload resume past a gap.
    fn discard(&self, digest: &str) {
        remove_if_present(&self.offset_path(digest));
        remove_if_present(&self.partial_path(digest));
        self.budget.release(digest);
    }

    fn write_offset(&self, digest: &str, offset: u64) -> Result<()> {
        let path = self.offset_path(digest);
        let staging = path.with_extension("offset.tmp");
        std::fs::write(&staging, offset.to_string()).map_err(|e| Error::io(&staging, e))?;
        std::fs::rename(&staging, &path).map_err(|e| Error::io(&path, e))
    }

    fn lock(&self, digest: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(digest.to_owned()).or_default().clone()
    }
}

/// Removes the damaged blobs moved aside (they were logged when moved); returns the bytes
/// removed. Only a removal that succeeded counts them: two threads emptying the folder at once
/// count each blob once.
fn empty_quarantine(quarantine: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(quarantine) else {
        return 0;
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let bytes = entry.metadata().map_or(0, |meta| meta.len());
        match std::fs::remove_file(&path) {
            Ok(()) => freed += bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "quarantined blob not removed");
            }
        }
    }
    freed
}

/// Creates the folder `path` goes in when it is missing. Looked at first: creating a folder
/// that exists still takes its parent's lock, which every blob written at once would queue on.
fn ensure_folder(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.is_dir() => {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))
        }
        _ => Ok(()),
    }
}

/// Removes a file of the blob store's own bookkeeping; failing to is logged, not fatal.
fn remove_if_present(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), %error, "blob store file not removed");
    }
}

/// Removes whole blobs a killed worker staged and never renamed into place (`<digest>.whole`
/// beside the final path), on a thread of its own: walking millions of blobs takes a while, and
/// uploads may start meanwhile, so only files older than `before` (this start) are touched.
fn sweep_unrenamed_wholes(dir: PathBuf, before: SystemTime) {
    let sweep = move || {
        let prefixes = std::fs::read_dir(&dir).into_iter().flatten().flatten();
        for prefix in prefixes.filter(|entry| entry.file_name() != "partial") {
            let files = std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten();
            for file in files {
                let path = file.path();
                let stale = file
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|modified| modified < before);
                if stale && path.extension().is_some_and(|ext| ext == "whole") {
                    tracing::info!(path = %path.display(), "unfinished whole blob removed");
                    remove_if_present(&path);
                }
            }
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name("easel-blob-sweep".into())
        .spawn(sweep)
    {
        tracing::warn!(%error, "could not start the sweep of unfinished blobs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &[u8], offset: usize, length: usize) -> Chunk {
        let data = content[offset..offset + length].to_vec();
        Chunk {
            digest: easel_dataset::digest_bytes(content),
            total_size: content.len() as u64,
            offset: offset as u64,
            crc32c: easel_proto::protocol::chunk_checksum(&data),
            data,
        }
    }

    fn limits() -> BlobLimits {
        BlobLimits {
            max_chunk_bytes: 1 << 20,
            max_blob_bytes: 1 << 30,
            max_stored_bytes: 0,
            min_free_bytes: 0,
        }
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs"), limits()).unwrap();
        (dir, store)
    }

    #[test]
    fn whole_blobs_a_killed_worker_never_renamed_are_swept_at_the_next_start() {
        let (dir, store) = store();
        let content = b"an image".to_vec();
        store
            .write_chunk(&chunk(&content, 0, content.len()))
            .unwrap();
        let stored = store
            .final_path(&easel_dataset::digest_bytes(&content))
            .unwrap();
        let leftover = stored.with_file_name("0badc0de.whole");
        std::fs::write(&leftover, [0; 100]).unwrap();
        std::fs::File::open(&leftover)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        drop(store);
        let _reopened = BlobStore::open(dir.path().join("blobs"), limits()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while leftover.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!leftover.exists(), "the leftover is still there");
        assert!(stored.exists(), "a stored blob was swept");
    }

    /// Property: whatever chunks arrive first (gaps, overlaps, corrupt data, another file's
    /// bytes with a matching crc, a wrong total size), the store never keeps wrong content
    /// under a digest, and an honest upload from the committed offset then completes the blob.
    #[test]
    fn chunks_in_any_order_or_state_never_store_wrong_bytes() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(51);
        for case in 0..150 {
            let (_dir, store) = store();
            let length = rng.random_range(1..3000);
            let content: Vec<u8> = (0..length).map(|_| rng.random()).collect();
            let digest = easel_dataset::digest_bytes(&content);
            for _ in 0..rng.random_range(1..12) {
                let offset = rng.random_range(0..=length);
                let size = rng.random_range(0..=length - offset);
                let mut sent = chunk(&content, offset, size);
                match rng.random_range(0..5) {
                    0 if size > 0 => sent.data[0] ^= 1,
                    1 => {
                        sent.data = (0..size).map(|_| rng.random()).collect();
                        sent.crc32c = easel_proto::protocol::chunk_checksum(&sent.data);
                    }
                    2 => sent.total_size = rng.random_range(0..2 * length as u64 + 1),
                    _ => {}
                }
                let _ = store.write_chunk(&sent);
                if store.contains(&digest).unwrap() {
                    let kept = store.read(&digest).unwrap();
                    assert_eq!(kept, content, "case {case}: wrong bytes kept");
                }
            }
            for attempt in 0.. {
                let missing = store.missing(std::slice::from_ref(&digest)).unwrap();
                let Some((_, committed)) = missing.first() else {
                    break;
                };
                assert!(
                    attempt < 3,
                    "case {case}: the honest upload never completed"
                );
                let committed = *committed as usize;
                let _ = store.write_chunk(&chunk(&content, committed, length - committed));
            }
            assert_eq!(store.read(&digest).unwrap(), content, "case {case}");
        }
    }

    #[test]
    fn chunks_commit_and_resume() {
        let (_dir, store) = store();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let first = store.write_chunk(&chunk(&content, 0, 4000)).unwrap();
        assert_eq!(
            first,
            ChunkOutcome {
                committed_offset: 4000,
                complete: false,
                bytes_written: 4000
            }
        );
        let digest = easel_dataset::digest_bytes(&content);
        assert_eq!(
            store.missing(std::slice::from_ref(&digest)).unwrap(),
            [(digest.clone(), 4000)]
        );
        // A resent chunk is acknowledged, not rewritten; a gap is refused.
        assert_eq!(
            store
                .write_chunk(&chunk(&content, 0, 4000))
                .unwrap()
                .bytes_written,
            0
        );
        assert!(matches!(
            store.write_chunk(&chunk(&content, 8000, 2000)),
            Err(Error::FailedPrecondition(_))
        ));
        let last = store.write_chunk(&chunk(&content, 4000, 6000)).unwrap();
        assert!(last.complete);
        assert!(store.contains(&digest).unwrap());
        let stored =
            std::fs::read(easel_dataset::blob_path(store.dir(), &digest).unwrap()).unwrap();
        assert_eq!(stored, content);
    }

    #[test]
    fn corrupted_chunk_is_refused_and_nothing_kept() {
        let (_dir, store) = store();
        let content = vec![7u8; 3000];
        store.write_chunk(&chunk(&content, 0, 1000)).unwrap();
        let mut bad = chunk(&content, 1000, 1000);
        bad.data[10] ^= 0xff;
        assert!(matches!(store.write_chunk(&bad), Err(Error::DataLoss(_))));
        assert_eq!(store.committed_offset(&bad.digest).unwrap(), 1000);
        let partial_len = std::fs::metadata(store.partial_path(&bad.digest))
            .unwrap()
            .len();
        assert_eq!(partial_len, 1000);
    }

    #[test]
    fn content_not_matching_the_digest_is_discarded() {
        let (_dir, store) = store();
        let content = vec![1u8; 2000];
        let mut lying = chunk(&content, 0, 2000);
        lying.digest = easel_dataset::digest_bytes(b"something else");
        lying.total_size = 2000;
        assert!(matches!(store.write_chunk(&lying), Err(Error::DataLoss(_))));
        assert!(!store.contains(&lying.digest).unwrap());
        assert!(!store.partial_path(&lying.digest).exists());
        assert_eq!(store.committed_offset(&lying.digest).unwrap(), 0);
    }

    #[test]
    fn partial_uploads_untouched_for_a_week_are_removed_at_start() {
        let (dir, store) = store();
        let old = vec![3u8; 3000];
        let fresh = vec![4u8; 3000];
        store.write_chunk(&chunk(&old, 0, 1000)).unwrap();
        store.write_chunk(&chunk(&fresh, 0, 1000)).unwrap();
        let old_digest = easel_dataset::digest_bytes(&old);
        let eight_days_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
        for path in [
            store.partial_path(&old_digest),
            store.offset_path(&old_digest),
        ] {
            std::fs::File::options()
                .append(true)
                .open(&path)
                .unwrap()
                .set_modified(eight_days_ago)
                .unwrap();
        }
        drop(store);
        let store = BlobStore::open(dir.path().join("blobs"), limits()).unwrap();
        assert_eq!(store.committed_offset(&old_digest).unwrap(), 0);
        assert!(!store.partial_path(&old_digest).exists());
        let fresh_digest = easel_dataset::digest_bytes(&fresh);
        assert_eq!(store.committed_offset(&fresh_digest).unwrap(), 1000);
    }

    fn quota_store(dir: &Path, max_stored_bytes: u64) -> BlobStore {
        let limits = BlobLimits {
            max_stored_bytes,
            ..limits()
        };
        BlobStore::open(dir.join("blobs"), limits).unwrap()
    }

    #[test]
    fn a_later_chunk_declaring_a_larger_size_is_checked_against_the_quota_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = quota_store(dir.path(), 10_000);
        let content: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
        store.write_chunk(&chunk(&content, 0, 1000)).unwrap();
        assert_eq!(store.available().unwrap().bytes, 6000);
        // The same blob now says it is 50 kB: five times the quota.
        let mut grown = chunk(&content, 1000, 1000);
        grown.total_size = 50_000;
        let refused = store.write_chunk(&grown).unwrap_err().to_string();
        assert!(
            refused.contains("needs 50.0 kB but the worker can take 10.0 kB"),
            "{refused}"
        );
        assert_eq!(store.committed_offset(&grown.digest).unwrap(), 1000);
        assert_eq!(store.available().unwrap().bytes, 6000);
        // Its honest size still fits.
        store.write_chunk(&chunk(&content, 1000, 3000)).unwrap();
        assert_eq!(store.available().unwrap().bytes, 6000);
    }

    #[test]
    fn partial_uploads_found_at_start_count_against_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = quota_store(dir.path(), 10_000);
        let content = vec![9u8; 8000];
        store.write_chunk(&chunk(&content, 0, 3000)).unwrap();
        drop(store);
        let store = quota_store(dir.path(), 10_000);
        assert_eq!(store.available().unwrap().bytes, 7000);
        // Resumed, it holds its whole size again, checked.
        store.write_chunk(&chunk(&content, 3000, 1000)).unwrap();
        assert_eq!(store.available().unwrap().bytes, 2000);
    }

    #[test]
    fn a_blob_a_training_process_quarantines_stops_counting_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = quota_store(dir.path(), 10_000);
        let content = vec![5u8; 6000];
        let digest = easel_dataset::digest_bytes(&content);
        store
            .write_chunk(&chunk(&content, 0, content.len()))
            .unwrap();
        assert_eq!(store.available().unwrap().bytes, 4000);
        let path = store.final_path(&digest).unwrap();
        let mut torn = content.clone();
        torn[100] ^= 1;
        std::fs::write(&path, &torn).unwrap();
        // What a training run reads the store through, in its own process.
        let entry = easel_dataset::ManifestEntry {
            path: "a/1.png".into(),
            class: 0,
            size: content.len() as u64,
            digest: digest.clone(),
            subset: None,
        };
        use easel_dataset::ImageSource;
        let damaged = easel_dataset::BlobStoreSource::new(store.dir())
            .read(&entry)
            .unwrap_err();
        assert!(damaged.to_string().contains("moved aside"), "{damaged}");
        let available = store.available().unwrap();
        assert_eq!((available.bytes, available.stored), (10_000, 0));
        let quarantine = store.dir().join(easel_dataset::QUARANTINE_DIR);
        assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 0);
        // Uploaded again, it counts once.
        store
            .write_chunk(&chunk(&content, 0, content.len()))
            .unwrap();
        assert_eq!(store.available().unwrap().stored, 6000);
    }

    #[test]
    fn a_damaged_blob_the_worker_finds_is_uncounted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = quota_store(dir.path(), 10_000);
        let content = vec![6u8; 3000];
        let digest = easel_dataset::digest_bytes(&content);
        let intact = vec![8u8; 2000];
        for blob in [&content, &intact] {
            store.write_chunk(&chunk(blob, 0, blob.len())).unwrap();
        }
        std::fs::write(store.final_path(&digest).unwrap(), vec![7u8; 3000]).unwrap();
        assert!(matches!(
            store.read(&digest),
            Err(Error::FailedPrecondition(_))
        ));
        assert_eq!(store.available().unwrap().stored, 2000);
        assert!(!store.contains(&digest).unwrap());
    }

    #[test]
    fn bad_digest_never_becomes_a_path() {
        let (_dir, store) = store();
        assert!(matches!(
            store.contains("../../etc/passwd"),
            Err(Error::InvalidArgument(_))
        ));
    }
}
