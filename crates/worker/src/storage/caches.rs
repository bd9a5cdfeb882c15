//! The worker's rebuildable caches: the engine's decoded datasets (`<data>/cache/decoded-*.u8`)
//! and the copies of object-store datasets (`<data>/datasets/<hash>/`). Either can be made again
//! from what it came from, so when they pass `cache.max_bytes`, or a job is about to need room
//! the disk does not have above `upload.min_free_bytes`, the least recently used go first.
//!
//! What a running job uses is leased and never removed: its copied dataset (read while it
//! decodes) and its decoded cache (mapped while it trains; removing it would free nothing until
//! the job ends). Use is recorded in each entry's modification time, touched when a job takes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::storage::space::{Reclaimable, free_bytes, human_bytes};
use easel_digest::folder_bytes;

pub struct CacheRoom {
    decoded: PathBuf,
    datasets: PathBuf,
    /// 0: the caches have no limit of their own.
    max_bytes: u64,
    min_free_bytes: u64,
    /// Entries running jobs use, with how many hold each.
    leased: Mutex<HashMap<PathBuf, usize>>,
}

/// One cache entry: a decoded-cache file or a copied dataset's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub path: PathBuf,
    pub bytes: u64,
    pub last_used: SystemTime,
}

/// What a trim removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub removed: Vec<PathBuf>,
    pub bytes: u64,
}

impl Trimmed {
    /// A line for the job's events; `None` when nothing was removed.
    pub fn summary(&self) -> Option<String> {
        (!self.removed.is_empty()).then(|| {
            format!(
                "caches: {} least recently used entr{} removed to make room ({})",
                self.removed.len(),
                if self.removed.len() == 1 { "y" } else { "ies" },
                human_bytes(self.bytes)
            )
        })
    }
}

/// Holds a cache entry against trimming until dropped.
pub struct Lease {
    room: Arc<CacheRoom>,
    path: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leased = self.room.leases();
        if let Some(count) = leased.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                leased.remove(&self.path);
            }
        }
    }
}

impl CacheRoom {
    pub fn new(decoded: PathBuf, datasets: PathBuf, max_bytes: u64, min_free_bytes: u64) -> Self {
        CacheRoom {
            decoded,
            datasets,
            max_bytes,
            min_free_bytes,
            leased: Mutex::default(),
        }
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, usize>> {
        self.leased.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `path` used now and keeps it until the lease is dropped.
    pub fn lease(self: &Arc<Self>, path: &Path) -> Lease {
        touch(path);
        *self.leases().entry(path.to_path_buf()).or_default() += 1;
        Lease {
            room: Arc::clone(self),
            path: path.to_path_buf(),
        }
    }

    /// Every entry, least recently used first.
    pub fn entries(&self) -> Vec<CacheEntry> {
        let mut entries = Vec::new();
        let decoded_files = read_dir_entries(&self.decoded).filter(|(name, path)| {
            easel_engine::pipeline::cache::is_cache_file(name) && path.is_file()
        });
        for (_, path) in decoded_files {
            if let Ok(meta) = std::fs::metadata(&path) {
                entries.push(CacheEntry {
                    bytes: meta.len(),
                    last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    path,
                });
            }
        }
        for (_, path) in read_dir_entries(&self.datasets).filter(|(_, path)| path.is_dir()) {
            let last_used = std::fs::metadata(&path)
                .and_then(|meta| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push(CacheEntry {
                bytes: folder_bytes(&path),
                last_used,
                path,
            });
        }
        entries.sort_by_key(|entry| entry.last_used);
        entries
    }

    /// Removes unleased entries, least recently used first, until the caches with a new entry
    /// of `needed` bytes fit their limit and the disk has `needed` bytes free above what uploads
    /// leave free.
    pub fn make_room(&self, needed: u64) -> Trimmed {
        self.trim(needed, needed)
    }

    /// Like `make_room`, for `in_caches` bytes more in the caches and `on_disk` bytes on the disk.
    fn trim(&self, in_caches: u64, on_disk: u64) -> Trimmed {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|entry| entry.bytes).sum();
        let mut disk_free = free_bytes(&self.decoded).unwrap_or(u64::MAX);
        let wanted_free = self.min_free_bytes.saturating_add(on_disk);
        let over = |total: u64, disk_free: u64| {
            (self.max_bytes > 0 && total.saturating_add(in_caches) > self.max_bytes)
                || disk_free < wanted_free
        };
        let mut trimmed = Trimmed::default();
        for entry in entries {
            if !over(total, disk_free) {
                break;
            }
            // The leases stay locked until the entry is gone: a job taking it meanwhile would
            // find it half removed.
            let leases = self.leases();
            if leases.contains_key(&entry.path) {
                continue;
            }
            let removed = if entry.path.is_dir() {
                std::fs::remove_dir_all(&entry.path)
            } else {
                std::fs::remove_file(&entry.path)
            };
            drop(leases);
            match removed {
                Ok(()) => {
                    tracing::info!(path = %entry.path.display(), bytes = entry.bytes, "cache entry removed to make room");
                    total = total.saturating_sub(entry.bytes);
                    disk_free =
                        free_bytes(&self.decoded).unwrap_or(disk_free.saturating_add(entry.bytes));
                    trimmed.bytes += entry.bytes;
                    trimmed.removed.push(entry.path);
                }
                Err(error) => {
                    tracing::warn!(path = %entry.path.display(), %error, "cache entry could not be removed");
                }
            }
        }
        trimmed
    }

    /// Removes what killed cache writes left: temporary decoded-cache files (at start, when no
    /// job can be writing one).
    pub fn sweep_leftovers(&self) -> u64 {
        let leftovers = read_dir_entries(&self.decoded)
            .filter(|(name, _)| easel_engine::pipeline::cache::is_temporary_file(name));
        let mut freed = 0;
        for (_, path) in leftovers {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), bytes, "unfinished decoded cache removed");
                freed += bytes;
            }
        }
        freed
    }
}

