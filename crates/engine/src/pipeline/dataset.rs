//! A whole manifest decoded into one u8 tensor `[N, 3, H, W]` plus labels, in parallel on all
//! cores, through the decoded cache when a cache directory is given.

use super::{cache, decode::decode_rgb_chw};
use crate::{Error, Result};
use easel_dataset::{ImageSource, Manifest, ManifestEntry};
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// Decoded images in manifest order, on the CPU.
#[derive(Debug)]
pub struct DecodedDataset {
    /// u8 `[N, 3, H, W]`.
    pub images: Tensor,
    /// i64 `[N]`, class indices.
    pub labels: Tensor,
    pub height: u32,
    pub width: u32,
}

impl DecodedDataset {
    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What every image is decoded to: the training size, and the most pixels its file may hold
/// (checked from the header, before any pixel is decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeTarget {
    pub height: u32,
    pub width: u32,
    pub max_pixels: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache directory given: decoded from the source.
    Disabled,
    /// Loaded from the cache; nothing was decoded.
    Hit,
    /// Decoded from the source and saved to the cache for next time.
    Written,
}

#[derive(Debug)]
pub struct LoadedDataset {
    pub data: DecodedDataset,
    pub cache: CacheStatus,
    /// The decoded cache file read or written (none without a cache folder).
    pub cache_file: Option<std::path::PathBuf>,
    /// The run that decoded the cache this one read, as this run may be told.
    pub decoded_by: Option<String>,
    /// Images decoded by this call (0 on a cache hit).
    pub decoded_images: usize,
    pub seconds: f64,
}

/// The decoded cache of `manifest` at `height`x`width` in `cache_dir`, and its size in bytes
/// (for a caller making room for it before a run).
pub fn decoded_cache_file(
    cache_dir: &Path,
    manifest: &Manifest,
    height: u32,
    width: u32,
) -> (std::path::PathBuf, u64) {
    let header = cache_header(manifest, height, width);
    (
        cache::cache_path(cache_dir, &header.key),
        header.pixel_bytes(),
    )
}

fn cache_header(manifest: &Manifest, height: u32, width: u32) -> cache::CacheHeader {
    cache::CacheHeader {
        key: cache::cache_key(&super::ordered_entries_digest(manifest), height, width),
        images: manifest.entries.len() as u64,
        height,
        width,
    }
}

/// How often a long decode says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Decodes every entry of `manifest` to `target`, or reads them from `cache_dir`.
pub fn load_manifest(
    manifest: &Manifest,
    source: &dyn ImageSource,
    target: DecodeTarget,
    cache_dir: Option<&Path>,
) -> Result<LoadedDataset> {
    let nobody = cache::Author::default();
    load_manifest_reporting(manifest, source, target, cache_dir, nobody, &mut |_, _| {})
}

