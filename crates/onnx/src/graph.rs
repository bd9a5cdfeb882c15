//! A classifier as a chain of ONNX nodes: each layer reads the previous one's output.

use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto,
    tensor_shape_proto, type_proto,
};
use prost::Message;

/// A weight tensor: its shape and its values, row-major (the layout ONNX initializers have).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub dims: Vec<i64>,
    pub values: Vec<f32>,
}

impl Weights {
    pub fn new(dims: Vec<i64>, values: Vec<f32>) -> Self {
        Weights { dims, values }
    }
}

/// Builds a classifier graph layer by layer, from an input `[batch, channels, height, width]`
/// (float, NCHW, `batch` symbolic) to the output the last layer makes.
#[derive(Debug)]
pub struct ClassifierGraph {
    input: ValueInfoProto,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The name of the value the next layer reads.
    current: String,
}

impl ClassifierGraph {
    pub fn new(input_name: &str, channels: i64, height: i64, width: i64) -> Self {
        let dims = vec![
            Dimension::Named("batch"),
            Dimension::Fixed(channels),
            Dimension::Fixed(height),
            Dimension::Fixed(width),
        ];
        ClassifierGraph {
            input: float_value(input_name, &dims),
            nodes: Vec::new(),
            initializers: Vec::new(),
            current: input_name.to_string(),
        }
    }

    /// A 2-D convolution, stride 1, with `padding` on every side (`weight` `[out, in, kh, kw]`).
    pub fn conv(&mut self, weight: Weights, bias: Weights, padding: i64) {
        let kernel = weight.dims[2..].to_vec();
        let weight = self.initializer("weight", weight);
        let bias = self.initializer("bias", bias);
        self.node(
            "Conv",
            vec![weight, bias],
            vec![
                ints("kernel_shape", kernel),
                ints("pads", vec![padding; 4]),
                ints("strides", vec![1, 1]),
            ],
        );
    }

    /// Batch normalisation in inference mode, with the running statistics.
    pub fn batch_norm(
        &mut self,
        scale: Weights,
        bias: Weights,
        mean: Weights,
        variance: Weights,
        epsilon: f32,
    ) {
        let inputs = vec![
            self.initializer("scale", scale),
            self.initializer("bias", bias),
            self.initializer("running_mean", mean),
            self.initializer("running_var", variance),
        ];
        self.node(
            "BatchNormalization",
            inputs,
            vec![float("epsilon", epsilon)],
        );
    }

    pub fn relu(&mut self) {
        self.node("Relu", Vec::new(), Vec::new());
    }

    /// Max pooling over `size` x `size` windows with stride `size`, rounding down (floor mode).
    pub fn max_pool(&mut self, size: i64) {
        self.node(
            "MaxPool",
            Vec::new(),
            vec![
                ints("kernel_shape", vec![size, size]),
                ints("strides", vec![size, size]),
            ],
        );
    }

    /// `[N, C, H, W]` to `[N, C*H*W]`, in C, H, W order.
    pub fn flatten(&mut self) {
        self.node("Flatten", Vec::new(), vec![int("axis", 1)]);
    }

    /// The mean over height and width, `[N, C, 1, 1]`.
    pub fn global_average_pool(&mut self) {
        self.node("GlobalAveragePool", Vec::new(), Vec::new());
    }

    /// A dense layer `x W^T + b` (`weight` `[out, in]`, as PyTorch stores it).
    pub fn linear(&mut self, weight: Weights, bias: Weights) {
        let weight = self.initializer("weight", weight);
        let bias = self.initializer("bias", bias);
        self.node("Gemm", vec![weight, bias], vec![int("transB", 1)]);
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self) {
        self.node("Softmax", Vec::new(), vec![int("axis", -1)]);
    }

