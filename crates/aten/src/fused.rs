//! One optimizer update for a whole parameter group: ATen's fused SGD, Adam and AdamW kernels
//! (what `torch.optim`'s `fused=True` runs). Per parameter, tensor-op updates launch a handful of
//! kernels each step (about 250 for VGG16); these launch a few per group on CUDA (ATen's
//! multi-tensor launcher takes up to 320 chunks of 64 Ki elements at a time) and run one parallel
//! loop per parameter on the CPU, with no temporaries beyond a gradient copied into its
//! parameter's layout.
//!
//! Every list passed in is one group: same device and dtype, one entry per parameter, in the
//! same order. Optimizer state must have its parameter's strides (make it with `zeros_like` or
//! `empty_like` + `copy_`); a gradient with other strides or dtype is copied into the
//! parameter's.

use crate::{AtenError, ERROR_BUFFER, outcome};
use std::ffi::{c_char, c_int};
use tch::Tensor;
use torch_sys::C_tensor;

#[allow(unsafe_code)]
// SAFETY (for the block): the signatures match `csrc/multi_tensor_update.cpp`, whose tensors are
// libtch's `torch::Tensor*` handles (`C_tensor`); it catches every C++ exception.
unsafe extern "C" {
    fn easel_fused_sgd(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        momentum_buffers: *const *const C_tensor,
        count: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        is_first_step: bool,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;

    fn easel_fused_adam(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        count: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// SGD with momentum (no dampening, not Nesterov), weight decay added to the gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// The group's first update: the momentum buffers take the gradient as it is.
    pub is_first_step: bool,
}

/// Adam (weight decay added to the gradient) or AdamW (`decoupled`: weights shrunk by
/// `lr * weight_decay`), without AMSGrad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
}

/// The state `fused_sgd` updates with its parameters.
pub struct SgdGroup<'a> {
    pub params: &'a [&'a Tensor],
    pub grads: &'a [&'a Tensor],
    /// One per parameter; may be empty when momentum is 0.
    pub momentum_buffers: &'a [&'a Tensor],
}

/// The state `fused_adam` updates with its parameters.
pub struct AdamGroup<'a> {
    pub params: &'a [&'a Tensor],
    pub grads: &'a [&'a Tensor],
    pub exp_avgs: &'a [&'a Tensor],
    pub exp_avg_sqs: &'a [&'a Tensor],
    /// 0-d float tensors on the parameters' device counting the updates made so far; each is
    /// advanced by one before the update, as `torch.optim` does.
    pub steps: &'a [&'a Tensor],
}

