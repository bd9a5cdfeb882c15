//! The updates one parameter at a time, in tensor ops: the rules `torch.optim` documents, kept as
//! the reference the fused kernels are checked against and as the fallback when a fused update
//! is refused.

use super::fused::Update;
use super::{ADAM_BETAS, ADAM_EPS, Hyperparameters, ParameterState};
use easel_spec::Optimizer as OptimizerKind;
use tch::Tensor;

/// A 0-d tensor of `value` with the kind and device of `like`: `addcmul_` scales by it without a
/// parameter-sized temporary (tch's in-place adds take no scale). Filled on the device, so
/// nothing waits on a copy from the host.
fn scalar_like(value: f64, like: &Tensor) -> Tensor {
    Tensor::full([], value, (like.kind(), like.device()))
}

/// Updates one parameter (and counts the step).
pub(super) fn update(update: Update<'_>, lr: f64, hyperparameters: Hyperparameters) {
    let Update {
        parameter,
        state,
        gradient,
    } = update;
    state.steps += 1;
    // A fused update that was refused may have advanced the step tensor: it is remade from the
    // count when next needed.
    state.step_tensor = None;
    let mut weights = parameter.tensor.shallow_clone();
    match hyperparameters.kind {
        OptimizerKind::Sgd => sgd(&mut weights, gradient, state, lr, hyperparameters),
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            adam(&mut weights, gradient, state, lr, hyperparameters)
        }
    }
}

// The updates below work in place, as torch.optim's do: a temporary the size of a parameter is a
// fresh allocation (and, on the CPU, its pages' first-touch faults) every step.

fn sgd(
    weights: &mut Tensor,
    gradient: Tensor,
    state: &mut ParameterState,
    lr: f64,
    hyperparameters: Hyperparameters,
) {
    let Hyperparameters {
        momentum,
        weight_decay: wd,
        ..
    } = hyperparameters;
    let mut gradient = gradient;
    if wd != 0.0 {
        // This step's own gradient (zeroed before the next backward): decayed in place.
        let _ = gradient.addcmul_(weights, &scalar_like(wd, weights));
    }
    if momentum != 0.0 {
        if state.steps == 1 {
            state.first.copy_(&gradient);
        } else {
            state.first *= momentum;
            state.first += &gradient;
        }
        gradient = state.first.shallow_clone();
    }
    let _ = weights.addcmul_(&gradient, &scalar_like(-lr, weights));
}

fn adam(
    weights: &mut Tensor,
    gradient: Tensor,
    state: &mut ParameterState,
    lr: f64,
    hyperparameters: Hyperparameters,
) {
    let wd = hyperparameters.weight_decay;
    let decoupled = hyperparameters.kind == OptimizerKind::Adamw;
    let (beta1, beta2) = ADAM_BETAS;
    let mut gradient = gradient;
    if decoupled {
        if wd != 0.0 {
            *weights *= 1.0 - lr * wd;
        }
    } else if wd != 0.0 {
        let _ = gradient.addcmul_(weights, &scalar_like(wd, weights));
    }
    // m = beta1 m + (1 - beta1) g
    let _ = state.first.lerp_(&gradient, 1.0 - beta1);
    let Some(second) = state.second.as_mut() else {
        return;
    };
    // v = beta2 v + (1 - beta2) g^2 (one temporary: tch's addcmul_ takes no scale)
    *second *= beta2;
    let _ = second.addcmul_(&gradient, &(&gradient * (1.0 - beta2)));
    let t = state.steps as i32;
    let bias1 = 1.0 - beta1.powi(t);
    let bias2 = 1.0 - beta2.powi(t);
    // w -= lr / bias1 * m / (sqrt(v / bias2) + eps): one addcdiv_ of m over that denominator
    // scaled by -bias1 / lr.
    let mut denominator = second.sqrt();
    let _ = denominator.g_div_scalar_(bias2.sqrt());
    let _ = denominator.g_add_scalar_(ADAM_EPS);
    let _ = denominator.g_div_scalar_(-lr / bias1);
    let _ = weights.addcdiv_(&state.first, &denominator);
}