    /// The model, encoded: the graph's output (the last layer's, `[batch, outputs]`) is named
    /// `output_name`, and `metadata` goes into the model's `metadata_props`.
    pub fn finish(
        mut self,
        output_name: &str,
        outputs: i64,
        metadata: &[(&str, String)],
        producer_version: &str,
    ) -> Vec<u8> {
        // The last node writes the graph's output under its public name.
        if let Some(last) = self.nodes.last_mut() {
            last.output = vec![output_name.to_string()];
        }
        let graph = GraphProto {
            name: Some("classifier".to_string()),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![self.input],
            output: vec![float_value(
                output_name,
                &[Dimension::Named("batch"), Dimension::Fixed(outputs)],
            )],
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: Some(crate::IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(crate::OPSET),
            }],
            producer_name: Some("easel".to_string()),
            producer_version: Some(producer_version.to_string()),
            graph: Some(graph),
            metadata_props: metadata
                .iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: Some((*key).to_string()),
                    value: Some(value.clone()),
                })
                .collect(),
            ..Default::default()
        };
        model.encode_to_vec()
    }

    /// Adds a node reading the current value (then `extra` inputs) and makes its output current.
    fn node(&mut self, op_type: &str, extra: Vec<String>, attribute: Vec<AttributeProto>) {
        let name = format!("{}_{}", op_type.to_lowercase(), self.nodes.len());
        let mut input = vec![self.current.clone()];
        input.extend(extra);
        self.nodes.push(NodeProto {
            input,
            output: vec![name.clone()],
            name: Some(name.clone()),
            op_type: Some(op_type.to_string()),
            attribute,
            ..Default::default()
        });
        self.current = name;
    }

    /// Adds a float initializer named after the node about to be added; returns its name.
    fn initializer(&mut self, role: &str, weights: Weights) -> String {
        let name = format!("layer{}.{role}", self.nodes.len());
        let raw: Vec<u8> = weights
            .values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        self.initializers.push(TensorProto {
            dims: weights.dims,
            data_type: Some(tensor_proto::DataType::Float as i32),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }
}

enum Dimension {
    Fixed(i64),
    Named(&'static str),
}

fn float_value(name: &str, dims: &[Dimension]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|dimension| tensor_shape_proto::Dimension {
            value: Some(match dimension {
                Dimension::Fixed(size) => tensor_shape_proto::dimension::Value::DimValue(*size),
                Dimension::Named(name) => {
                    tensor_shape_proto::dimension::Value::DimParam((*name).to_string())
                }
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_decodes_back_with_its_chain_weights_and_metadata() {
        let mut graph = ClassifierGraph::new("image", 3, 4, 4);
        graph.conv(
            Weights::new(vec![2, 3, 3, 3], vec![0.5; 54]),
            Weights::new(vec![2], vec![1.0, -1.0]),
            1,
        );
        graph.relu();
        graph.max_pool(2);
        graph.flatten();
        graph.linear(
            Weights::new(vec![3, 8], vec![0.25; 24]),
            Weights::new(vec![3], vec![0.0; 3]),
        );
        graph.softmax();
        let bytes = graph.finish(
            "probabilities",
            3,
            &[("classes", "[\"a\",\"b\",\"c\"]".to_string())],
            "0.1.0",
        );
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.ir_version, Some(crate::IR_VERSION));
        assert_eq!(model.opset_import[0].version, Some(crate::OPSET));
        let graph = model.graph.unwrap();
        let ops: Vec<&str> = graph
            .node
            .iter()
            .map(|node| node.op_type.as_deref().unwrap())
            .collect();
        assert_eq!(
            ops,
            ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"]
        );
        // Each node reads the one before it; the last writes the graph's output.
        for pair in graph.node.windows(2) {
            assert_eq!(pair[1].input[0], pair[0].output[0]);
        }
        assert_eq!(graph.node[0].input[0], "image");
        assert_eq!(graph.node.last().unwrap().output, ["probabilities"]);
        assert_eq!(graph.initializer.len(), 4);
        let conv_bias = &graph.initializer[1];
        assert_eq!(conv_bias.dims, [2]);
        assert_eq!(
            conv_bias.raw_data.as_deref().unwrap(),
            [1.0f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat()
        );
        assert_eq!(model.metadata_props[0].key.as_deref(), Some("classes"));
    }
}
