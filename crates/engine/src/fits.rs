//! Whether a run fits where it would train, worked out from the spec before anything is
//! allocated. libtorch answers an allocation it cannot make by aborting the process (a head of two
//! billion units asks for terabytes), which on a worker would take every job down with it; a
//! refusal here fails one run with what it needs and what there is.

use crate::compute_precision::ComputePrecision;
use crate::device::{device_name, memory_limit_bytes};
use crate::models::{activation_bytes, parameter_counts};
use crate::{Error, Result};
use easel_spec::{ModelSpec, Optimizer, Precision};
use tch::Device;

/// What a training step holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub parameters: u64,
    /// Weights, gradients and optimizer state.
    pub parameter_bytes: u64,
    /// Activations of one step, forward and backward (an estimate).
    pub activation_bytes: u64,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.parameter_bytes.saturating_add(self.activation_bytes)
    }
}

/// The shape of a run the check needs.
#[derive(Debug, Clone, Copy)]
pub struct RunShape<'a> {
    pub model: &'a ModelSpec,
    pub optimizer: Optimizer,
    pub precision: Precision,
    pub num_classes: usize,
    pub image_hw: (i64, i64),
    pub batch_size: i64,
}

/// Bytes each parameter holds: its fp32 weight and gradient, the optimizer's state (Adam keeps
/// two moments, SGD one momentum buffer), and on bf16 runs a 2-byte copy with its gradient.
fn bytes_per_parameter(optimizer: Optimizer, bf16: bool) -> u64 {
    let optimizer_slots = match optimizer {
        Optimizer::Adam | Optimizer::Adamw => 2,
        Optimizer::Sgd => 1,
    };
    4 + 4 + 4 * optimizer_slots + if bf16 { 4 } else { 0 }
}

pub fn footprint(shape: &RunShape, device: Device) -> Result<Footprint> {
    let counts = parameter_counts(shape.model, shape.num_classes as i64, shape.image_hw)?;
    let bf16 = ComputePrecision::resolve(shape.precision, device).bf16;
    let parameters = counts.total();
    Ok(Footprint {
        parameters,
        parameter_bytes: parameters.saturating_mul(bytes_per_parameter(shape.optimizer, bf16)),
        activation_bytes: activation_bytes(
            shape.model,
            shape.num_classes as i64,
            shape.image_hw,
            shape.batch_size,
            if bf16 { 2 } else { 4 },
        ),
    })
}

/// Refuses a run whose step cannot fit in the memory of `device` (the host's available memory,
/// a GPU's whole memory), naming both and the keys that size it. The estimate is rough, so only
/// runs that cannot fit at all are refused; where the memory cannot be asked, the run goes
/// ahead.
pub fn check_fits(shape: &RunShape, device: Device) -> Result<()> {
    let needed = footprint(shape, device)?;
    let Some(available) = memory_limit_bytes(device) else {
        return Ok(());
    };
    if needed.total() <= available {
        return Ok(());
    }
    Err(Error::TooLarge(format!(
        "the run does not fit in memory: one training step needs {} ({} parameters take {} for \
         weights, gradients and optimizer state; activations at batch {} and {}x{} take {}) and \
         {} has {} available; make model.head, data.image_size or train.batch_size smaller",
        gib(needed.total()),
        millions(needed.parameters),
        gib(needed.parameter_bytes),
        shape.batch_size,
        shape.image_hw.1,
        shape.image_hw.0,
        gib(needed.activation_bytes),
        device_name(device),
        gib(available),
    )))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

fn millions(count: u64) -> String {
    if count >= 10_000_000 {
        format!("{} M", count / 1_000_000)
    } else {
        format!("{count}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_spec::Architecture;

    fn shape(model: &ModelSpec, batch_size: i64) -> RunShape<'_> {
        RunShape {
            model,
            optimizer: Optimizer::Sgd,
            precision: Precision::Fp32,
            num_classes: 5,
            image_hw: (64, 64),
            batch_size,
        }
    }

    #[test]
    fn a_head_of_billions_of_units_is_refused_before_anything_is_allocated() {
        let model = ModelSpec {
            architecture: Architecture::SmallCnn,
            head: vec![2_000_000_000],
            ..ModelSpec::default()
        };
        let refused = check_fits(&shape(&model, 32), Device::Cpu).unwrap_err();
        assert!(matches!(refused, Error::TooLarge(_)), "{refused}");
        let message = refused.to_string();
        assert!(message.contains("does not fit in memory"), "{message}");
        assert!(message.contains("cpu has"), "{message}");
        assert!(message.contains("model.head"), "{message}");

        // Two widths whose product passes i64 are counted (saturated), not wrapped to a small
        // number that would pass.
        let widest = ModelSpec {
            architecture: Architecture::SmallCnn,
            head: vec![u32::MAX, u32::MAX],
            ..ModelSpec::default()
        };
        let needed = footprint(&shape(&widest, 32), Device::Cpu).unwrap();
        assert!(needed.parameters > u64::from(u32::MAX) * 1000, "{needed:?}");
        assert!(matches!(
            check_fits(&shape(&widest, 32), Device::Cpu),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn an_ordinary_model_fits_and_its_footprint_adds_up() {
        let model = ModelSpec {
            architecture: Architecture::SmallCnn,
            head: vec![64, 128],
            ..ModelSpec::default()
        };
        check_fits(&shape(&model, 32), Device::Cpu).unwrap();
        let small = footprint(&shape(&model, 32), Device::Cpu).unwrap();
        let double = footprint(&shape(&model, 64), Device::Cpu).unwrap();
        assert_eq!(small.parameter_bytes, small.parameters * 12);
        assert_eq!(double.activation_bytes, 2 * small.activation_bytes);
        assert_eq!(double.parameter_bytes, small.parameter_bytes);
    }
}
