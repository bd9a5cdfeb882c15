//! bf16 mixed precision (on CUDA and on the CPU alike): a bf16 copy of the model computes the
//! forward and backward passes, the fp32 model keeps the master weights the optimizer updates.
//! Batch-norm weights and running statistics stay fp32 in the copy, as autocast keeps them:
//! bf16's 8 bits of mantissa would lose a running mean's small momentum updates.
//!
//! Why not `tch::autocast`: it only switches libtorch's autocast on, whose CUDA dtype is fp16 and
//! cannot be changed through tch's C API; fp16 would need loss scaling. bf16 has fp32's range, so
//! no scaling is needed, and a bf16 copy gives the same tensor-core speed.

use crate::Result;
use crate::models::{Classifier, build_classifier};
use crate::pipeline::channels_last;
use easel_spec::ModelSpec;
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub struct Bf16Copy {
    vs: VarStore,
    net: Classifier,
    /// (master, copy) for every learnable variable, by name.
    parameters: HashMap<String, (Tensor, Tensor)>,
    /// (master, copy) for buffers such as batch-norm running statistics.
    buffers: Vec<(Tensor, Tensor)>,
}

impl Bf16Copy {
    pub fn new(
        master: &VarStore,
        model: &ModelSpec,
        num_classes: i64,
        image_hw: (i64, i64),
        device: Device,
    ) -> Result<Self> {
        let mut vs = VarStore::new(device);
        let net = build_classifier(&vs.root(), model, num_classes, image_hw)?;
        vs.bfloat16();
        keep_batch_norm_fp32(&vs);
        convolution_weights_channels_last(&vs);
        let copies = vs.variables();
        let learnable: Vec<String> = super::optimizer::parameters_of(master)
            .into_iter()
            .map(|p| p.name)
            .collect();
        let mut parameters = HashMap::new();
        let mut buffers = Vec::new();
        for (name, master_tensor) in master.variables() {
            let Some(copy) = copies.get(&name) else {
                continue;
            };
            if learnable.contains(&name) {
                parameters.insert(name, (master_tensor, copy.shallow_clone()));
            } else {
                buffers.push((master_tensor, copy.shallow_clone()));
            }
        }
        let copy = Bf16Copy {
            vs,
            net,
            parameters,
            buffers,
        };
        copy.pull_weights();
        copy.pull_buffers();
        Ok(copy)
    }

    /// Copies the master weights (and their trainable flags) into the bf16 model.
    pub fn pull_weights(&self) {
        self.pull(true);
    }

    /// Copies the trainable master weights into the bf16 model before a step: frozen ones
    /// have not changed since the last [`Bf16Copy::pull_weights`] (a checkpoint's load, an
    /// epoch's end, the unfreeze that made them trainable all pull every weight).
    pub fn pull_trainable_weights(&self) {
        self.pull(false);
    }

    fn pull(&self, frozen_too: bool) {
        let _no_grad = tch::no_grad_guard();
        for (master, copy) in self.parameters.values() {
            if !frozen_too && !master.requires_grad() && !copy.requires_grad() {
                continue;
            }
            let mut copy = copy.shallow_clone();
            copy.copy_(master);
            if copy.requires_grad() != master.requires_grad() {
                let _ = copy.set_requires_grad(master.requires_grad());
            }
        }
    }

    /// Master buffers into the copy (after loading a checkpoint or weights).
    pub fn pull_buffers(&self) {
        let _no_grad = tch::no_grad_guard();
        for (master, copy) in &self.buffers {
            copy.shallow_clone().copy_(master);
        }
    }

    /// Batch-norm statistics the copy gathered while training, back into the master model.
    pub fn push_buffers(&self) {
        let _no_grad = tch::no_grad_guard();
        for (master, copy) in &self.buffers {
            master.shallow_clone().copy_(copy);
        }
    }

    pub fn zero_grad(&self) {
        for (_, copy) in self.parameters.values() {
            copy.shallow_clone().zero_grad();
        }
    }

    /// The bf16 model (inputs and cached features it takes must be bf16).
    pub fn net(&self) -> &Classifier {
        &self.net
    }

    /// The fp32 gradient of a learnable variable (undefined when it has none).
    pub fn gradient(&self, name: &str) -> Tensor {
        match self.parameters.get(name) {
            Some((_, copy)) => {
                let gradient = copy.grad();
                if gradient.defined() {
                    gradient.to_kind(Kind::Float)
                } else {
                    gradient
                }
            }
            None => Tensor::new(),
        }
    }

    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }
}

/// Lays the convolution weights of `vs` out channels-last once, as its inputs are: cuDNN and
/// oneDNN would otherwise reorder NCHW weights in every forward and backward. Used on the bf16
/// copy, and on the master weights where batches are channels-last. Safetensors files and
/// checkpoints still store them NCHW (both write contiguous tensors); `copy_` into these keeps
/// the layout, and the gradients and optimizer buffers follow it.
pub fn convolution_weights_channels_last(vs: &VarStore) {
    let _no_grad = tch::no_grad_guard();
    for (_, tensor) in vs.variables() {
        if tensor.dim() == 4 {
            tensor.shallow_clone().set_data(&channels_last(&tensor));
        }
    }
}

/// Brings the batch-norm variables of a bf16 var store back to fp32: every variable that has a
/// `running_mean` beside it (the layer's weight, bias and statistics). libtorch's batch norm
/// takes bf16 inputs with fp32 parameters on the CPU and on CUDA.
fn keep_batch_norm_fp32(vs: &VarStore) {
    let _no_grad = tch::no_grad_guard();
    let variables = vs.variables();
    for layer in variables
        .keys()
        .filter_map(|name| name.strip_suffix(".running_mean"))
    {
        for field in ["weight", "bias", "running_mean", "running_var"] {
            if let Some(tensor) = variables.get(&format!("{layer}.{field}")) {
                tensor
                    .shallow_clone()
                    .set_data(&tensor.to_kind(Kind::Float));
            }
        }
    }
}
