//! Training-time augmentation on a float batch `[B, 3, H, W]` in [0, 1], on the batch's device,
//! drawing from libtorch's generator (seeded per epoch by the trainer, so runs repeat).

use easel_spec::AugmentSpec;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Augment {
    pub flip: bool,
    /// Padding (pixels) for the random crop; 0 = no crop.
    pub crop_padding: i64,
    /// Brightness/contrast/saturation jitter strength; 0 = off.
    pub color_jitter: f64,
}

impl Augment {
    pub fn from_spec(spec: &AugmentSpec, height: u32, width: u32) -> Self {
        let side = f64::from(height.min(width));
        Augment {
            flip: spec.flip,
            crop_padding: (spec.random_crop * side).round().max(0.0) as i64,
            color_jitter: spec.color_jitter.max(0.0),
        }
    }

    pub fn is_identity(&self) -> bool {
        !self.flip && self.crop_padding == 0 && self.color_jitter == 0.0
    }

    pub fn apply(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        if self.crop_padding > 0 {
            x = random_crop(&x, self.crop_padding);
        }
        if self.flip {
            x = random_flip(&x);
        }
        if self.color_jitter > 0.0 {
            x = color_jitter(&x, self.color_jitter);
        }
        x
    }
}

fn uniform(batch: i64, low: f64, high: f64, like: &Tensor) -> Tensor {
    Tensor::rand([batch, 1, 1, 1], (Kind::Float, like.device())) * (high - low) + low
}

fn random_flip(x: &Tensor) -> Tensor {
    let batch = x.size()[0];
    let flip = Tensor::rand([batch, 1, 1, 1], (Kind::Float, x.device())).lt(0.5);
    x.flip([3]).where_self(&flip, x)
}

/// Zero-pads by `pad` on every side and cuts a window of the original size at a random offset
/// per image, with two gathers (no per-image loop).
fn random_crop(x: &Tensor, pad: i64) -> Tensor {
    let [batch, channels, height, width] = x.size()[..] else {
        return x.shallow_clone();
    };
    let device = x.device();
    let padded = x.constant_pad_nd([pad, pad, pad, pad]);
    let offsets = Tensor::randint(2 * pad + 1, [batch, 2], (Kind::Int64, device));
    let rows =
        offsets.narrow(1, 0, 1) + Tensor::arange(height, (Kind::Int64, device)).view([1, -1]);
    let cols = offsets.narrow(1, 1, 1) + Tensor::arange(width, (Kind::Int64, device)).view([1, -1]);
    let rows = rows
        .view([batch, 1, height, 1])
        .expand([batch, channels, height, width + 2 * pad], false);
    let cropped_rows = padded.gather(2, &rows, false);
    let cols = cols
        .view([batch, 1, 1, width])
        .expand([batch, channels, height, width], false);
    cropped_rows.gather(3, &cols, false)
}

/// Brightness, contrast and saturation factors drawn from [1 - s, 1 + s] per image.
fn color_jitter(x: &Tensor, strength: f64) -> Tensor {
    let batch = x.size()[0];
    let (low, high) = ((1.0 - strength).max(0.0), 1.0 + strength);
    let x = (x * uniform(batch, low, high, x)).clamp(0.0, 1.0);
    let gray = grayscale(&x);
    let mean = gray.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
    let x = ((&x - &mean) * uniform(batch, low, high, &x) + &mean).clamp(0.0, 1.0);
    let gray = grayscale(&x);
    ((&x - &gray) * uniform(batch, low, high, &x) + &gray).clamp(0.0, 1.0)
}

/// ITU-R 601 luma, `[B, 1, H, W]`. Scalar weights, not a weight tensor: a tensor made on the
/// host would be copied to the GPU (a blocking copy) on every batch.
fn grayscale(x: &Tensor) -> Tensor {
    x.narrow(1, 0, 1) * 0.299 + x.narrow(1, 1, 1) * 0.587 + x.narrow(1, 2, 1) * 0.114
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_keeps_shape_and_moves_content() {
        tch::manual_seed(1);
        let x = Tensor::arange(2 * 3 * 4 * 4, (Kind::Float, tch::Device::Cpu)).view([2, 3, 4, 4])
            / 96.0;
        let y = random_crop(&x, 2);
        assert_eq!(y.size(), vec![2, 3, 4, 4]);
        // Every output pixel is either padding (0) or some input pixel.
        let values: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        let inputs: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
        assert!(values.iter().all(|v| *v == 0.0 || inputs.contains(v)));
    }

    #[test]
    fn flip_is_a_mirror_or_identity_per_image() {
        tch::manual_seed(3);
        let x = Tensor::rand([16, 3, 5, 5], (Kind::Float, tch::Device::Cpu));
        let y = random_flip(&x);
        for i in 0..16 {
            let same = y.get(i).equal(&x.get(i));
            let mirrored = y.get(i).equal(&x.get(i).flip([2]));
            assert!(same || mirrored);
        }
    }

    #[test]
    fn jitter_stays_in_range() {
        tch::manual_seed(5);
        let x = Tensor::rand([4, 3, 6, 6], (Kind::Float, tch::Device::Cpu));
        let y = color_jitter(&x, 0.4);
        assert_eq!(y.size(), x.size());
        assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
    }
}
