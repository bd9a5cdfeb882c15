//! Batches for the model, from a decoded u8 dataset. On CUDA the whole u8 dataset lives on the
//! GPU when it fits (cheap: 1 byte a channel), so a batch is one `index_select` there. Otherwise
//! it is streamed: a thread gathers the images of an epoch's batches ahead of the step that needs
//! them (into pinned memory on CUDA, so the copy overlaps the GPU's work), reading the decoded
//! cache mapped from disk, so a dataset larger than host memory trains at the step time of one
//! that fits, as long as the disk keeps up with the gathering. Labels (8 bytes an image) always
//! live on the training device, and a streamed pass uploads its order once: a batch's labels are
//! an `index_select` there, not a copy of their own.

use super::{Augment, DecodedDataset, Normalisation, channels_last};
use crate::{Error, Result};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// The GPU-resident dataset may use at most this fraction of the free device memory.
const RESIDENT_FRACTION: f64 = 0.4;

/// On the CPU, a dataset above this fraction of the host's available memory is streamed: held
/// resident, its pages would be read back from disk in the order of a shuffled epoch, one fault
/// at a time, by the training step itself.
const HOST_RESIDENT_FRACTION: f64 = 0.5;

/// Gathered batches that may wait ahead of the step that needs them.
const PREFETCH_DEPTH: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// The u8 dataset is on the training device.
    OnDevice,
    /// The u8 dataset stays in host memory (or on disk, mapped); batches are gathered ahead by
    /// a thread of their own and copied over.
    Streamed,
}

#[derive(Debug)]
pub struct BatchSource {
    images: Tensor,
    labels: Tensor,
    device: Device,
    channels_last: bool,
    residency: Residency,
    normalisation: Normalisation,
}

impl BatchSource {
    /// `channels_last`: batches laid out NHWC (see [`super::channels_last_on`]).
    pub fn new(data: &DecodedDataset, device: Device, channels_last: bool) -> Result<Self> {
        let residency = choose_residency(&data.images, device);
        Self::with_residency(data, device, channels_last, residency)
    }

    /// A source that keeps the dataset where `residency` says, whatever its size.
    pub fn with_residency(
        data: &DecodedDataset,
        device: Device,
        channels_last: bool,
        residency: Residency,
    ) -> Result<Self> {
        let images = match residency {
            Residency::OnDevice => data.images.to_device(device),
            Residency::Streamed => data.images.shallow_clone(),
        };
        let labels = data.labels.to_device(device);
        Ok(BatchSource {
            images,
            labels,
            device,
            channels_last,
            residency,
            normalisation: Normalisation::on(device),
        })
    }

    pub fn residency(&self) -> Residency {
        self.residency
    }

    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The training device (where batches end up).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The label of every image, in dataset order, on the training device.
    pub fn labels(&self) -> Tensor {
        self.labels.shallow_clone()
    }

    /// Where index tensors passed to `batch` must live.
    pub fn index_device(&self) -> Device {
        self.images.device()
    }

    /// Indices (into the decoded dataset) as a tensor on `index_device()`.
    pub fn indices(&self, indices: &[i64]) -> Tensor {
        Tensor::from_slice(indices).to_device(self.index_device())
    }

    /// Image `index`'s pixels as decoded, u8 `[3, H, W]` on the CPU (for thumbnails).
    pub fn pixels(&self, index: i64) -> Tensor {
        self.images.get(index).to_device(Device::Cpu)
    }

    /// The normalised float input `[B, 3, H, W]` and the labels `[B]`, on the training device.
    pub fn batch(&self, indices: &Tensor, augment: Option<&Augment>) -> (Tensor, Tensor) {
        let images = self.images.index_select(0, indices);
        // A streamed source's indices are on the host, its labels on the device.
        let on_device = indices.to_device_(self.device, Kind::Int64, true, false);
        let labels = self.labels.index_select(0, &on_device);
        (self.prepare(images, augment), labels)
    }

    /// The batches of one pass over `order` (dataset indices): `steps` batches of `batch_size`
    /// images, the last one shorter when `order` runs out. A streamed source gathers them ahead
    /// on a thread of its own.
    pub fn batches(&self, order: &[i64], batch_size: usize, steps: u64) -> Result<Batches<'_>> {
        let batch_size = batch_size.max(1);
        let gathering = match self.residency {
            Residency::OnDevice => Gathering::OnDevice {
                order: self.indices(order),
                batch_size: batch_size as i64,
                steps,
                next: 0,
            },
            Residency::Streamed => {
                let (ready, waiting) = sync_channel(PREFETCH_DEPTH);
                let expected = (order.len().div_ceil(batch_size) as u64).min(steps);
                let gatherer = Gatherer {
                    images: self.images.shallow_clone(),
                    order: order.to_vec(),
                    batch_size,
                    steps,
                    pinned: self.device.is_cuda(),
                };
                let thread = std::thread::Builder::new()
                    .name("easel-batches".into())
                    .spawn(move || gatherer.run(ready))
                    .map_err(|e| Error::Invalid(format!("cannot start the batch thread: {e}")))?;
                Gathering::Prefetched {
                    waiting: Some(waiting),
                    thread: Some(thread),
                    left: expected,
                    order: Tensor::from_slice(order).to_device(self.device),
                    batch_size: batch_size as i64,
                    next: 0,
                }
            }
        };
        Ok(Batches {
            source: self,
            gathering,
        })
    }

    /// Gathered u8 images -> the model's input, on the device (labels are there already).
    fn prepare(&self, images: Tensor, augment: Option<&Augment>) -> Tensor {
        let images = match self.residency {
            Residency::OnDevice => images,
            Residency::Streamed => images.to_device_(self.device, Kind::Uint8, true, false),
        };
        let x01 = images.to_kind(Kind::Float) / 255.0;
        let x01 = match augment {
            Some(augment) if !augment.is_identity() => augment.apply(&x01),
            _ => x01,
        };
        let x = self.normalisation.apply(&x01);
        if self.channels_last {
            channels_last(&x)
        } else {
            x
        }
    }
}

