//! How much the worker can take: its upload quota (`upload.max_stored_bytes`) against the bytes
//! of blobs it holds, and the free disk under its data folder less what uploads always leave
//! free (`upload.min_free_bytes`). Asked before an upload starts and before each new blob, so a
//! submit that cannot fit is refused before any byte moves. A blob being uploaded holds its
//! whole size until it is stored or dropped, so uploads in flight at once (several streams,
//! several clients) cannot together overshoot the room each saw; a chunk declaring another size
//! than its blob holds is checked again at that size. At start, the partial uploads found on
//! disk hold what they have written, so a restart forgets no byte (see `blobs.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

/// The limits, and the running count of stored bytes they are checked against.
pub struct UploadBudget {
    dir: PathBuf,
    /// 0: no quota, the disk is the limit.
    max_stored_bytes: u64,
    min_free_bytes: u64,
    stored: AtomicU64,
    /// Blobs being uploaded, each holding its whole size.
    held: Mutex<Held>,
    /// Caches on the same disk that give way to uploads (see `caches.rs`).
    caches: OnceLock<Arc<dyn Reclaimable>>,
}

/// Space on the upload disk that can be given back on demand: the worker's rebuildable caches.
pub trait Reclaimable: Send + Sync {
    /// Bytes that could be freed now.
    fn reclaimable_bytes(&self) -> u64;
    /// Frees what it can until the disk has `needed` bytes free above what uploads leave free
    /// (the caches' own limit is not theirs to keep: uploads are not caches).
    fn free_for(&self, needed: u64);
}

#[derive(Default)]
struct Held {
    by_digest: HashMap<String, u64>,
    total: u64,
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// What an upload may add now: the smaller of the quota's and the disk's room.
    pub bytes: u64,
    pub stored: u64,
    pub quota: Option<u64>,
    pub disk_free: u64,
    /// Of `disk_free`, what uploads always leave free.
    pub kept_free: u64,
    /// Bytes of caches that give way to uploads, counted in `bytes` (0 unless the disk binds).
    pub caches: u64,
}

impl UploadBudget {
    /// `stored`: the bytes already held (counted once at start).
    pub fn new(dir: PathBuf, max_stored_bytes: u64, min_free_bytes: u64, stored: u64) -> Self {
        UploadBudget {
            dir,
            max_stored_bytes,
            min_free_bytes,
            stored: AtomicU64::new(stored),
            held: Mutex::default(),
            caches: OnceLock::new(),
        }
    }

    /// Lets uploads count `caches` as room, and take it when they need it.
    pub fn give_way(&self, caches: Arc<dyn Reclaimable>) {
        let _ = self.caches.set(caches);
    }

    pub fn available(&self) -> Result<Available> {
        let held = self.held().total;
        self.available_beside(held, u64::MAX)
    }

    /// What may be added with `held` bytes of uploads in flight. Counted against the disk too
    /// (whole, although part of each is written already): a little cautious, never over. The
    /// caches are counted only when the disk alone cannot give `wanted` (counting them walks
    /// their folders, too slow for every blob of a large upload).
    fn available_beside(&self, held: u64, wanted: u64) -> Result<Available> {
        let disk_free = free_bytes(&self.dir)?;
        let stored = self.stored.load(Ordering::Relaxed);
        let quota = (self.max_stored_bytes > 0).then_some(self.max_stored_bytes);
        let disk_room = disk_free.saturating_sub(self.min_free_bytes);
        let quota_room = quota.map_or(u64::MAX, |q| q.saturating_sub(stored));
        let caches = match self.caches.get() {
            Some(caches) if disk_room.saturating_sub(held) < quota_room.min(wanted) => {
                caches.reclaimable_bytes()
            }
            _ => 0,
        };
        Ok(Available {
            bytes: disk_room
                .saturating_add(caches)
                .min(quota_room)
                .saturating_sub(held),
            stored,
            quota,
            disk_free,
            kept_free: self.min_free_bytes,
            caches,
        })
    }

    /// Refuses `needed` more bytes when they do not fit, saying what is needed and free.
    pub fn reserve(&self, what: &str, needed: u64) -> Result<()> {
        let held = self.held().total;
        refuse_beyond(what, needed, self.available_beside(held, needed)?)
    }

