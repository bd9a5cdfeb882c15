//! A frozen backbone's features shared across runs. Runs that agree on everything the features
//! depend on (the decoded images, the backbone's weights, the compute precision, whether flips
//! are drawn) compute them once: the first writes `<cache>/features-<key>.bin`, the others map it.
//! So a sweep over heads, optimizers, learning rates or epochs on a frozen backbone costs one
//! backbone pass plus the head trainings. The key hashes the backbone's weights themselves, so
//! two runs share only features their own backbone would have computed.
//!
//! File layout: `MAGIC`, header length (u64 little-endian), header JSON, zeros up to
//! `DATA_OFFSET`, then `views x images x channels x height x width` elements of the compute kind.
//! Written to a temporary file of its own and renamed, like the decoded cache.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::feature_cache::{FeatureCache, NotCached, may_cache};
use super::trainee::Trainee;
use crate::pipeline::cache::{self, BuildLock, FEATURES_PREFIX, FEATURES_SUFFIX};
use crate::pipeline::{Augment, BatchSource};

const MAGIC: &[u8; 8] = b"EASELFT\x01";
/// Where the features start: past any header, aligned for every element kind.
const DATA_OFFSET: u64 = 4096;
/// The backbone's variables are named under this prefix.
const BACKBONE_PREFIX: &str = "features.";

/// Where shared features live, and who this run is (for the note a reusing run gives).
#[derive(Debug, Clone)]
pub struct SharedCacheDir {
    pub dir: PathBuf,
    /// The decoded images the features come from (their cache's key).
    pub images_key: String,
    pub run_label: String,
    /// Whose run this is: another owner's reuse is told "another run", not the job.
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    key: String,
    views: i64,
    images: i64,
    channels: i64,
    height: i64,
    width: i64,
    kind: String,
}

impl Header {
    fn elements(&self) -> i64 {
        self.views * self.images * self.channels * self.height * self.width
    }
}

/// How this run got its features.
pub enum Obtained {
    /// Computed here; `shared` when written for other runs (a full disk, say, keeps them here).
    Computed { cache: FeatureCache, shared: bool },
    /// Read from the file another run (named, when it said) wrote.
    Reused(FeatureCache, Option<String>),
}

/// The features of every image of `source`, from the shared file when another run wrote it,
/// else computed (as [`FeatureCache::build`]) and written there. A run that finds another
/// computing the same features waits for it.
pub fn obtain(
    shared: &SharedCacheDir,
    trainee: &Trainee,
    source: &BatchSource,
    augment: &Augment,
    batch_size: usize,
    cancel: &AtomicBool,
) -> Result<Obtained, NotCached> {
    // Before any file is read: a run whose augmentation changes its images every epoch, or
    // whose features would not fit, trains on images whatever another run wrote.
    may_cache(trainee, source, augment)?;
    let [channels, height, width] = trainee.net.feature_map();
    let kind = trainee.compute_kind();
    let header = Header {
        key: features_key(shared, trainee, augment.flip),
        views: if augment.flip { 2 } else { 1 },
        images: source.len() as i64,
        channels,
        height,
        width,
        kind: format!("{kind:?}"),
    };
    let path = shared
        .dir
        .join(format!("{FEATURES_PREFIX}{}{FEATURES_SUFFIX}", header.key));
    if let Some(views) = read(&path, &header, kind) {
        return reused(shared, &path, views, source);
    }
    let _building = BuildLock::acquire(&path);
    if let Some(views) = read(&path, &header, kind) {
        return reused(shared, &path, views, source);
    }
    let cache = FeatureCache::build(trainee, source, augment, batch_size, cancel)?;
    let written = match write(&path, &header, cache.views()) {
        Ok(()) => {
            cache::record_writer(&path, &shared.owner, &shared.run_label);
            true
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "features not shared");
            false
        }
    };
    Ok(Obtained::Computed {
        cache,
        shared: written,
    })
}

