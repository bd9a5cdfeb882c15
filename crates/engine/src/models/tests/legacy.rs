//! torchvision's published format: state_dicts that PyTorch 2.11 itself saved in the legacy
//! (pre-1.6, non-zip) `torch.save` format, made by `deploy/torch-fixtures.sh`.

use super::spec;
use crate::models::*;
use crate::weights::*;
use easel_spec::{Architecture, Pooling};
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Device, Kind};

fn legacy_fixture(name: &str) -> (PathBuf, serde_json::Map<String, serde_json::Value>) {
    let path = easel_test_support::torch_fixture(&format!("{name}_legacy.pth"));
    let description = std::fs::read_to_string(path.with_extension("json")).unwrap();
    (path, serde_json::from_str(&description).unwrap())
}

/// Every tensor read has the shape, type, sum and first values PyTorch recorded for it.
fn assert_reads_what_pytorch_wrote(name: &str) {
    let (path, expected) = legacy_fixture(name);
    let tensors = read_named_tensors(&path).unwrap();
    assert_eq!(tensors.len(), expected.len(), "{:?}", tensors.keys());
    for (tensor_name, facts) in &expected {
        let tensor = &tensors[tensor_name];
        let shape: Vec<i64> = serde_json::from_value(facts["shape"].clone()).unwrap();
        assert_eq!(tensor.size(), shape, "{tensor_name}");
        let kind = match facts["dtype"].as_str().unwrap() {
            "float32" => Kind::Float,
            "int64" => Kind::Int64,
            other => panic!("unexpected dtype {other}"),
        };
        assert_eq!(tensor.kind(), kind, "{tensor_name}");
        let sum = tensor
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        let expected_sum = facts["sum"].as_f64().unwrap();
        assert!(
            (sum - expected_sum).abs() <= 1e-6 * expected_sum.abs().max(1.0),
            "{tensor_name}: sum {sum} vs {expected_sum}"
        );
        let first: Vec<f64> = serde_json::from_value(facts["first"].clone()).unwrap();
        let flat = tensor.flatten(0, -1).to_kind(Kind::Double);
        // Compared as f32, the values' own precision (JSON's 17 digits parse to within 1 ulp).
        for (i, value) in first.iter().enumerate() {
            assert_eq!(
                flat.double_value(&[i as i64]) as f32,
                *value as f32,
                "{tensor_name}[{i}]"
            );
        }
    }
}

fn model(architecture: Architecture) -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    build_classifier(
        &vs.root(),
        &spec(architecture, &[32, 64, 128, 64], Pooling::Flatten, 0.0),
        5,
        (32, 32),
    )
    .unwrap();
    vs
}

#[test]
fn legacy_vgg16_state_dict_reads_exactly_what_pytorch_saved() {
    assert_reads_what_pytorch_wrote("vgg16");
}

#[test]
fn legacy_vgg11_bn_state_dict_reads_exactly_what_pytorch_saved() {
    assert_reads_what_pytorch_wrote("vgg11_bn");
}

#[test]
fn legacy_vgg16_backbone_loads_and_its_classifier_is_ignored() {
    let (path, _) = legacy_fixture("vgg16");
    let mut target = model(Architecture::Vgg16);
    let report = load_pretrained_backbone(&mut target, &path).unwrap();
    assert_eq!(report.format, WeightsFormat::PytorchLegacy);
    assert_eq!(report.tensors_loaded, 26, "13 convs x (weight, bias)");
    assert_eq!(
        report.elements_loaded, 14_714_688,
        "torchvision's VGG16 features"
    );
    assert_eq!(report.ignored.len(), 6, "{:?}", report.ignored);
    let file = read_named_tensors(&path).unwrap();
    let loaded = target.variables();
    assert!(loaded["features.28.weight"].equal(&file["features.28.weight"]));
}

#[test]
fn legacy_vgg11_bn_loads_running_statistics_and_skips_the_counters() {
    let (path, _) = legacy_fixture("vgg11_bn");
    let mut target = model(Architecture::Vgg11Bn);
    let report = load_pretrained_backbone(&mut target, &path).unwrap();
    assert_eq!(report.format, WeightsFormat::PytorchLegacy);
    assert_eq!(report.tensors_loaded, 48);
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.contains("8 batch-norm num_batches_tracked")),
        "{:?}",
        report.notes
    );
    let file = read_named_tensors(&path).unwrap();
    let loaded = target.variables();
    for name in ["features.1.running_var", "features.26.running_mean"] {
        assert!(loaded[name].equal(&file[name]), "{name}");
    }
}

#[test]
fn a_cut_off_legacy_file_names_the_storage_that_ends_early() {
    let (path, _) = legacy_fixture("vgg11_bn");
    let bytes = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let mut target = model(Architecture::Vgg11Bn);
    let before = target.variables()["features.0.weight"].copy();
    let message = load_pretrained_backbone(&mut target, &cut)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("legacy torch.save") && message.contains("ends early"),
        "{message}"
    );
    assert!(
        target.variables()["features.0.weight"].equal(&before),
        "nothing is loaded from a broken file"
    );
}
