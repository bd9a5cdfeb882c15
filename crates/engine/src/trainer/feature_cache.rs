//! Frozen-backbone feature caching: while the backbone is frozen and its output depends on the
//! image alone, its features are computed once per image (and once per mirror image when flips
//! are drawn) and the head trains on them, so epochs after the first cost almost nothing.
//!
//! A cached epoch draws from libtorch's generator exactly what an uncached one draws (one
//! uniform per image for the flip, then the head's dropout), so a seeded run gives the same
//! results with or without the cache, up to floating-point rounding.

use super::trainee::{ModelInput, Trainee};
use crate::pipeline::{Augment, BatchSource};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Device, Kind, Tensor};

/// The cache may take at most this fraction of the device's free memory.
const MEMORY_FRACTION: f64 = 0.3;

pub struct FeatureCache {
    /// `[N, C, H, W]` features of every image of the dataset, in dataset order; a second
    /// tensor holds those of the mirrored images when training flips them.
    views: Vec<Tensor>,
    labels: Tensor,
    device: Device,
    seconds: f64,
}

/// Why the features are not cached (told to the user once).
#[derive(Debug, Clone, PartialEq)]
pub enum NotCached {
    /// Batch norm or dropout in the backbone, or an augmentation other than flips.
    NotDeterministic(&'static str),
    /// More memory than the cache may take.
    TooLarge { needed: u64, available: u64 },
    /// The device refused the allocation.
    NoMemory(String),
    /// The run was cancelled while the features were computed.
    Cancelled,
}

impl std::fmt::Display for NotCached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotCached::NotDeterministic(why) => write!(f, "{why}"),
            NotCached::TooLarge { needed, available } => write!(
                f,
                "they need {} MB and at most {} MB may be used",
                needed >> 20,
                available >> 20
            ),
            NotCached::NoMemory(why) => write!(f, "the device could not hold them ({why})"),
            NotCached::Cancelled => write!(f, "the run was cancelled"),
        }
    }
}

/// Whether a frozen backbone's features may be cached for this model and augmentation.
fn cacheable(trainee: &Trainee, augment: &Augment) -> Result<(), NotCached> {
    if !trainee.net.backbone_depends_on_image_only() {
        return Err(NotCached::NotDeterministic(
            "the backbone has batch norm or dropout, so its output changes from step to step",
        ));
    }
    if augment.crop_padding > 0 || augment.color_jitter > 0.0 {
        return Err(NotCached::NotDeterministic(
            "random crops and colour jitter change every image every epoch",
        ));
    }
    Ok(())
}

impl FeatureCache {
    /// Computes the features of every image of `source` with the trainee's (frozen) backbone,
    /// `batch_size` images at a time, after checking they fit in memory.
    pub fn build(
        trainee: &Trainee,
        source: &BatchSource,
        augment: &Augment,
        batch_size: usize,
        cancel: &AtomicBool,
    ) -> Result<FeatureCache, NotCached> {
        cacheable(trainee, augment)?;
        let started = std::time::Instant::now();
        let device = source.device();
        let kind = trainee.compute_kind();
        let [channels, height, width] = trainee.net.feature_map();
        let images = source.len() as i64;
        let view_count: i64 = if augment.flip { 2 } else { 1 };
        let needed = (view_count * images * channels * height * width) as u64
            * kind.elt_size_in_bytes() as u64;
        let available = crate::device::free_memory_bytes(device)
            .map_or(4 << 30, |free| (free as f64 * MEMORY_FRACTION) as u64);
        if needed > available {
            return Err(NotCached::TooLarge { needed, available });
        }

        let _no_grad = tch::no_grad_guard();
        let views = (0..view_count)
            .map(|_| Tensor::f_empty([images, channels, height, width], (kind, device)))
            .collect::<Result<Vec<Tensor>, _>>()
            .map_err(|error| {
                NotCached::NoMemory(error.to_string().lines().next().unwrap_or("").to_string())
            })?;
        let all: Vec<i64> = (0..images).collect();
        let index = source.indices(&all);
        let batch_size = batch_size.max(1) as i64;
        let mut start = 0;
        while start < images {
            if cancel.load(Ordering::Relaxed) {
                return Err(NotCached::Cancelled);
            }
            let length = batch_size.min(images - start);
            let (x, _) = source.batch(&index.narrow(0, start, length), None);
            views[0]
                .narrow(0, start, length)
                .copy_(&trainee.backbone_features(&x));
            if let Some(mirrored) = views.get(1) {
                // Mirroring commutes with normalisation: the same image an uncached flip sees.
                mirrored
                    .narrow(0, start, length)
                    .copy_(&trainee.backbone_features(&x.flip([3])));
            }
            start += length;
        }
        // Waits for the device, so the time is the work's.
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        Ok(FeatureCache {
            views,
            labels: source.labels(),
            device,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// What to tell the user about the cache.
    pub fn describe(&self) -> String {
        let shape = self.views[0].size();
        let views = if self.views.len() == 2 {
            " and their mirror images"
        } else {
            ""
        };
        format!(
            "features cached: {} images{views}, {}x{}x{} each, {:.1} MB on {}, in {:.1} s; the head trains on them while the backbone is frozen",
            shape[0],
            shape[1],
            shape[2],
            shape[3],
            self.bytes() as f64 / 1e6,
            crate::device::device_name(self.device),
            self.seconds
        )
    }

    pub fn bytes(&self) -> u64 {
        self.views
            .iter()
            .map(|view| (view.numel() * view.kind().elt_size_in_bytes()) as u64)
            .sum()
    }

    /// Dataset indices as a tensor where `batch` wants them.
    pub fn indices(&self, indices: &[i64]) -> Tensor {
        Tensor::from_slice(indices).to_device(self.device)
    }

    /// The features and labels of the images at `indices`; with `flip`, each image's mirror
    /// view is taken with probability 1/2, drawn as the uncached augmentation draws it.
    pub fn batch(&self, indices: &Tensor, flip: bool) -> (ModelInput, Tensor) {
        let plain = self.views[0].index_select(0, indices);
        let features = match self.views.get(1) {
            Some(mirrored) if flip => {
                let batch = indices.size()[0];
                let flipped = Tensor::rand([batch, 1, 1, 1], (Kind::Float, self.device)).lt(0.5);
                mirrored
                    .index_select(0, indices)
                    .where_self(&flipped, &plain)
            }
            _ => plain,
        };
        (
            ModelInput::Features(features),
            self.labels.index_select(0, indices),
        )
    }
}