    /// Like `reserve` for a blob about to be uploaded, and then holds its bytes until it is
    /// `stored` or `released`. Asked for each chunk: a blob already holding `size` passes at
    /// once, and one declaring another size (a lie, or a resume after a restart) is checked
    /// again at that size, in place of what it held.
    pub fn hold(&self, digest: &str, size: u64) -> Result<()> {
        let mut held = self.held();
        let before = held.by_digest.get(digest).copied();
        if before == Some(size) {
            return Ok(());
        }
        let before = before.unwrap_or(0);
        let others = held.total - before;
        let available = self.available_beside(others, size)?;
        refuse_beyond(&format!("blob {digest}"), size, available)?;
        let disk_room = available.disk_free.saturating_sub(available.kept_free);
        if let Some(caches) = self.caches.get()
            && disk_room < others.saturating_add(size)
        {
            // The room is there only once caches give it back.
            caches.free_for(others.saturating_add(size));
        }
        held.by_digest.insert(digest.to_owned(), size);
        held.total = held.total - before + size;
        Ok(())
    }

    /// Holds `bytes` a partial upload already wrote (found at start), unchecked: they are on the
    /// disk whatever the limits say, and count against both until the upload is stored or
    /// dropped. Its next chunk holds the size it declares, checked.
    pub fn hold_written(&self, digest: &str, bytes: u64) {
        let mut held = self.held();
        let before = held.by_digest.insert(digest.to_owned(), bytes).unwrap_or(0);
        held.total = held.total - before + bytes;
    }

    /// The held blob is stored: its bytes count as stored.
    pub fn stored(&self, digest: &str, size: u64) {
        self.release(digest);
        self.added(size);
    }

    /// The held blob was dropped (or failed): its room is free again.
    pub fn release(&self, digest: &str) {
        let mut held = self.held();
        if let Some(size) = held.by_digest.remove(digest) {
            held.total -= size;
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn added(&self, bytes: u64) {
        self.stored.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn removed(&self, bytes: u64) {
        // Saturating: a blob counted before a restart and removed by hand must not wrap.
        let _ = self
            .stored
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_sub(bytes))
            });
    }
}

fn refuse_beyond(what: &str, needed: u64, available: Available) -> Result<()> {
    if needed <= available.bytes {
        return Ok(());
    }
    Err(Error::ResourceExhausted(format!(
        "{what} needs {} but the worker can take {}: {}",
        human_bytes(needed),
        human_bytes(available.bytes),
        available.explain()
    )))
}