/// `load_manifest`, calling `progress(decoded, total)` every few seconds while it decodes (a
/// first decode of a large dataset takes minutes).
pub fn load_manifest_reporting(
    manifest: &Manifest,
    source: &dyn ImageSource,
    target: DecodeTarget,
    cache_dir: Option<&Path>,
    author: cache::Author,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedDataset> {
    let DecodeTarget { height, width, .. } = target;
    let started = Instant::now();
    let labels: Vec<i64> = manifest
        .entries
        .iter()
        .map(|e| i64::from(e.class))
        .collect();
    let entries: Vec<&ManifestEntry> = manifest.entries.iter().collect();
    let header = cache_header(manifest, height, width);
    let cache_file = cache_dir.map(|dir| cache::cache_path(dir, &header.key));
    let (images, status, decoded) = match cache_dir {
        None => {
            let pixels = decode_watched(&entries, source, target, PROGRESS_EVERY, progress, None)?;
            let images = pixels_tensor(&pixels, entries.len(), height, width);
            (images, CacheStatus::Disabled, entries.len())
        }
        Some(dir) => {
            let path = cache::cache_path(dir, &header.key);
            read_or_decode(&path, &header, &entries, source, target, author, progress)?
        }
    };
    let decoded_by = match (&cache_file, status) {
        (Some(file), CacheStatus::Hit) => author.told_writer_of(file),
        _ => None,
    };
    let data = DecodedDataset {
        images,
        labels: Tensor::from_slice(&labels),
        height,
        width,
    };
    Ok(LoadedDataset {
        data,
        cache: status,
        cache_file,
        decoded_by,
        decoded_images: decoded,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The cache at `path` when it is there; else the entries decoded into it. A run that finds
/// another decoding the same cache waits and reads what it wrote (see [`cache::BuildLock`]).
fn read_or_decode(
    path: &Path,
    header: &cache::CacheHeader,
    entries: &[&ManifestEntry],
    source: &dyn ImageSource,
    target: DecodeTarget,
    author: cache::Author,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor, CacheStatus, usize)> {
    if let Some(images) = cache::read(path, header)? {
        tracing::info!(path = %path.display(), images = entries.len(), "decoded cache hit");
        return Ok((images, CacheStatus::Hit, 0));
    }
    let _decoding = cache::BuildLock::acquire(path);
    if let Some(images) = cache::read(path, header)? {
        tracing::info!(path = %path.display(), "decoded cache written meanwhile by another run");
        return Ok((images, CacheStatus::Hit, 0));
    }
    // Each image goes straight to its place in the cache file: a dataset larger than memory
    // decodes in the memory of a few images.
    let writer = cache::CacheWriter::create(path, header)?;
    decode_watched(
        entries,
        source,
        target,
        PROGRESS_EVERY,
        progress,
        Some(&writer),
    )?;
    let images = writer.finish()?;
    // Named before the lock is let go: a run waiting for it reads who decoded the images.
    cache::record_writer(path, author.owner, author.label);
    tracing::info!(path = %path.display(), images = entries.len(), "decoded cache written");
    Ok((images, CacheStatus::Written, entries.len()))
}

/// Decodes `entries` (no cache) into a dataset; labels from the entries' classes.
pub fn decode_dataset(
    entries: &[&ManifestEntry],
    source: &dyn ImageSource,
    target: DecodeTarget,
) -> Result<DecodedDataset> {
    let pixels = decode_entries(entries, source, target)?;
    let labels = entries.iter().map(|e| i64::from(e.class)).collect();
    Ok(to_tensors(&pixels, labels, target.height, target.width))
}

/// CHW u8 pixels of every entry, concatenated in order. Decodes on all cores; the first failure
/// (in entry order) is reported with the entry's path.
pub fn decode_entries(
    entries: &[&ManifestEntry],
    source: &dyn ImageSource,
    target: DecodeTarget,
) -> Result<Vec<u8>> {
    decode_counting(entries, source, target, &AtomicUsize::new(0), None)
}

/// `decode_counting` on a thread of its own, while this one hands `progress` the count done
/// `every` so often.
fn decode_watched(
    entries: &[&ManifestEntry],
    source: &dyn ImageSource,
    target: DecodeTarget,
    every: Duration,
    progress: &mut dyn FnMut(usize, usize),
    into_cache: Option<&cache::CacheWriter>,
) -> Result<Vec<u8>> {
    let done = AtomicUsize::new(0);
    let watcher = std::thread::current();
    std::thread::scope(|scope| {
        let decoding = scope.spawn(|| {
            let decoded = decode_counting(entries, source, target, &done, into_cache);
            watcher.unpark();
            decoded
        });
        let mut next_report = Instant::now() + every;
        while !decoding.is_finished() {
            std::thread::park_timeout(next_report.saturating_duration_since(Instant::now()));
            if Instant::now() >= next_report && !decoding.is_finished() {
                progress(done.load(Ordering::Relaxed), entries.len());
                next_report = Instant::now() + every;
            }
        }
        decoding
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Decodes every entry on all cores, counting them in `done`: into the cache file when one is
/// given (and then returns no pixels), else into memory.
fn decode_counting(
    entries: &[&ManifestEntry],
    source: &dyn ImageSource,
    target: DecodeTarget,
    done: &AtomicUsize,
    into_cache: Option<&cache::CacheWriter>,
) -> Result<Vec<u8>> {
    let DecodeTarget {
        height,
        width,
        max_pixels,
    } = target;
    let decode = |entry: &ManifestEntry| {
        let decoded = source
            .read(entry)
            .map_err(|e| Error::Image {
                name: entry.path.clone(),
                message: e.to_string(),
            })
            .and_then(|bytes| decode_rgb_chw(&bytes, &entry.path, max_pixels, height, width));
        done.fetch_add(1, Ordering::Relaxed);
        decoded
    };
    match into_cache {
        Some(writer) => {
            let failures = entries
                .par_iter()
                .enumerate()
                .filter_map(|(index, entry)| {
                    let stored = decode(entry).and_then(|chw| writer.write_image(index, &chw));
                    stored.err().map(|err| (index, err))
                })
                .collect();
            first_in_order(failures).map_or(Ok(Vec::new()), Err)
        }
        None => {
            let per_image = 3 * height as usize * width as usize;
            let mut pixels = vec![0u8; per_image * entries.len()];
            let failures = pixels
                .par_chunks_mut(per_image.max(1))
                .zip(entries.par_iter())
                .enumerate()
                .filter_map(|(index, (slot, entry))| {
                    let stored = decode(entry).map(|chw| slot.copy_from_slice(&chw));
                    stored.err().map(|err| (index, err))
                })
                .collect();
            first_in_order(failures).map_or(Ok(pixels), Err)
        }
    }
}

/// The failure of the earliest entry (the one a sequential decode would have met first).
fn first_in_order(failures: Vec<(usize, Error)>) -> Option<Error> {
    failures
        .into_iter()
        .min_by_key(|(index, _)| *index)
        .map(|(_, err)| err)
}

fn pixels_tensor(pixels: &[u8], images: usize, height: u32, width: u32) -> Tensor {
    Tensor::from_data_size(
        pixels,
        &[images as i64, 3, i64::from(height), i64::from(width)],
        Kind::Uint8,
    )
}

fn to_tensors(pixels: &[u8], labels: Vec<i64>, height: u32, width: u32) -> DecodedDataset {
    DecodedDataset {
        images: pixels_tensor(pixels, labels.len(), height, width),
        labels: Tensor::from_slice(&labels),
        height,
        width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// Small PNGs that cannot be read until the decode has said how far it got: the decode is
    /// still running when its first report is due, as a long one is.
    struct HeldSource {
        png: Vec<u8>,
        reported: Mutex<bool>,
        report_heard: Condvar,
    }

    impl HeldSource {
        fn release(&self) {
            *self.reported.lock().unwrap() = true;
            self.report_heard.notify_all();
        }
    }

    impl ImageSource for HeldSource {
        fn read(&self, _: &ManifestEntry) -> std::io::Result<Vec<u8>> {
            // A bound on a broken decode, so the test fails instead of hanging.
            let (reported, waited) = self
                .report_heard
                .wait_timeout_while(
                    self.reported.lock().unwrap(),
                    Duration::from_secs(120),
                    |reported| !*reported,
                )
                .unwrap();
            drop(reported);
            if waited.timed_out() {
                return Err(std::io::Error::other("no progress was reported"));
            }
            Ok(self.png.clone())
        }
    }

    #[test]
    fn a_long_decode_says_how_far_it_got() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let entries: Vec<ManifestEntry> = (0..40)
            .map(|i| ManifestEntry {
                path: format!("a/{i}.png"),
                class: 0,
                size: png.len() as u64,
                digest: easel_dataset::digest_bytes(&png),
                subset: None,
            })
            .collect();
        let entries: Vec<&ManifestEntry> = entries.iter().collect();
        let source = HeldSource {
            png,
            reported: Mutex::new(false),
            report_heard: Condvar::new(),
        };
        let mut heard = Vec::new();
        let pixels = decode_watched(
            &entries,
            &source,
            DecodeTarget {
                height: 4,
                width: 4,
                max_pixels: 1 << 20,
            },
            Duration::from_millis(20),
            &mut |done, total| {
                heard.push((done, total));
                source.release();
            },
            None,
        )
        .unwrap();
        assert_eq!(pixels.len(), 40 * 3 * 4 * 4);
        assert!(!heard.is_empty(), "no progress during the decode");
        assert!(heard.windows(2).all(|w| w[0].0 <= w[1].0), "{heard:?}");
        assert!(
            heard
                .iter()
                .all(|&(done, total)| done <= total && total == 40),
            "{heard:?}"
        );
    }
}
