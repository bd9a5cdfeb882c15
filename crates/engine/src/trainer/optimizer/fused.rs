//! Updates through ATen's fused kernels (`easel-aten`): the parameters of a step are split
//! into buckets one kernel call can take, and each bucket is updated in one call.

use super::{ADAM_BETAS, ADAM_EPS, Hyperparameters, Parameter, ParameterState};
use easel_aten::{Adam, AdamGroup, AtenError, Sgd, SgdGroup};
use easel_spec::Optimizer as OptimizerKind;
use tch::{Device, Kind, Tensor};

/// A parameter to update this step, with its state and gradient.
pub(super) struct Update<'a> {
    pub parameter: &'a Parameter,
    pub state: &'a mut ParameterState,
    pub gradient: Tensor,
}

/// What every update of one fused call shares: its learning rate (by group), device and dtype,
/// and for SGD whether the momentum buffers start this step (a backbone unfrozen mid-run starts
/// later than the head).
#[derive(PartialEq)]
struct BucketKey {
    group: usize,
    device: Device,
    kind: Kind,
    first_step: bool,
}

fn key_of(update: &Update<'_>, optimizer: OptimizerKind) -> BucketKey {
    BucketKey {
        group: update.parameter.group,
        device: update.parameter.tensor.device(),
        kind: update.parameter.tensor.kind(),
        first_step: optimizer == OptimizerKind::Sgd && update.state.steps == 0,
    }
}

/// `updates` split into buckets, in the order their keys first appear (almost always one or two:
/// the backbone and the head).
pub(super) fn buckets(updates: Vec<Update<'_>>, optimizer: OptimizerKind) -> Vec<Vec<Update<'_>>> {
    let mut buckets: Vec<(BucketKey, Vec<Update<'_>>)> = Vec::new();
    for update in updates {
        let key = key_of(&update, optimizer);
        match buckets.iter_mut().find(|(existing, _)| *existing == key) {
            Some((_, bucket)) => bucket.push(update),
            None => buckets.push((key, vec![update])),
        }
    }
    buckets.into_iter().map(|(_, bucket)| bucket).collect()
}

/// One fused update of a bucket; on success every step count is advanced.
pub(super) fn update(
    bucket: &mut [Update<'_>],
    lr: f64,
    hyperparameters: Hyperparameters,
) -> Result<(), AtenError> {
    match hyperparameters.kind {
        OptimizerKind::Sgd => {
            let params: Vec<&Tensor> = bucket.iter().map(|u| &u.parameter.tensor).collect();
            let grads: Vec<&Tensor> = bucket.iter().map(|u| &u.gradient).collect();
            let buffers: Vec<&Tensor> = bucket.iter().map(|u| &u.state.first).collect();
            let settings = Sgd {
                lr,
                momentum: hyperparameters.momentum,
                weight_decay: hyperparameters.weight_decay,
                // Without momentum there are no buffers to start (ATen warns if told so).
                is_first_step: hyperparameters.momentum != 0.0 && bucket[0].state.steps == 0,
            };
            let group = SgdGroup {
                params: &params,
                grads: &grads,
                momentum_buffers: &buffers,
            };
            easel_aten::fused_sgd(&group, settings)?;
        }
        OptimizerKind::Adam | OptimizerKind::Adamw => adam(bucket, lr, hyperparameters)?,
    }
    for update in bucket.iter_mut() {
        update.state.steps += 1;
    }
    Ok(())
}

fn adam(
    bucket: &mut [Update<'_>],
    lr: f64,
    hyperparameters: Hyperparameters,
) -> Result<(), AtenError> {
    for update in bucket.iter_mut() {
        let state = &mut *update.state;
        if state.step_tensor.is_none() {
            // A fill on the device: nothing is copied from the host.
            let device = update.parameter.tensor.device();
            state.step_tensor = Some(Tensor::full([], state.steps as f64, (Kind::Float, device)));
        }
    }
    let params: Vec<&Tensor> = bucket.iter().map(|u| &u.parameter.tensor).collect();
    let grads: Vec<&Tensor> = bucket.iter().map(|u| &u.gradient).collect();
    let firsts: Vec<&Tensor> = bucket.iter().map(|u| &u.state.first).collect();
    let mut seconds = Vec::with_capacity(bucket.len());
    let mut steps = Vec::with_capacity(bucket.len());
    for update in bucket.iter() {
        let missing = || AtenError(format!("{} has no Adam state", update.parameter.name));
        seconds.push(update.state.second.as_ref().ok_or_else(missing)?);
        steps.push(update.state.step_tensor.as_ref().ok_or_else(missing)?);
    }
    let group = AdamGroup {
        params: &params,
        grads: &grads,
        exp_avgs: &firsts,
        exp_avg_sqs: &seconds,
        steps: &steps,
    };
    let settings = Adam {
        lr,
        betas: ADAM_BETAS,
        eps: ADAM_EPS,
        weight_decay: hyperparameters.weight_decay,
        decoupled: hyperparameters.kind == OptimizerKind::Adamw,
    };
    easel_aten::fused_adam(&group, settings)
}