impl Reclaimable for CacheRoom {
    fn reclaimable_bytes(&self) -> u64 {
        let entries = self.entries();
        let leased = self.leases();
        entries
            .iter()
            .filter(|entry| !leased.contains_key(&entry.path))
            .map(|entry| entry.bytes)
            .sum()
    }

    fn free_for(&self, needed: u64) {
        let trimmed = self.trim(0, needed);
        if !trimmed.removed.is_empty() {
            tracing::info!(
                entries = trimmed.removed.len(),
                bytes = trimmed.bytes,
                "caches gave way to an upload"
            );
        }
    }
}

/// Sets `path`'s modification time to now (its last use); a missing path is left missing.
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn read_dir_entries(dir: &Path) -> impl Iterator<Item = (String, PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn aged(path: &Path, seconds_ago: u64) {
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
            .unwrap();
    }

    fn room(max_bytes: u64) -> (tempfile::TempDir, Arc<CacheRoom>) {
        let dir = tempfile::tempdir().unwrap();
        let decoded = dir.path().join("cache");
        let datasets = dir.path().join("datasets");
        std::fs::create_dir_all(&decoded).unwrap();
        std::fs::create_dir_all(&datasets).unwrap();
        let room = CacheRoom::new(decoded, datasets, max_bytes, 0);
        (dir, Arc::new(room))
    }

    #[test]
    fn the_least_recently_used_go_first_and_leased_entries_stay() {
        let (_dir, room) = room(2500);
        let oldest = room.decoded.join("decoded-a.u8");
        let leased = room.decoded.join("decoded-b.u8");
        let dataset = room.datasets.join("0123");
        let newest = room.decoded.join("decoded-c.u8");
        std::fs::write(&oldest, [0; 1000]).unwrap();
        std::fs::write(&leased, [0; 1000]).unwrap();
        std::fs::create_dir_all(dataset.join("cats")).unwrap();
        std::fs::write(dataset.join("cats/1.png"), [0; 1000]).unwrap();
        std::fs::write(&newest, [0; 1000]).unwrap();
        // Not a cache entry: never counted, never removed.
        let stranger = room.decoded.join("notes.txt");
        std::fs::write(&stranger, [0; 5000]).unwrap();
        aged(&oldest, 400);
        aged(&leased, 300);
        aged(&dataset, 200);
        aged(&newest, 100);
        let lease = room.lease(&leased);

        assert_eq!(room.entries().len(), 4);
        // 4000 bytes and room for 500 more under 2500: two must go, the leased one skipped.
        let trimmed = room.make_room(500);
        assert_eq!(trimmed.removed, vec![oldest.clone(), dataset.clone()]);
        assert_eq!(trimmed.bytes, 2000);
        assert!(!oldest.exists() && !dataset.exists());
        assert!(leased.exists() && newest.exists() && stranger.exists());
        assert!(
            trimmed
                .summary()
                .unwrap()
                .contains("2 least recently used entries")
        );

        // Leasing touched it: once free again it is the newest, so `newest` goes first.
        drop(lease);
        let trimmed = room.make_room(1500);
        assert_eq!(trimmed.removed, vec![newest.clone()]);
        assert!(leased.exists());
        assert_eq!(room.make_room(0), Trimmed::default());
    }

    #[test]
    fn without_a_limit_only_a_short_disk_trims() {
        let (_dir, room) = room(0);
        let entry = room.decoded.join("decoded-a.u8");
        std::fs::write(&entry, [0; 1000]).unwrap();
        assert_eq!(room.make_room(1000), Trimmed::default());
        // More than any disk has: everything unleased goes, and the caller learns the room is
        // still short from the disk itself.
        let trimmed = room.make_room(u64::MAX / 2);
        assert_eq!(trimmed.removed, vec![entry]);
    }

    #[test]
    fn an_upload_asking_for_room_is_not_counted_against_the_caches_own_limit() {
        let (_dir, room) = room(2500);
        let entry = room.decoded.join("decoded-a.u8");
        std::fs::write(&entry, [0; 2000]).unwrap();
        // The disk has room for the upload: nothing goes, although 2000 + 1000 > 2500.
        room.free_for(1000);
        assert!(entry.exists());
        // A new cache entry of that size does count against the limit.
        assert_eq!(room.make_room(1000).removed, vec![entry]);
    }

    #[test]
    fn leftovers_of_killed_cache_writes_are_swept() {
        let (_dir, room) = room(0);
        let leftover = room.decoded.join("decoded-abc.tmp-123-0");
        let finished = room.decoded.join("decoded-abc.u8");
        std::fs::write(&leftover, [0; 10]).unwrap();
        std::fs::write(&finished, [0; 10]).unwrap();
        assert_eq!(room.sweep_leftovers(), 10);
        assert!(!leftover.exists() && finished.exists());
    }
}
