//! The model a run trains: initialised from the run's seed, the pretrained backbone loaded, then
//! (after a checkpoint may have replaced its variables) made a trainee with its optimizer and,
//! on bf16 runs, its reduced-precision copy.

use super::checkpointer::SavedOptimizer;
use super::optimizer::{Hyperparameters, Optimizer, parameters_of};
use super::precision::{Bf16Copy, convolution_weights_channels_last};
use super::trainee::Trainee;
use crate::Result;
use crate::compute_precision::ComputePrecision;
use crate::events::TrainEvent;
use crate::models::{Classifier, build_classifier, set_backbone_trainable};
use crate::weights::load_pretrained_backbone;
use easel_spec::ExperimentSpec;
use tch::nn::VarStore;

/// A model before training: fresh or pretrained weights, all of them trainable.
pub struct InitialModel {
    pub vs: VarStore,
    net: Classifier,
    num_classes: i64,
    image_hw: (i64, i64),
}

impl InitialModel {
    /// The classifier `spec` names for `num_classes` classes of `image_hw` images on `device`,
    /// with the pretrained backbone loaded when the spec names one.
    pub fn build(
        spec: &ExperimentSpec,
        num_classes: usize,
        image_hw: (i64, i64),
        device: tch::Device,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Self> {
        let num_classes = num_classes as i64;
        tch::manual_seed(spec.train.seed as i64);
        let mut vs = VarStore::new(device);
        let net = build_classifier(&vs.root(), &spec.model, num_classes, image_hw)?;
        if let Some(path) = crate::weights::pretrained_file(spec)? {
            let report = load_pretrained_backbone(&mut vs, path)?;
            let mut message = format!(
                "pretrained backbone: {} tensors ({} values) loaded from {}",
                report.tensors_loaded,
                report.elements_loaded,
                path.display()
            );
            for note in &report.notes {
                message.push_str("; ");
                message.push_str(note);
            }
            on_event(TrainEvent::Note { message });
        }
        Ok(InitialModel {
            vs,
            net,
            num_classes,
            image_hw,
        })
    }

    /// The trainee of `spec`: its backbone frozen or not, its optimizer restored when the run
    /// resumes, and a bf16 copy when the run computes in bf16.
    pub fn into_trainee(
        self,
        spec: &ExperimentSpec,
        precision: &ComputePrecision,
        backbone_frozen: bool,
        saved_optimizer: Option<SavedOptimizer>,
    ) -> Result<Trainee> {
        let InitialModel {
            vs,
            net,
            num_classes,
            image_hw,
        } = self;
        set_backbone_trainable(&vs, !backbone_frozen);
        let device = vs.device();
        // In fp32 the master weights are what the convolutions read; in bf16 the copy's are
        // channels-last, so its gradients are, and a master in the same layout takes them
        // without another copy.
        if crate::pipeline::channels_last_on(device) {
            convolution_weights_channels_last(&vs);
        }
        let mut optimizer = Optimizer::new(Hyperparameters::of(&spec.train), parameters_of(&vs));
        if let Some(saved) = saved_optimizer {
            saved.restore_into(&mut optimizer)?;
        }
        let bf16 = if precision.bf16 {
            Some(Bf16Copy::new(
                &vs,
                &spec.model,
                num_classes,
                image_hw,
                device,
            )?)
        } else {
            None
        };
        Ok(Trainee {
            vs,
            net,
            optimizer,
            bf16,
        })
    }
}