fn pointers(tensors: &[&Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(|tensor| tensor.as_ptr()).collect()
}

fn check_lengths(lists: &[(&str, usize)]) -> Result<usize, AtenError> {
    let count = lists[0].1;
    for (name, len) in lists {
        if *len != count {
            return Err(AtenError(format!("{len} {name} for {count} parameters")));
        }
    }
    Ok(count)
}

/// One SGD update of every parameter in the group.
pub fn fused_sgd(group: &SgdGroup<'_>, settings: Sgd) -> Result<(), AtenError> {
    let mut lists = vec![("params", group.params.len()), ("grads", group.grads.len())];
    if settings.momentum != 0.0 {
        lists.push(("momentum buffers", group.momentum_buffers.len()));
    }
    let count = check_lengths(&lists)?;
    if count == 0 {
        return Ok(());
    }
    let (params, grads) = (pointers(group.params), pointers(group.grads));
    let buffers = pointers(group.momentum_buffers);
    let mut message: [c_char; ERROR_BUFFER] = [0; ERROR_BUFFER];
    // SAFETY: every pointer list holds `count` live tensor handles borrowed for the call (or, for
    // the buffers with momentum 0, is not read); the message buffer is ERROR_BUFFER bytes.
    #[allow(unsafe_code)]
    let code = unsafe {
        easel_fused_sgd(
            params.as_ptr(),
            grads.as_ptr(),
            buffers.as_ptr(),
            count,
            settings.lr,
            settings.momentum,
            settings.weight_decay,
            settings.is_first_step,
            message.as_mut_ptr(),
            ERROR_BUFFER,
        )
    };
    outcome(code, &message)
}

/// One Adam or AdamW update of every parameter in the group.
pub fn fused_adam(group: &AdamGroup<'_>, settings: Adam) -> Result<(), AtenError> {
    let count = check_lengths(&[
        ("params", group.params.len()),
        ("grads", group.grads.len()),
        ("first moments", group.exp_avgs.len()),
        ("second moments", group.exp_avg_sqs.len()),
        ("step counts", group.steps.len()),
    ])?;
    if count == 0 {
        return Ok(());
    }
    let lists = [
        pointers(group.params),
        pointers(group.grads),
        pointers(group.exp_avgs),
        pointers(group.exp_avg_sqs),
        pointers(group.steps),
    ];
    let mut message: [c_char; ERROR_BUFFER] = [0; ERROR_BUFFER];
    // SAFETY: every pointer list holds `count` live tensor handles borrowed for the call; the
    // message buffer is ERROR_BUFFER bytes.
    #[allow(unsafe_code)]
    let code = unsafe {
        easel_fused_adam(
            lists[0].as_ptr(),
            lists[1].as_ptr(),
            lists[2].as_ptr(),
            lists[3].as_ptr(),
            lists[4].as_ptr(),
            count,
            settings.lr,
            settings.betas.0,
            settings.betas.1,
            settings.eps,
            settings.weight_decay,
            settings.decoupled,
            message.as_mut_ptr(),
            ERROR_BUFFER,
        )
    };
    outcome(code, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn ones(size: &[i64]) -> Tensor {
        Tensor::ones(size, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn one_call_updates_every_parameter_of_the_group() {
        let (a, b) = (ones(&[3, 4]), ones(&[5]));
        let (grad_a, grad_b) = (ones(&[3, 4]) * 2.0, ones(&[5]) * 4.0);
        let group = SgdGroup {
            params: &[&a, &b],
            grads: &[&grad_a, &grad_b],
            momentum_buffers: &[],
        };
        let settings = Sgd {
            lr: 0.25,
            momentum: 0.0,
            weight_decay: 0.0,
            is_first_step: true,
        };
        fused_sgd(&group, settings).unwrap();
        assert_eq!(a.double_value(&[2, 3]), 0.5);
        assert_eq!(b.double_value(&[4]), 0.0);
    }

    #[test]
    fn adam_advances_its_step_counts() {
        let weights = ones(&[4]);
        let grad = ones(&[4]);
        let (first, second) = (weights.zeros_like(), weights.zeros_like());
        let step = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let group = AdamGroup {
            params: &[&weights],
            grads: &[&grad],
            exp_avgs: &[&first],
            exp_avg_sqs: &[&second],
            steps: &[&step],
        };
        let settings = Adam {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        };
        fused_adam(&group, settings).unwrap();
        fused_adam(&group, settings).unwrap();
        assert_eq!(step.double_value(&[]), 2.0);
        // Adam's first steps move each weight by about lr, whatever the gradient's scale.
        let moved = 1.0 - weights.double_value(&[0]);
        assert!((moved - 0.2).abs() < 1e-4, "moved {moved}");
    }

    #[test]
    fn a_refused_update_says_why() {
        let weights = ones(&[4, 6]);
        let grad = ones(&[4, 6]);
        // A momentum buffer whose strides are not its parameter's.
        let buffer = ones(&[6, 4]).transpose(0, 1);
        let group = SgdGroup {
            params: &[&weights],
            grads: &[&grad],
            momentum_buffers: &[&buffer],
        };
        let settings = Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            is_first_step: false,
        };
        let error = fused_sgd(&group, settings).unwrap_err();
        assert!(
            error
                .0
                .contains("momentum buffer 0 does not have its parameter's layout"),
            "{error}"
        );
        assert_eq!(weights.double_value(&[0, 0]), 1.0, "nothing was written");

        let short = SgdGroup {
            params: &[&weights],
            grads: &[],
            momentum_buffers: &[],
        };
        let error = fused_sgd(&short, settings).unwrap_err();
        assert_eq!(error.0, "0 grads for 1 parameters");
    }
}
