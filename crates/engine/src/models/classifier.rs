//! The trainable model: a convolutional backbone (`features.*`) and a dense head
//! (`classifier.*`), built from the layer plans with torchvision's variable names.

use super::plan::{BackboneLayer, HeadLayer, architecture_name, backbone_layers, head_layers};
use super::shape::{feature_map_shape, head_input_features};
use super::{BACKBONE_GROUP, BACKBONE_PREFIX, HEAD_GROUP, HEAD_PREFIX};
use crate::{Error, Result};
use easel_spec::{Architecture, ModelSpec, Pooling};
use tch::nn::{self, init::FanInOut, init::NonLinearity, init::NormalOrUniform};
use tch::{Tensor, nn::ModuleT};

/// torchvision's VGG conv initialisation (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`,
/// zero bias): trains deep plain VGGs from scratch where a fan-in uniform start stalls.
const CONV_INIT: nn::Init = nn::Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

#[derive(Debug)]
enum BackboneModule {
    Conv(nn::Conv2D),
    BatchNorm(nn::BatchNorm),
    Relu,
    MaxPool,
    Dropout(f64),
}

#[derive(Debug)]
enum HeadModule {
    Linear(nn::Linear),
    Relu,
    Dropout(f64),
}

/// An image classifier. `forward_t` returns logits (`[N, num_classes]`); softmax belongs to the
/// loss (cross-entropy) and to prediction, never to the model.
#[derive(Debug)]
pub struct Classifier {
    architecture: Architecture,
    pooling: Pooling,
    backbone: Vec<BackboneModule>,
    head: Vec<HeadModule>,
    feature_map: [i64; 3],
    num_classes: i64,
}

/// Builds the classifier's variables under `root` (normally `vs.root()`, giving names such as
/// `features.0.weight` and `classifier.6.bias`). Backbone variables go to `BACKBONE_GROUP`, head
/// variables to `HEAD_GROUP`, so an optimizer can give them different learning rates.
pub fn build_classifier(
    root: &nn::Path,
    model: &ModelSpec,
    num_classes: i64,
    image_hw: (i64, i64),
) -> Result<Classifier> {
    check_model(model, num_classes)?;
    let feature_map = feature_map_shape(model.architecture, image_hw)?;

    let features = root.sub(BACKBONE_PREFIX).set_group(BACKBONE_GROUP);
    let backbone =
        backbone_layers(model.architecture)
            .into_iter()
            .enumerate()
            .map(|(index, layer)| match layer {
                BackboneLayer::Conv3x3 {
                    in_channels,
                    out_channels,
                } => {
                    let config = nn::ConvConfig {
                        padding: 1,
                        ws_init: CONV_INIT,
                        ..Default::default()
                    };
                    BackboneModule::Conv(nn::conv2d(
                        features.sub(index),
                        in_channels,
                        out_channels,
                        3,
                        config,
                    ))
                }
                BackboneLayer::BatchNorm { channels } => BackboneModule::BatchNorm(
                    nn::batch_norm2d(features.sub(index), channels, Default::default()),
                ),
                BackboneLayer::Relu => BackboneModule::Relu,
                BackboneLayer::MaxPool2x2 => BackboneModule::MaxPool,
                BackboneLayer::Dropout { probability } => BackboneModule::Dropout(probability),
            })
            .collect();

    let classifier = root.sub(HEAD_PREFIX).set_group(HEAD_GROUP);
    let head_in = head_input_features(feature_map, model.pooling);
    let head = head_layers(model, head_in, num_classes)
        .into_iter()
        .enumerate()
        .map(|(index, layer)| match layer {
            HeadLayer::Linear {
                in_features,
                out_features,
            } => HeadModule::Linear(nn::linear(
                classifier.sub(index),
                in_features,
                out_features,
                Default::default(),
            )),
            HeadLayer::Relu => HeadModule::Relu,
            HeadLayer::Dropout { probability } => HeadModule::Dropout(probability),
        })
        .collect();

    Ok(Classifier {
        architecture: model.architecture,
        pooling: model.pooling,
        backbone,
        head,
        feature_map,
        num_classes,
    })
}

fn check_model(model: &ModelSpec, num_classes: i64) -> Result<()> {
    let name = architecture_name(model.architecture);
    if num_classes < 1 {
        return Err(Error::Invalid(format!(
            "{name} needs at least one class, got {num_classes}"
        )));
    }
    if let Some(position) = model.head.iter().position(|&width| width == 0) {
        return Err(Error::Invalid(format!(
            "model.head[{position}] is 0: every dense layer needs a width > 0"
        )));
    }
    if !(0.0..1.0).contains(&model.dropout) {
        return Err(Error::Invalid(format!(
            "model.dropout is {}: it must be in [0, 1)",
            model.dropout
        )));
    }
    Ok(())
}

impl Classifier {
    /// Logits `[N, num_classes]` for normalised float images `[N, 3, H, W]` (any memory format).
    /// `train` switches dropout and batch-norm statistics updates on.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head_forward_t(&self.backbone_forward_t(xs, train), train)
    }

    /// Logits from the backbone's feature map `[N, C, H, W]`: pooling, then the dense head.
    pub fn head_forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        let mut xs = match self.pooling {
            // flatten, not flat_view: channels-last activations are not viewable as [N, C*H*W].
            Pooling::Flatten => features.flatten(1, -1),
            Pooling::Avg => features.adaptive_avg_pool2d([1, 1]).flatten(1, -1),
        };
        for module in &self.head {
            xs = match module {
                HeadModule::Linear(linear) => xs.apply(linear),
                // In place, as torchvision's ReLU(inplace=True): a linear layer's backward
                // needs its input, not its output, so nothing the graph keeps is overwritten.
                HeadModule::Relu => xs.relu_(),
                HeadModule::Dropout(probability) => dropout(xs, *probability, train),
            };
        }
        xs
    }

    /// The backbone's feature map `[N, C, H, W]`.
    pub fn backbone_forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut xs = xs.shallow_clone();
        for module in &self.backbone {
            xs = match module {
                BackboneModule::Conv(conv) => xs.apply(conv),
                BackboneModule::BatchNorm(norm) => xs.apply_t(norm, train),
                // In place (a convolution's or batch norm's backward never reads its output):
                // one activation-sized allocation and pass fewer per layer.
                BackboneModule::Relu => xs.relu_(),
                BackboneModule::MaxPool => xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
                BackboneModule::Dropout(probability) => dropout(xs, *probability, train),
            };
        }
        xs
    }

    /// True when the backbone's output is a function of the image alone, in training as in
    /// evaluation: no batch norm (batch statistics, running-statistics updates) and no dropout.
    /// Only then can a frozen backbone's features be computed once and reused.
    pub fn backbone_depends_on_image_only(&self) -> bool {
        self.backbone.iter().all(|module| {
            matches!(
                module,
                BackboneModule::Conv(_) | BackboneModule::Relu | BackboneModule::MaxPool
            )
        })
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The backbone's output `[channels, height, width]` for the image size it was built for.
    pub fn feature_map(&self) -> [i64; 3] {
        self.feature_map
    }

    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }
}

fn dropout(xs: Tensor, probability: f64, train: bool) -> Tensor {
    if train && probability > 0.0 {
        xs.dropout(probability, true)
    } else {
        xs
    }
}

impl ModuleT for Classifier {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Classifier::forward_t(self, xs, train)
    }
}
