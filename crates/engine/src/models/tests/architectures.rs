//! Every architecture builds, counts its parameters like torchvision, groups and freezes its
//! variables, and refuses what cannot make a model.

use super::{ALL_ARCHITECTURES, spec};
use crate::Error;
use crate::models::*;
use easel_spec::{Architecture, Pooling};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn built(model: &easel_spec::ModelSpec, classes: i64, hw: (i64, i64)) -> (VarStore, Classifier) {
    let vs = VarStore::new(Device::Cpu);
    let classifier = build_classifier(&vs.root(), model, classes, hw).expect("model builds");
    (vs, classifier)
}

#[test]
fn every_architecture_gives_one_logit_per_class_with_either_pooling() {
    tch::manual_seed(1);
    let hw = (32, 48);
    for architecture in ALL_ARCHITECTURES {
        for pooling in [Pooling::Flatten, Pooling::Avg] {
            let model = spec(architecture, &[16, 8], pooling, 0.5);
            let (_vs, classifier) = built(&model, 5, hw);
            let images = Tensor::randn([2, 3, hw.0, hw.1], (Kind::Float, Device::Cpu));
            for train in [false, true] {
                let logits = tch::no_grad(|| classifier.forward_t(&images, train));
                assert_eq!(
                    logits.size(),
                    vec![2, 5],
                    "{architecture:?} {pooling:?} train={train}"
                );
                let finite = logits.isfinite().all().int64_value(&[]) == 1;
                assert!(
                    finite,
                    "{architecture:?} {pooling:?} gave non-finite logits"
                );
            }
        }
    }
}

#[test]
fn vgg_feature_parameter_counts_match_torchvision() {
    // torchvision's published totals minus its classifier (25088*4096 + 4096*4096 + 4096*1000 +
    // biases = 123,642,856): vgg16 138,357,544 -> 14,714,688; vgg16_bn 138,365,992 -> 14,723,136.
    let expected = [
        (Architecture::Vgg11, 9_220_480),
        (Architecture::Vgg11Bn, 9_225_984),
        (Architecture::Vgg13, 9_404_992),
        (Architecture::Vgg13Bn, 9_410_880),
        (Architecture::Vgg16, 14_714_688),
        (Architecture::Vgg16Bn, 14_723_136),
        (Architecture::Vgg19, 20_024_384),
        (Architecture::Vgg19Bn, 20_035_392),
    ];
    for (architecture, features) in expected {
        let counts =
            parameter_counts(&spec(architecture, &[], Pooling::Avg, 0.0), 10, (32, 32)).unwrap();
        assert_eq!(counts.backbone, features, "{architecture:?}");
    }
}

#[test]
fn torchvision_sized_head_reproduces_torchvision_totals() {
    let torchvision_head = [4096, 4096];
    for (architecture, total) in [
        (Architecture::Vgg16, 138_357_544),
        (Architecture::Vgg16Bn, 138_365_992),
    ] {
        let model = spec(architecture, &torchvision_head, Pooling::Flatten, 0.5);
        let counts = parameter_counts(&model, 1000, (224, 224)).unwrap();
        assert_eq!(counts.total(), total, "{architecture:?}");
        assert_eq!(counts.trainable(true), counts.head);
    }
}

#[test]
fn built_variables_count_what_the_arithmetic_says() {
    for architecture in [
        Architecture::SmallCnn,
        Architecture::DeepCnn,
        Architecture::Vgg16Bn,
    ] {
        let model = spec(architecture, &[32, 16], Pooling::Flatten, 0.0);
        let (vs, _) = built(&model, 7, (40, 40));
        let expected = parameter_counts(&model, 7, (40, 40)).unwrap();
        assert_eq!(
            count_parameters(&vs),
            (expected.total(), expected.total()),
            "{architecture:?}"
        );
    }
}

#[test]
fn backbone_and_head_variables_sit_in_their_optimizer_groups() {
    let model = spec(Architecture::Vgg11Bn, &[8], Pooling::Avg, 0.0);
    let (vs, _) = built(&model, 3, (32, 32));
    let expected = parameter_counts(&model, 3, (32, 32)).unwrap();
    let variables = vs.variables_.lock().unwrap();
    let in_group = |group: usize| -> u64 {
        let vars = variables
            .trainable_variables
            .iter()
            .filter(|var| var.group == group);
        vars.map(|var| var.tensor.numel() as u64).sum()
    };
    assert_eq!(in_group(BACKBONE_GROUP), expected.backbone);
    assert_eq!(in_group(HEAD_GROUP), expected.head);
}

#[test]
fn freezing_the_backbone_leaves_only_the_head_trainable() {
    let model = spec(Architecture::SmallCnn, &[8], Pooling::Avg, 0.0);
    let (vs, _) = built(&model, 4, (16, 16));
    let counts = parameter_counts(&model, 4, (16, 16)).unwrap();
    set_backbone_trainable(&vs, false);
    assert_eq!(count_parameters(&vs), (counts.total(), counts.head));
    for (name, tensor) in vs.variables() {
        assert_eq!(
            tensor.requires_grad(),
            name.starts_with("classifier."),
            "{name}"
        );
    }
    set_backbone_trainable(&vs, true);
    assert_eq!(count_parameters(&vs), (counts.total(), counts.total()));
}

