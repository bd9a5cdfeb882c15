//! The model being trained, with its optimizer and (bf16 runs) its reduced-precision
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
    /// Present for runs that compute in bf16.
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
    /// The model that computes (the bf16 copy on a bf16 run, which must then hold the current
    /// weights, see [`Trainee::sync_copy`]) and the precision it takes inputs in.
    fn computing_net(&self) -> (&Classifier, Kind) {
        match &self.bf16 {
            Some(copy) => (copy.net(), Kind::BFloat16),
            None => (&self.net, Kind::Float),
        }
    }

    /// fp32 logits; `train` switches dropout and batch-norm updates on.
    pub fn logits(&self, input: &ModelInput, train: bool) -> Tensor {
        let (net, kind) = self.computing_net();
        match input {
            ModelInput::Images(x) => net.forward_t(&x.to_kind(kind), train),
            ModelInput::Features(f) => net.head_forward_t(f, train),
        }
        .to_kind(Kind::Float)
    }

    /// The backbone's feature maps of normalised images in evaluation mode, in the compute
    /// precision (what the head computes with).
    pub fn backbone_features(&self, x: &Tensor) -> Tensor {
        let (net, kind) = self.computing_net();
        net.backbone_forward_t(&x.to_kind(kind), false)
    }

    /// The compute precision of logits and features.
    pub fn compute_kind(&self) -> Kind {
        self.computing_net().1
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
