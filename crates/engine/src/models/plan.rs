//! Architectures as plain data: the ordered layers of each backbone and of the dense head.
//!
//! One description serves three jobs: building the tch modules, computing shapes and memory
//! arithmetically (no allocation), and naming variables. A layer's position in its list is its
//! torchvision `nn.Sequential` index, so `features.<i>` / `classifier.<i>` names line up with
//! torchvision's VGG state_dicts.

use easel_spec::{Architecture, ModelSpec};

/// Dropout after each of the deep CNN's conv blocks (0.25, fixed because the spec's
/// `dropout` is the head's).
pub const DEEP_CNN_BLOCK_DROPOUT: f64 = 0.25;

/// One backbone layer, in torchvision's `features` order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BackboneLayer {
    /// 3x3 convolution, stride 1, padding 1 ("same"), with bias.
    Conv3x3 {
        in_channels: i64,
        out_channels: i64,
    },
    /// BatchNorm2d (weight, bias, running_mean, running_var).
    BatchNorm {
        channels: i64,
    },
    Relu,
    /// 2x2 max pool, stride 2, floor mode: halves height and width, rounding down.
    MaxPool2x2,
    Dropout {
        probability: f64,
    },
}

/// One head layer, in the order torchvision puts them in VGG's `classifier`: each hidden width is
/// `Linear, ReLU, Dropout` (three indices, the Dropout slot is kept even at p = 0 exactly like
/// torchvision), then the output `Linear`. So hidden layer `k` is `classifier.{3k}` and the output
/// layer is `classifier.{3 * hidden}`; a `[4096, 4096]` head gives torchvision's 0, 3, 6.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadLayer {
    Linear { in_features: i64, out_features: i64 },
    Relu,
    Dropout { probability: f64 },
}

/// A VGG configuration entry: a conv width or a max pool ("M" in torchvision's `cfgs`).
#[derive(Clone, Copy)]
enum VggItem {
    Conv(i64),
    Pool,
}

use VggItem::{Conv as C, Pool as M};

/// torchvision `cfgs["A"]`: VGG11.
#[rustfmt::skip]
const VGG_A: &[VggItem] = &[C(64), M, C(128), M, C(256), C(256), M, C(512), C(512), M, C(512), C(512), M];
/// torchvision `cfgs["B"]`: VGG13.
#[rustfmt::skip]
const VGG_B: &[VggItem] =
    &[C(64), C(64), M, C(128), C(128), M, C(256), C(256), M, C(512), C(512), M, C(512), C(512), M];
/// torchvision `cfgs["D"]`: VGG16.
#[rustfmt::skip]
const VGG_D: &[VggItem] = &[
    C(64), C(64), M, C(128), C(128), M, C(256), C(256), C(256), M, C(512), C(512), C(512), M,
    C(512), C(512), C(512), M,
];
/// torchvision `cfgs["E"]`: VGG19.
#[rustfmt::skip]
const VGG_E: &[VggItem] = &[
    C(64), C(64), M, C(128), C(128), M, C(256), C(256), C(256), C(256), M, C(512), C(512), C(512),
    C(512), M, C(512), C(512), C(512), C(512), M,
];

/// The spec's name of an architecture (`vgg16_bn`), for messages.
pub fn architecture_name(arch: Architecture) -> &'static str {
    match arch {
        Architecture::SmallCnn => "small_cnn",
        Architecture::DeepCnn => "deep_cnn",
        Architecture::Vgg11 => "vgg11",
        Architecture::Vgg11Bn => "vgg11_bn",
        Architecture::Vgg13 => "vgg13",
        Architecture::Vgg13Bn => "vgg13_bn",
        Architecture::Vgg16 => "vgg16",
        Architecture::Vgg16Bn => "vgg16_bn",
        Architecture::Vgg19 => "vgg19",
        Architecture::Vgg19Bn => "vgg19_bn",
    }
}

/// Channels of the images the models take (RGB).
pub const INPUT_CHANNELS: i64 = 3;

