//! The model being trained, with its optimizer and (bf16 runs on CUDA) its reduced-precision
//! copy, and what a step feeds it: images, or a frozen backbone's cached features.

use super::optimizer::Optimizer;
use super::precision::Bf16Copy;
use crate::models::Classifier;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

pub struct Trainee {
    pub vs: VarStore,
    pub net: Classifier,
    pub optimizer: Optimizer,
    /// Present for bf16 runs on CUDA.
    pub bf16: Option<Bf16Copy>,
}

/// A batch as the model takes it.
pub enum ModelInput {
    /// Normalised float images `[B, 3, H, W]`.
    Images(Tensor),
    /// The backbone's feature maps `[B, C, H, W]`, in the compute precision (see
    /// [`Trainee::backbone_features`]).
    Features(Tensor),
}

impl Trainee {
    /// fp32 logits; `train` switches dropout and batch-norm updates on. Runs on the bf16 copy
    /// when there is one, so it must hold the current weights (see [`Trainee::sync_copy`]).
    pub fn logits(&self, input: &ModelInput, train: bool) -> Tensor {
        match &self.bf16 {
            Some(copy) => {
                let net = copy.net();
                match input {
                    ModelInput::Images(x) => net.forward_t(&x.to_kind(Kind::BFloat16), train),
                    ModelInput::Features(f) => net.head_forward_t(f, train),
                }
                .to_kind(Kind::Float)
            }
            None => match input {
                ModelInput::Images(x) => self.net.forward_t(x, train),
                ModelInput::Features(f) => self.net.head_forward_t(f, train),
            },
        }
    }

    /// The backbone's feature maps of normalised images in evaluation mode: bf16 on a bf16
    /// run (what its head computes with), fp32 otherwise.
    pub fn backbone_features(&self, x: &Tensor) -> Tensor {
        match &self.bf16 {
            Some(copy) => copy
                .net()
                .backbone_forward_t(&x.to_kind(Kind::BFloat16), false),
            None => self.net.backbone_forward_t(x, false),
        }
    }

    /// The compute precision of logits and features.
    pub fn compute_kind(&self) -> Kind {
        if self.bf16.is_some() {
            Kind::BFloat16
        } else {
            Kind::Float
        }
    }

    /// Brings the bf16 copy to the master weights and buffers (after the last step of an
    /// epoch, or after weights were loaded into the master); nothing to do without a copy.
    pub fn sync_copy(&self) {
        if let Some(copy) = &self.bf16 {
            copy.pull_weights();
            copy.pull_buffers();
        }
    }
}