#[test]
fn feature_maps_follow_the_pooling_stages() {
    let cases = [
        (Architecture::Vgg16, (224, 224), [512, 7, 7]),
        (Architecture::Vgg16, (150, 150), [512, 4, 4]),
        (Architecture::Vgg16Bn, (32, 32), [512, 1, 1]),
        (Architecture::Vgg11, (64, 40), [512, 2, 1]),
        (Architecture::SmallCnn, (150, 150), [64, 37, 37]),
        (Architecture::SmallCnn, (4, 4), [64, 1, 1]),
        (Architecture::DeepCnn, (64, 48), [128, 8, 6]),
    ];
    for (architecture, hw, expected) in cases {
        assert_eq!(
            feature_map_shape(architecture, hw).unwrap(),
            expected,
            "{architecture:?} {hw:?}"
        );
    }
}

#[test]
fn an_image_too_small_for_the_backbone_is_refused_with_the_minimum() {
    let error = feature_map_shape(Architecture::Vgg16, (24, 24)).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::ImageTooSmall { minimum: 32, .. }),
        "{error:?}"
    );
    assert!(
        message.contains("24x24") && message.contains("vgg16") && message.contains("32x32"),
        "{message}"
    );
    assert!(message.contains("5 pooling stages"), "{message}");

    // One side is enough to collapse the map.
    assert!(matches!(
        feature_map_shape(Architecture::Vgg19Bn, (64, 16)),
        Err(Error::ImageTooSmall { .. })
    ));
    assert!(matches!(
        feature_map_shape(Architecture::SmallCnn, (3, 8)),
        Err(Error::ImageTooSmall { minimum: 4, .. })
    ));
    assert!(matches!(
        feature_map_shape(Architecture::DeepCnn, (0, 0)),
        Err(Error::ImageTooSmall { minimum: 8, .. })
    ));

    let vs = VarStore::new(Device::Cpu);
    let model = spec(Architecture::Vgg13, &[8], Pooling::Avg, 0.0);
    let built = build_classifier(&vs.root(), &model, 2, (16, 16));
    assert!(matches!(built, Err(Error::ImageTooSmall { .. })));
    assert!(
        vs.variables().is_empty(),
        "nothing is allocated for a model that cannot work"
    );
}

#[test]
fn settings_that_cannot_make_a_model_are_refused() {
    let vs = VarStore::new(Device::Cpu);
    let cases = [
        (
            spec(Architecture::SmallCnn, &[8], Pooling::Avg, 0.0),
            0,
            "class",
        ),
        (
            spec(Architecture::SmallCnn, &[8, 0], Pooling::Avg, 0.0),
            3,
            "model.head[1]",
        ),
        (
            spec(Architecture::SmallCnn, &[8], Pooling::Avg, 1.0),
            3,
            "model.dropout",
        ),
    ];
    for (model, classes, needle) in cases {
        let message = build_classifier(&vs.root(), &model, classes, (16, 16))
            .unwrap_err()
            .to_string();
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn channels_last_inputs_give_the_same_logits() {
    tch::manual_seed(2);
    let model = spec(Architecture::SmallCnn, &[16], Pooling::Flatten, 0.0);
    let (_vs, classifier) = built(&model, 3, (12, 20));
    let images = Tensor::randn([2, 3, 12, 20], (Kind::Float, Device::Cpu));
    let channels_last = images
        .permute([0, 2, 3, 1])
        .contiguous()
        .permute([0, 3, 1, 2]);
    assert!(!channels_last.is_contiguous());
    let (plain, from_channels_last) = tch::no_grad(|| {
        (
            classifier.forward_t(&images, false),
            classifier.forward_t(&channels_last, false),
        )
    });
    assert!(plain.allclose(&from_channels_last, 1e-5, 1e-5, false));
}

#[test]
fn dropout_acts_in_training_only() {
    tch::manual_seed(3);
    let model = spec(Architecture::DeepCnn, &[32], Pooling::Avg, 0.5);
    let (_vs, classifier) = built(&model, 3, (16, 16));
    let images = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    tch::no_grad(|| {
        let eval_a = classifier.forward_t(&images, false);
        let eval_b = classifier.forward_t(&images, false);
        assert!(eval_a.equal(&eval_b), "evaluation is deterministic");
        let train = classifier.forward_t(&images, true);
        assert!(
            !train.allclose(&eval_a, 1e-6, 1e-6, false),
            "training applies dropout"
        );
    });
}

#[test]
fn activation_estimate_sums_every_layer_output_twice() {
    // small_cnn at 8x8, head [64, 128], 2 classes, per image:
    // input 3*8*8=192; conv 2048, relu 2048, pool 512; conv 1024, relu 1024, pool 256;
    // flatten 256; head 64+64+64 + 128+128+128 + 2 = 578. Total 7938 elements.
    let model = spec(Architecture::SmallCnn, &[64, 128], Pooling::Flatten, 0.0);
    assert_eq!(activation_bytes(&model, 2, (8, 8), 1, 4), 7938 * 4 * 2);
    assert_eq!(
        activation_bytes(&model, 2, (8, 8), 32, 2),
        7938 * 32 * 2 * 2
    );

    let vgg = spec(
        Architecture::Vgg16,
        &[32, 64, 128, 64],
        Pooling::Flatten,
        0.0,
    );
    let at_150 = activation_bytes(&vgg, 5, (150, 150), 128, 2);
    let at_224 = activation_bytes(&vgg, 5, (224, 224), 128, 2);
    assert!(
        at_224 > 2 * at_150 && at_224 < 3 * at_150,
        "activations scale with pixels: {at_150} {at_224}"
    );
    // VGG16 at 224 keeps 15.2M conv outputs + as many ReLU outputs + pools + input = 28.78M
    // elements per image, 115 MB in fp32, before the x2 for backward.
    let per_image_fp32 = activation_bytes(&vgg, 5, (224, 224), 1, 4) / 2;
    assert!(
        (115_000_000..115_300_000).contains(&per_image_fp32),
        "{per_image_fp32}"
    );
}