/// The backbone's layers in `features.<i>` order.
///
/// - small_cnn: conv32, relu, pool, conv64, relu, pool (the laptop-sized model).
/// - deep_cnn: three blocks of conv, relu, conv, relu, pool, dropout(0.25) with 32/64/128 channels.
/// - VGG: torchvision's `make_layers(cfg, batch_norm)`: conv [, BN], ReLU per width; pool per "M".
pub fn backbone_layers(arch: Architecture) -> Vec<BackboneLayer> {
    match arch {
        Architecture::SmallCnn => {
            let mut layers = Vec::new();
            let mut in_channels = INPUT_CHANNELS;
            for out_channels in [32, 64] {
                layers.push(BackboneLayer::Conv3x3 {
                    in_channels,
                    out_channels,
                });
                layers.push(BackboneLayer::Relu);
                layers.push(BackboneLayer::MaxPool2x2);
                in_channels = out_channels;
            }
            layers
        }
        Architecture::DeepCnn => {
            let mut layers = Vec::new();
            let mut in_channels = INPUT_CHANNELS;
            for out_channels in [32, 64, 128] {
                layers.push(BackboneLayer::Conv3x3 {
                    in_channels,
                    out_channels,
                });
                layers.push(BackboneLayer::Relu);
                layers.push(BackboneLayer::Conv3x3 {
                    in_channels: out_channels,
                    out_channels,
                });
                layers.push(BackboneLayer::Relu);
                layers.push(BackboneLayer::MaxPool2x2);
                layers.push(BackboneLayer::Dropout {
                    probability: DEEP_CNN_BLOCK_DROPOUT,
                });
                in_channels = out_channels;
            }
            layers
        }
        Architecture::Vgg11 => vgg_layers(VGG_A, false),
        Architecture::Vgg11Bn => vgg_layers(VGG_A, true),
        Architecture::Vgg13 => vgg_layers(VGG_B, false),
        Architecture::Vgg13Bn => vgg_layers(VGG_B, true),
        Architecture::Vgg16 => vgg_layers(VGG_D, false),
        Architecture::Vgg16Bn => vgg_layers(VGG_D, true),
        Architecture::Vgg19 => vgg_layers(VGG_E, false),
        Architecture::Vgg19Bn => vgg_layers(VGG_E, true),
    }
}

fn vgg_layers(config: &[VggItem], batch_norm: bool) -> Vec<BackboneLayer> {
    let mut layers = Vec::new();
    let mut in_channels = INPUT_CHANNELS;
    for item in config {
        match *item {
            VggItem::Pool => layers.push(BackboneLayer::MaxPool2x2),
            VggItem::Conv(out_channels) => {
                layers.push(BackboneLayer::Conv3x3 {
                    in_channels,
                    out_channels,
                });
                if batch_norm {
                    layers.push(BackboneLayer::BatchNorm {
                        channels: out_channels,
                    });
                }
                layers.push(BackboneLayer::Relu);
                in_channels = out_channels;
            }
        }
    }
    layers
}

/// The head's layers in `classifier.<i>` order, from `in_features` (the pooled or flattened
/// backbone output) to `num_classes` logits.
pub fn head_layers(model: &ModelSpec, in_features: i64, num_classes: i64) -> Vec<HeadLayer> {
    let mut layers = Vec::new();
    let mut in_features = in_features;
    for &width in &model.head {
        let out_features = i64::from(width);
        layers.push(HeadLayer::Linear {
            in_features,
            out_features,
        });
        layers.push(HeadLayer::Relu);
        layers.push(HeadLayer::Dropout {
            probability: model.dropout,
        });
        in_features = out_features;
    }
    layers.push(HeadLayer::Linear {
        in_features,
        out_features: num_classes,
    });
    layers
}

impl BackboneLayer {
    /// Number of learnable parameters (BatchNorm running statistics are buffers, not parameters,
    /// as in torchvision's counts).
    pub fn parameters(&self) -> u64 {
        match *self {
            BackboneLayer::Conv3x3 {
                in_channels,
                out_channels,
            } => (out_channels * in_channels * 9 + out_channels) as u64,
            BackboneLayer::BatchNorm { channels } => 2 * channels as u64,
            BackboneLayer::Relu | BackboneLayer::MaxPool2x2 | BackboneLayer::Dropout { .. } => 0,
        }
    }

    /// Output `[channels, height, width]` for an input of `[channels, height, width]`.
    pub fn output_shape(&self, input: [i64; 3]) -> [i64; 3] {
        let [channels, height, width] = input;
        match *self {
            // Padding 1 with a 3x3 kernel keeps the spatial size.
            BackboneLayer::Conv3x3 { out_channels, .. } => [out_channels, height, width],
            BackboneLayer::MaxPool2x2 => [channels, height / 2, width / 2],
            BackboneLayer::BatchNorm { .. }
            | BackboneLayer::Relu
            | BackboneLayer::Dropout { .. } => input,
        }
    }
}

impl HeadLayer {
    pub fn parameters(&self) -> u64 {
        match *self {
            HeadLayer::Linear {
                in_features,
                out_features,
            } => {
                // Saturating: a spec's widths are u32, and two of them multiply past i64.
                let outputs = out_features.max(0) as u64;
                (in_features.max(0) as u64)
                    .saturating_mul(outputs)
                    .saturating_add(outputs)
            }
            HeadLayer::Relu | HeadLayer::Dropout { .. } => 0,
        }
    }

    /// Output width for an input of `in_features`.
    pub fn output_features(&self, in_features: i64) -> i64 {
        match *self {
            HeadLayer::Linear { out_features, .. } => out_features,
            HeadLayer::Relu | HeadLayer::Dropout { .. } => in_features,
        }
    }
}