/// The batches of one pass, in order (`BatchSource::batches`).
pub struct Batches<'a> {
    source: &'a BatchSource,
    gathering: Gathering,
}

enum Gathering {
    /// Each batch is one `index_select` where the dataset lives.
    OnDevice {
        order: Tensor,
        batch_size: i64,
        steps: u64,
        next: u64,
    },
    /// A thread gathers the batches' images ahead; `None` once the pass is dropped.
    Prefetched {
        waiting: Option<Receiver<GatheredImages>>,
        thread: Option<JoinHandle<()>>,
        /// Batches still to come: a thread that stops before sending them all failed.
        left: u64,
        /// The pass's order on the training device, where the labels are.
        order: Tensor,
        batch_size: i64,
        next: i64,
    },
}

impl Batches<'_> {
    /// The next batch's model input and labels, on the training device; `None` after the last.
    pub fn next_batch(&mut self, augment: Option<&Augment>) -> Result<Option<(Tensor, Tensor)>> {
        let (images, labels) = match &mut self.gathering {
            Gathering::OnDevice {
                order,
                batch_size,
                steps,
                next,
            } => {
                let start = *next as i64 * *batch_size;
                let total = order.size()[0];
                if *next >= *steps || start >= total {
                    return Ok(None);
                }
                *next += 1;
                let indices = order.narrow(0, start, (*batch_size).min(total - start));
                (
                    self.source.images.index_select(0, &indices),
                    self.source.labels.index_select(0, &indices),
                )
            }
            Gathering::Prefetched {
                waiting,
                thread,
                left,
                order,
                batch_size,
                next,
            } => {
                let Some(receiver) = waiting else {
                    return Ok(None);
                };
                match receiver.recv() {
                    Ok(Ok(images)) => {
                        *left = left.saturating_sub(1);
                        let start = *next * *batch_size;
                        *next += 1;
                        let indices = order.narrow(0, start, images.size()[0]);
                        (images, self.source.labels.index_select(0, &indices))
                    }
                    Ok(Err(why)) => {
                        return Err(Error::Invalid(format!("gathering a batch failed: {why}")));
                    }
                    // The gatherer sent every batch and stopped.
                    Err(_) if *left == 0 => return Ok(None),
                    Err(_) => {
                        *waiting = None;
                        let panicked = thread.take().is_some_and(|t| t.join().is_err());
                        return Err(Error::Invalid(format!(
                            "the batch thread stopped with {left} batch(es) of the pass not                              gathered{}",
                            if panicked { " (it panicked)" } else { "" }
                        )));
                    }
                }
            }
        };
        Ok(Some((self.source.prepare(images, augment), labels)))
    }
}

impl Drop for Batches<'_> {
    fn drop(&mut self) {
        if let Gathering::Prefetched {
            waiting, thread, ..
        } = &mut self.gathering
        {
            // Closing the channel first stops a gatherer waiting to hand over its next batch.
            drop(waiting.take());
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// What the batch thread of a streamed pass owns.
struct Gatherer {
    images: Tensor,
    order: Vec<i64>,
    batch_size: usize,
    steps: u64,
    /// On CUDA: batches are gathered into pinned memory (see `easel_aten::empty_pinned`: PyTorch's
    /// caching host allocator hands a block out again only after its copy to the GPU finished).
    pinned: bool,
}

/// A batch's images, or why they could not be gathered.
type GatheredImages = std::result::Result<Tensor, String>;

impl Gatherer {
    fn run(self, ready: SyncSender<GatheredImages>) {
        let batches = self.order.chunks(self.batch_size).take(self.steps as usize);
        for indices in batches {
            let batch = self.gather(indices);
            let failed = batch.is_err();
            if ready.send(batch).is_err() || failed {
                return;
            }
        }
    }

    fn gather(&self, indices: &[i64]) -> std::result::Result<Tensor, String> {
        let index = Tensor::from_slice(indices);
        let images = if self.pinned {
            let mut shape = self.images.size();
            shape[0] = indices.len() as i64;
            let pinned = easel_aten::empty_pinned(&shape).map_err(|e| e.to_string())?;
            self.images.f_index_select_out(&pinned, 0, &index)
        } else {
            self.images.f_index_select(0, &index)
        };
        images.map_err(|e| e.to_string())
    }
}

fn choose_residency(images: &Tensor, device: Device) -> Residency {
    let bytes = images.numel() as u64;
    let Device::Cuda(index) = device else {
        return match crate::device::free_memory_bytes(Device::Cpu) {
            Some(free) if bytes as f64 > HOST_RESIDENT_FRACTION * free as f64 => {
                tracing::info!(
                    dataset_bytes = bytes,
                    available_bytes = free,
                    "dataset streamed from its cache file"
                );
                Residency::Streamed
            }
            _ => Residency::OnDevice,
        };
    };
    match crate::device::cuda_free_bytes(index) {
        Some(free) if (bytes as f64) < RESIDENT_FRACTION * free as f64 => Residency::OnDevice,
        Some(free) => {
            tracing::info!(
                dataset_bytes = bytes,
                free_bytes = free,
                "dataset streamed from host memory"
            );
            Residency::Streamed
        }
        // No way to ask: keep small datasets resident (under 2 GiB), stream the rest.
        None if bytes < 2 << 30 => Residency::OnDevice,
        None => Residency::Streamed,
    }
}
