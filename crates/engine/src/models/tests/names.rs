//! Variable names are torchvision's, so weights move between Easel and PyTorch.

use super::spec;
use crate::models::build_classifier;
use easel_spec::{Architecture, Pooling};
use std::collections::BTreeSet;
use tch::Device;
use tch::nn::VarStore;

fn names(architecture: Architecture, head: &[u32]) -> BTreeSet<String> {
    let vs = VarStore::new(Device::Cpu);
    build_classifier(
        &vs.root(),
        &spec(architecture, head, Pooling::Avg, 0.5),
        10,
        (32, 32),
    )
    .unwrap();
    vs.variables().into_keys().collect()
}

fn conv_names(indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .flat_map(|i| [format!("features.{i}.weight"), format!("features.{i}.bias")])
        .collect()
}

fn classifier_names(indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .flat_map(|i| {
            [
                format!("classifier.{i}.weight"),
                format!("classifier.{i}.bias"),
            ]
        })
        .collect()
}

#[test]
fn vgg16_uses_torchvisions_names_exactly() {
    // torchvision vgg16().state_dict() keys, classifier included (head [4096, 4096]).
    let convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];
    let mut expected: BTreeSet<String> = conv_names(&convs).into_iter().collect();
    expected.extend(classifier_names(&[0, 3, 6]));
    assert_eq!(names(Architecture::Vgg16, &[4096, 4096]), expected);
}

#[test]
fn vgg16_bn_uses_torchvisions_names_without_the_batch_counter() {
    let convs = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40];
    let mut expected: BTreeSet<String> = conv_names(&convs).into_iter().collect();
    for conv in convs {
        let norm = conv + 1;
        for var in ["weight", "bias", "running_mean", "running_var"] {
            expected.insert(format!("features.{norm}.{var}"));
        }
    }
    expected.extend(classifier_names(&[0, 3]));
    let actual = names(Architecture::Vgg16Bn, &[64]);
    assert!(actual.contains("features.41.running_var") && actual.contains("features.40.weight"));
    assert_eq!(actual, expected);
}

#[test]
fn vgg19_and_vgg11_end_where_torchvision_ends() {
    assert!(names(Architecture::Vgg19, &[]).contains("features.34.weight"));
    assert!(names(Architecture::Vgg11Bn, &[]).contains("features.26.running_mean"));
    assert!(names(Architecture::Vgg13, &[]).contains("features.22.bias"));
}

#[test]
fn the_small_models_number_their_layers_like_a_sequential() {
    let mut small: BTreeSet<String> = conv_names(&[0, 3]).into_iter().collect();
    small.extend(classifier_names(&[0, 3, 6]));
    assert_eq!(names(Architecture::SmallCnn, &[64, 128]), small);

    let mut deep: BTreeSet<String> = conv_names(&[0, 2, 6, 8, 12, 14]).into_iter().collect();
    deep.extend(classifier_names(&[0]));
    assert_eq!(names(Architecture::DeepCnn, &[]), deep);
}
