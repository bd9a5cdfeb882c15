//! bf16 mixed precision on CUDA: a bf16 copy of the model computes the forward and backward
//! passes, the fp32 model keeps the master weights the optimizer updates.
//!
//! Why not `tch::autocast`: it only switches libtorch's autocast on, whose CUDA dtype is fp16 and
//! cannot be changed through tch's C API; fp16 would need loss scaling. bf16 has fp32's range, so
//! no scaling is needed, and a bf16 copy gives the same tensor-core speed.

use crate::Result;
use crate::models::{Classifier, build_classifier};
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
        copy.pull_buffers();
        Ok(copy)
    }

    /// Copies the master weights (and their trainable flags) into the bf16 model.
    pub fn pull_weights(&self) {
        let _no_grad = tch::no_grad_guard();
        for (master, copy) in self.parameters.values() {
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
