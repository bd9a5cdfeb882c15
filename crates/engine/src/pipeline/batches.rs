//! Batches for the model, from a decoded u8 dataset. On CUDA the whole u8 dataset lives on the
//! GPU when it fits (cheap: 1 byte a channel), so a batch is one `index_select` there; otherwise
//! batches are gathered on the host and copied without waiting.

use super::{Augment, DecodedDataset, Normalisation, channels_last};
use crate::Result;
use tch::{Device, Kind, Tensor};

/// The GPU-resident dataset may use at most this fraction of the free device memory.
const RESIDENT_FRACTION: f64 = 0.4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// The u8 dataset is on the training device.
    OnDevice,
    /// The u8 dataset stays in host memory; each batch is copied over.
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
    /// `channels_last` is honoured on CUDA only (it slows CPU convolutions down).
    pub fn new(data: &DecodedDataset, device: Device, channels_last: bool) -> Result<Self> {
        let residency = if device.is_cuda() {
            choose_residency(&data.images, device)
        } else {
            Residency::OnDevice
        };
        let (images, labels) = match residency {
            Residency::OnDevice => (data.images.to_device(device), data.labels.to_device(device)),
            Residency::Streamed => (data.images.shallow_clone(), data.labels.shallow_clone()),
        };
        Ok(BatchSource {
            images,
            labels,
            device,
            channels_last: channels_last && device.is_cuda(),
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
        self.labels.to_device(self.device)
    }

    /// Where index tensors passed to `batch` must live.
    pub fn index_device(&self) -> Device {
        self.images.device()
    }

    /// Indices (into the decoded dataset) as a tensor on `index_device()`.
    pub fn indices(&self, indices: &[i64]) -> Tensor {
        Tensor::from_slice(indices).to_device(self.index_device())
    }

    /// The normalised float input `[B, 3, H, W]` and the labels `[B]`, on the training device.
    pub fn batch(&self, indices: &Tensor, augment: Option<&Augment>) -> (Tensor, Tensor) {
        let images = self.images.index_select(0, indices);
        let labels = self.labels.index_select(0, indices);
        let (images, labels) = match self.residency {
            Residency::OnDevice => (images, labels),
            Residency::Streamed => (
                images.to_device_(self.device, Kind::Uint8, true, false),
                labels.to_device_(self.device, Kind::Int64, true, false),
            ),
        };
        let x01 = images.to_kind(Kind::Float) / 255.0;
        let x01 = match augment {
            Some(augment) if !augment.is_identity() => augment.apply(&x01),
            _ => x01,
        };
        let x = self.normalisation.apply(&x01);
        let x = if self.channels_last {
            channels_last(&x)
        } else {
            x
        };
        (x, labels)
    }
}

fn choose_residency(images: &Tensor, device: Device) -> Residency {
    let bytes = images.numel() as u64;
    let Device::Cuda(index) = device else {
        return Residency::OnDevice;
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