fn reused(
    shared: &SharedCacheDir,
    path: &Path,
    views: Vec<Tensor>,
    source: &BatchSource,
) -> Result<Obtained, NotCached> {
    let started = std::time::Instant::now();
    let device = source.device();
    let views = views
        .into_iter()
        .map(|view| view.f_to_device(device))
        .collect::<Result<Vec<Tensor>, _>>()
        .map_err(|error| {
            NotCached::NoMemory(error.to_string().lines().next().unwrap_or("").to_string())
        })?;
    // Used now: the worker trims the least recently used cache files first.
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
    let cache = FeatureCache::from_views(views, source.labels(), device, started.elapsed());
    Ok(Obtained::Reused(
        cache,
        cache::writer_of(path, &shared.owner),
    ))
}

/// blake3 of what the features depend on: the decoded images, the backbone's output shape and
/// weights (every variable under `features.`, by name), the compute kind and the flips (the only
/// augmentation cached features allow).
fn features_key(shared: &SharedCacheDir, trainee: &Trainee, flip: bool) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"easel frozen features v1\n");
    hasher.update(shared.images_key.as_bytes());
    hasher.update(
        format!(
            "\n{:?}\n{:?}\nflip={flip}\n",
            trainee.net.feature_map(),
            trainee.compute_kind()
        )
        .as_bytes(),
    );
    let mut variables: Vec<(String, Tensor)> = trainee
        .vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.starts_with(BACKBONE_PREFIX))
        .collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, tensor) in variables {
        let values = tensor
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let numel = values.numel();
        let mut bytes = vec![0u8; numel * 4];
        values.copy_data_u8(&mut bytes, numel);
        hasher.update(name.as_bytes());
        hasher.update(&(numel as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    hasher.finalize().to_hex().to_string()
}

/// The file's views, mapped, when it was written for `expected`.
fn read(path: &Path, expected: &Header, kind: Kind) -> Option<Vec<Tensor>> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut prefix = [0u8; 16];
    file.read_exact(&mut prefix).ok()?;
    if &prefix[..8] != MAGIC {
        return None;
    }
    let header_len = u64::from_le_bytes(prefix[8..16].try_into().ok()?);
    if 16 + header_len > DATA_OFFSET {
        return None;
    }
    let mut text = vec![0u8; header_len as usize];
    file.read_exact(&mut text).ok()?;
    let header: Header = serde_json::from_slice(&text).ok()?;
    if &header != expected {
        return None;
    }
    let data_bytes = header.elements() as u64 * kind.elt_size_in_bytes() as u64;
    if file.metadata().ok()?.len() != DATA_OFFSET + data_bytes {
        return None;
    }
    let name = path.to_str()?;
    let total = (DATA_OFFSET + data_bytes) as i64;
    // A shared mapping, read only (as the decoded cache's): its pages are the page cache's.
    let whole = Tensor::f_from_file(name, true, total, (Kind::Uint8, Device::Cpu)).ok()?;
    let all = whole
        .narrow(0, DATA_OFFSET as i64, data_bytes as i64)
        .f_view_dtype(kind)
        .ok()?
        .view([
            header.views,
            header.images,
            header.channels,
            header.height,
            header.width,
        ]);
    Some((0..header.views).map(|view| all.select(0, view)).collect())
}

fn write(path: &Path, header: &Header, views: &[Tensor]) -> std::io::Result<()> {
    let temporary = cache::temporary_sibling(path);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        let text = serde_json::to_vec(header).map_err(std::io::Error::other)?;
        let mut start = MAGIC.to_vec();
        start.extend_from_slice(&(text.len() as u64).to_le_bytes());
        start.extend_from_slice(&text);
        start.resize(DATA_OFFSET as usize, 0);
        file.write_all(&start)?;
        for view in views {
            let values = view.to_device(Device::Cpu).contiguous();
            let numel = values.numel();
            let mut bytes = vec![0u8; numel * values.kind().elt_size_in_bytes()];
            values.copy_data_u8(&mut bytes, numel);
            file.write_all(&bytes)?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