impl Available {
    /// Which limit binds, in words a user can act on.
    pub fn explain(&self) -> String {
        let mut disk = format!(
            "{} free on its disk, of which it keeps {} (upload.min_free_bytes)",
            human_bytes(self.disk_free),
            human_bytes(self.kept_free)
        );
        if self.caches > 0 {
            disk.push_str(&format!(
                ", and {} of caches it can remove",
                human_bytes(self.caches)
            ));
        }
        match self.quota {
            Some(quota) => format!(
                "{} of its {} upload quota (upload.max_stored_bytes) in use, {disk}; free space \
                 with `client rm JOB`",
                human_bytes(self.stored),
                human_bytes(quota)
            ),
            None => format!("{disk}; free space with `client rm JOB`"),
        }
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| Error::io(dir, e.into()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether an IO error means the disk (or a quota under it) is full.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || error.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || error.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

/// A byte count as a person reads it: `512 bytes`, `3.2 kB`, `41.0 MB`, `1.20 GB`.
pub fn human_bytes(bytes: u64) -> String {
    let value = bytes as f64;
    if bytes < 10_000 {
        format!("{bytes} bytes")
    } else if value < 1e6 {
        format!("{:.1} kB", value / 1e3)
    } else if value < 1e9 {
        format!("{:.1} MB", value / 1e6)
    } else {
        format!("{:.2} GB", value / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_binds_when_it_is_smaller_than_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let budget = UploadBudget::new(dir.path().to_owned(), 1000, 0, 600);
        assert_eq!(budget.available().unwrap().bytes, 400);
        budget.reserve("the upload", 400).unwrap();
        let refused = budget.reserve("the upload", 401).unwrap_err().to_string();
        assert!(
            refused.contains("needs 401 bytes but the worker can take 400 bytes"),
            "{refused}"
        );
        assert!(refused.contains("upload.max_stored_bytes"), "{refused}");
        budget.removed(600);
        budget.removed(5);
        assert_eq!(budget.available().unwrap().bytes, 1000);
    }

    #[test]
    fn blobs_in_flight_hold_their_room_until_stored_or_released() {
        let dir = tempfile::tempdir().unwrap();
        let budget = UploadBudget::new(dir.path().to_owned(), 1000, 0, 0);
        budget.hold("a", 600).unwrap();
        assert_eq!(budget.available().unwrap().bytes, 400);
        let refused = budget.hold("b", 500).unwrap_err().to_string();
        assert!(
            refused.contains("blob b needs 500 bytes but the worker can take 400 bytes"),
            "{refused}"
        );
        // Holding the same blob again (a retried first chunk) does not count it twice.
        budget.hold("a", 600).unwrap();
        // A chunk of it declaring more is checked at that size, in place of what it held.
        let refused = budget.hold("a", 1001).unwrap_err().to_string();
        assert!(
            refused.contains("blob a needs 1001 bytes but the worker can take 1000 bytes"),
            "{refused}"
        );
        assert_eq!(budget.available().unwrap().bytes, 400);
        budget.hold("a", 1000).unwrap();
        assert_eq!(budget.available().unwrap().bytes, 0);
        budget.release("a");
        budget.hold("b", 500).unwrap();
        budget.stored("b", 500);
        assert_eq!(budget.available().unwrap().bytes, 500);
        assert_eq!(budget.available().unwrap().stored, 500);
    }

    #[test]
    fn bytes_written_before_a_restart_hold_their_room_until_the_upload_declares_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let budget = UploadBudget::new(dir.path().to_owned(), 1000, 0, 100);
        // Found on disk at start: counted even past the quota (they are there).
        budget.hold_written("a", 300);
        budget.hold_written("b", 700);
        assert_eq!(budget.available().unwrap().bytes, 0);
        budget.release("b");
        assert_eq!(budget.available().unwrap().bytes, 600);
        // Resumed, it declares its whole size: checked, not taken as already held.
        let refused = budget.hold("a", 901).unwrap_err().to_string();
        assert!(refused.contains("needs 901 bytes"), "{refused}");
        budget.hold("a", 900).unwrap();
        assert_eq!(budget.available().unwrap().bytes, 0);
    }

    #[test]
    fn without_a_quota_the_disk_binds_less_what_is_kept_free() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let budget = UploadBudget::new(dir.path().to_owned(), 0, 1 << 20, 0);
        let available = budget.available().unwrap();
        // Other processes write meanwhile: allow some drift.
        assert!(available.bytes <= free.saturating_sub(1 << 20) + (64 << 20));
        assert!(available.quota.is_none());
    }

    /// Caches that record what they were asked to free.
    struct FakeCaches {
        bytes: u64,
        asked: Mutex<Vec<u64>>,
    }

    impl Reclaimable for FakeCaches {
        fn reclaimable_bytes(&self) -> u64 {
            self.bytes
        }
        fn free_for(&self, needed: u64) {
            self.asked.lock().unwrap().push(needed);
        }
    }

    #[test]
    fn caches_on_a_full_disk_count_as_room_and_give_it_back_when_an_upload_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        // Keep more than the disk has free: without the caches there is no room at all.
        let kept = free_bytes(dir.path()).unwrap() + (256 << 20);
        let budget = UploadBudget::new(dir.path().to_owned(), 0, kept, 0);
        let refused = budget.hold("a", 5 << 20).unwrap_err().to_string();
        assert!(refused.contains("the worker can take 0 bytes"), "{refused}");
        let caches = Arc::new(FakeCaches {
            bytes: 10 << 20,
            asked: Mutex::default(),
        });
        budget.give_way(caches.clone());
        let available = budget.available().unwrap();
        assert_eq!((available.bytes, available.caches), (10 << 20, 10 << 20));
        budget.hold("a", 5 << 20).unwrap();
        budget.hold("b", 4 << 20).unwrap();
        // Each asked for room for itself and what was already in flight.
        assert_eq!(*caches.asked.lock().unwrap(), vec![5 << 20, 9 << 20]);
        let refused = budget.hold("c", 2 << 20).unwrap_err().to_string();
        assert!(refused.contains("of caches it can remove"), "{refused}");
    }
}
