//! `client export RUN_DIR --format onnx`: a run's best weights as an ONNX model, usable outside
//! Easel (ONNX Runtime in Python, C++, C#, Java or the browser; TensorRT; OpenVINO).
//!
//! The graph is the classifier's layer plan (the one the trainer builds from) with dropout left
//! out, as in inference, and a softmax at the end: its input `image` is `[batch, 3, height,
//! width]` float NCHW, already normalised, and its output `probabilities` is `[batch, classes]`.
//! What a caller needs to prepare an image is in the model's `metadata_props`: `classes` (a JSON
//! list of names, in output order), `image_size` (`[height, width]`), `mean` and `std` (JSON
//! lists, RGB order, for pixels scaled to 0-1) and `layout` (`NCHW`).

use crate::artifacts;
use crate::models::{BackboneLayer, HeadLayer, backbone_layers, feature_map_shape, head_layers};
use crate::models::{architecture_name, head_input_features};
use crate::pipeline::{MEAN, STD};
use crate::trained::spec_and_classes;
use crate::{Error, Result};
use easel_onnx::{ClassifierGraph, Weights};
use easel_spec::Pooling;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The epsilon of the batch-norm layers Easel builds (tch's default, PyTorch's too).
const BATCH_NORM_EPSILON: f32 = 1e-5;

/// The names of the model's input and output.
pub const ONNX_INPUT: &str = "image";
pub const ONNX_OUTPUT: &str = "probabilities";

/// The run in `run_dir` with its best weights, as an encoded ONNX model.
pub fn export_onnx(run_dir: &Path) -> Result<Vec<u8>> {
    let (spec, classes) = spec_and_classes(run_dir)?;
    let weights_path = run_dir.join(artifacts::BEST_WEIGHTS);
    let named = NamedWeights {
        tensors: Tensor::read_safetensors(&weights_path)
            .map_err(|e| Error::artifact(&weights_path, e.to_string()))?
            .into_iter()
            .collect(),
        path: weights_path,
    };
    let (height, width) = (
        i64::from(spec.data.image_size.height()),
        i64::from(spec.data.image_size.width()),
    );
    let architecture = spec.model.architecture;
    let mut graph = ClassifierGraph::new(ONNX_INPUT, 3, height, width);
    for (index, layer) in backbone_layers(architecture).into_iter().enumerate() {
        let name = |part: &str| format!("{}.{index}.{part}", crate::models::BACKBONE_PREFIX);
        match layer {
            BackboneLayer::Conv3x3 { .. } => {
                graph.conv(named.get(&name("weight"))?, named.get(&name("bias"))?, 1)
            }
            BackboneLayer::BatchNorm { .. } => graph.batch_norm(
                named.get(&name("weight"))?,
                named.get(&name("bias"))?,
                named.get(&name("running_mean"))?,
                named.get(&name("running_var"))?,
                BATCH_NORM_EPSILON,
            ),
            BackboneLayer::Relu => graph.relu(),
            BackboneLayer::MaxPool2x2 => graph.max_pool(2),
            // Inference: dropout passes its input through.
            BackboneLayer::Dropout { .. } => {}
        }
    }
    let feature_map = feature_map_shape(architecture, (height, width))?;
    if spec.model.pooling == Pooling::Avg {
        graph.global_average_pool();
    }
    graph.flatten();
    let head_in = head_input_features(feature_map, spec.model.pooling);
    let num_classes = classes.len() as i64;
    for (index, layer) in head_layers(&spec.model, head_in, num_classes)
        .into_iter()
        .enumerate()
    {
        let name = |part: &str| format!("{}.{index}.{part}", crate::models::HEAD_PREFIX);
        match layer {
            HeadLayer::Linear { .. } => {
                graph.linear(named.get(&name("weight"))?, named.get(&name("bias"))?)
            }
            HeadLayer::Relu => graph.relu(),
            HeadLayer::Dropout { .. } => {}
        }
    }
    graph.softmax();
    let json = |value: serde_json::Value| value.to_string();
    let metadata = [
        ("classes", json(serde_json::json!(classes))),
        ("image_size", json(serde_json::json!([height, width]))),
        ("mean", json(serde_json::json!(MEAN))),
        ("std", json(serde_json::json!(STD))),
        ("layout", "NCHW".to_string()),
        (
            "input",
            "RGB pixels resized to image_size, scaled to 0-1, then (x - mean) / std per channel"
                .to_string(),
        ),
        (
            "output",
            "class probabilities (softmax), in the order of classes".to_string(),
        ),
        ("architecture", architecture_name(architecture).to_string()),
        ("name", spec.name.clone()),
    ];
    Ok(graph.finish(
        ONNX_OUTPUT,
        num_classes,
        &metadata,
        env!("CARGO_PKG_VERSION"),
    ))
}

/// A weights file's tensors by name.
struct NamedWeights {
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
}

impl NamedWeights {
    fn get(&self, name: &str) -> Result<Weights> {
        let tensor = self.tensors.get(name).ok_or_else(|| {
            Error::artifact(
                &self.path,
                format!("has no `{name}`, which the run's spec.toml model needs"),
            )
        })?;
        let values = Vec::<f32>::try_from(tensor.to_kind(Kind::Float).contiguous().flatten(0, -1))?;
        Ok(Weights::new(tensor.size(), values))
    }
}
