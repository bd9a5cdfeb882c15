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

/// Whether the features of every image of `source` may be cached on its device: the backbone's
/// output depends on the image alone, and they fit the memory the cache may take.
pub(crate) fn may_cache(
    trainee: &Trainee,
    source: &BatchSource,
    augment: &Augment,
) -> Result<(), NotCached> {
    cacheable(trainee, augment)?;
    let [channels, height, width] = trainee.net.feature_map();
    let view_count: i64 = if augment.flip { 2 } else { 1 };
    let needed = (view_count * source.len() as i64 * channels * height * width) as u64
        * trainee.compute_kind().elt_size_in_bytes() as u64;
    let available = crate::device::free_memory_bytes(source.device())
        .map_or(4 << 30, |free| (free as f64 * MEMORY_FRACTION) as u64);
    if needed > available {
        return Err(NotCached::TooLarge { needed, available });
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
        may_cache(trainee, source, augment)?;
        let started = std::time::Instant::now();
        let device = source.device();
        let kind = trainee.compute_kind();
        let [channels, height, width] = trainee.net.feature_map();
        let images = source.len() as i64;
        let view_count: i64 = if augment.flip { 2 } else { 1 };

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

    /// Features another run computed (`shared_features`), as the cache holds them.
    pub fn from_views(
        views: Vec<Tensor>,
        labels: Tensor,
        device: Device,
        took: std::time::Duration,
    ) -> FeatureCache {
        FeatureCache {
            views,
            labels,
            device,
            seconds: took.as_secs_f64(),
        }
    }

    /// The features of every image, then of every mirror image when flips are drawn.
    pub fn views(&self) -> &[Tensor] {
        &self.views
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{build_classifier, set_backbone_trainable};
    use crate::pipeline::DecodedDataset;
    use crate::trainer::epoch::{EpochPlan, train_epoch};
    use crate::trainer::optimizer::{Hyperparameters, Optimizer, parameters_of};
    use easel_spec::{Architecture, AugmentSpec, ModelSpec, TrainSpec};
    use tch::nn::VarStore;

    const IMAGES: i64 = 24;
    const SIDE: i64 = 16;

    /// A small CNN with its backbone frozen, its weights those of `like` when given. No dropout
    /// and no flips: an epoch then draws nothing from libtorch's generator, which tests on other
    /// threads share.
    fn frozen_trainee(like: Option<&Trainee>) -> Trainee {
        let model = ModelSpec {
            architecture: Architecture::SmallCnn,
            head: vec![16],
            ..ModelSpec::default()
        };
        let mut vs = VarStore::new(Device::Cpu);
        let net = build_classifier(&vs.root(), &model, 3, (SIDE, SIDE)).unwrap();
        if let Some(like) = like {
            vs.copy(&like.vs).unwrap();
        }
        set_backbone_trainable(&vs, false);
        let optimizer = Optimizer::new(
            Hyperparameters::of(&TrainSpec::default()),
            parameters_of(&vs),
        );
        Trainee {
            vs,
            net,
            optimizer,
            bf16: None,
        }
    }

    fn poison_backbone(trainee: &Trainee) {
        tch::no_grad(|| {
            for (name, mut tensor) in trainee.vs.variables() {
                if name.starts_with("features.") {
                    let _ = tensor.fill_(f64::NAN);
                }
            }
        });
    }

    /// Once the features are cached, an epoch never runs the backbone: with its weights turned
    /// to NaN after caching, a cached epoch trains exactly as with them intact, while an epoch on
    /// images is ruined by them.
    #[test]
    fn a_cached_epoch_never_runs_the_backbone() {
        let data = DecodedDataset {
            images: Tensor::randint(256, [IMAGES, 3, SIDE, SIDE], (Kind::Uint8, Device::Cpu)),
            labels: Tensor::arange(IMAGES, (Kind::Int64, Device::Cpu)).remainder(3),
            height: SIDE as u32,
            width: SIDE as u32,
        };
        let source = BatchSource::new(&data, Device::Cpu, false).unwrap();
        let no_flips = AugmentSpec {
            flip: false,
            ..AugmentSpec::default()
        };
        let augment = Augment::from_spec(&no_flips, SIDE as u32, SIDE as u32);
        let train = TrainSpec::default();
        let indices: Vec<i64> = (0..IMAGES).collect();
        let cancel = AtomicBool::new(false);
        let first = frozen_trainee(None);
        let epoch = |poisoned: bool, cached: bool| {
            let mut trainee = frozen_trainee(Some(&first));
            let cache = FeatureCache::build(&trainee, &source, &augment, 8, &cancel).unwrap();
            if poisoned {
                poison_backbone(&trainee);
            }
            let plan = EpochPlan {
                train: &train,
                augment: &augment,
                train_indices: &indices,
                batch_size: 8,
                steps_per_epoch: 3,
                total_steps: 3,
                backbone_lr_scale: 1.0,
                cancel: &cancel,
                features: cached.then_some(&cache),
            };
            let totals = train_epoch(&mut trainee, &source, &plan, 1, 1, &mut 0, &mut |_| {})
                .unwrap()
                .expect("not cancelled");
            let head: Vec<(String, Tensor)> = trainee
                .vs
                .variables()
                .into_iter()
                .filter(|(name, _)| name.starts_with("classifier."))
                .collect();
            (totals.loss, head)
        };

        let (intact_loss, intact_head) = epoch(false, true);
        let (poisoned_loss, poisoned_head) = epoch(true, true);
        assert!(intact_loss.is_finite(), "{intact_loss}");
        assert_eq!(intact_loss, poisoned_loss);
        let poisoned_head: std::collections::HashMap<_, _> = poisoned_head.into_iter().collect();
        for (name, tensor) in &intact_head {
            assert!(tensor.equal(&poisoned_head[name]), "{name} differs");
        }
        let (uncached_loss, _) = epoch(true, false);
        assert!(uncached_loss.is_nan(), "{uncached_loss}");
    }
}
