//! Training on the real MNIST sample, on the CPU: learning, exact repeats, resumption, transfer.

mod support;

use easel_engine::models::build_classifier;
use easel_engine::weights::save_backbone;
use easel_engine::{DeviceChoice, TrainEvent, TrainOutcome};
use easel_spec::PretrainedWeights;
use support::{read, sample, spec, subset, timeless, train};
use tch::nn::VarStore;

#[test]
fn small_cnn_learns_digits_and_writes_every_artifact() {
    let _serial = support::serial();
    let manifest = subset(&(0..10).collect::<Vec<_>>(), 300, 1);
    let dir = tempfile::tempdir().unwrap();
    let run = train(&spec(3, ""), &manifest, dir.path(), None, None);
    let TrainOutcome::Completed(report) = &run.outcome else {
        panic!("run was not completed")
    };

    let epochs = run.epochs();
    assert_eq!(epochs.len(), 3);
    assert!(
        epochs[2].train_loss < epochs[0].train_loss,
        "training loss falls: {epochs:?}"
    );
    assert!(
        report.best_validation_accuracy > 0.8,
        "validation accuracy {}",
        report.best_validation_accuracy
    );
    let test_accuracy = report.test_accuracy.expect("a test split exists");
    assert!(test_accuracy > 0.8, "test accuracy {test_accuracy}");
    eprintln!(
        "sample accuracy: validation {:.4}, test {test_accuracy:.4}",
        report.best_validation_accuracy
    );
    let last = &epochs[2];
    assert_eq!(last.confusion.len(), 10);
    assert_eq!(last.per_class_accuracy.len(), 10);
    assert_eq!(
        last.confusion.iter().flatten().sum::<u64>(),
        600,
        "20% of 3000 validate"
    );

    // Every artifact is on disk and was announced; report.json comes last.
    let announced: Vec<(String, u64)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::ArtifactWritten { name, bytes } => Some((name.clone(), *bytes)),
            _ => None,
        })
        .collect();
    let last_size = |name: &str| {
        announced
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, b)| *b)
    };
    for name in [
        "spec.toml",
        "manifest.json",
        "classes.json",
        "metrics.jsonl",
        "checkpoints/last.ckpt",
        "weights/best.safetensors",
        "weights/last.safetensors",
        "plots/curves.svg",
        "plots/confusion.svg",
        "report.json",
    ] {
        let on_disk = std::fs::metadata(dir.path().join(name))
            .map(|m| m.len())
            .ok();
        assert!(on_disk.is_some(), "{name} written");
        assert_eq!(
            last_size(name),
            on_disk,
            "{name} announced with its final size"
        );
    }
    assert_eq!(
        announced.last().map(|(n, _)| n.as_str()),
        Some("report.json")
    );
    let metrics_lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics_lines.lines().count(), 3);

    // The run's best weights serve `evaluate` and `predict`.
    let evaluation =
        easel_engine::evaluate(dir.path(), &manifest, &sample().source, DeviceChoice::Cpu).unwrap();
    assert_eq!(evaluation.images, 3000);
    assert!(
        evaluation.accuracy > 0.8,
        "evaluation accuracy {}",
        evaluation.accuracy
    );
    let images: Vec<_> = ["3-three", "7-seven"]
        .iter()
        .map(|class| {
            let entry = manifest
                .entries
                .iter()
                .find(|e| e.path.starts_with(class))
                .unwrap();
            sample().dir.join(&entry.path)
        })
        .collect();
    let predictions = easel_engine::predict(dir.path(), &images, DeviceChoice::Cpu).unwrap();
    assert_eq!(predictions.len(), 2);
    for prediction in &predictions {
        assert_eq!(prediction.top.len(), manifest.classes.len());
        let total: f64 = prediction.top.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
        assert!(prediction.probability >= prediction.top[1].1);
    }
}

#[test]
fn a_seeded_run_repeats_exactly() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2, 3], 40, 2);
    let mut spec = spec(2, "");
    spec.augment = easel_spec::AugmentSpec {
        flip: true,
        random_crop: 0.1,
        color_jitter: 0.2,
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = train(&spec, &manifest, a.path(), None, None);
    let second = train(&spec, &manifest, b.path(), None, None);
    assert_eq!(timeless(&first.epochs()), timeless(&second.epochs()));
    assert_eq!(
        read(&a.path().join("weights/last.safetensors")),
        read(&b.path().join("weights/last.safetensors"))
    );
}

#[test]
fn a_cancelled_run_resumes_to_the_uninterrupted_result() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2, 3, 4], 40, 3);
    // Momentum, a schedule with warm-up, dropout and augmentation: all state that must carry over.
    let spec = {
        let mut spec = spec(
            3,
            "[train.schedule]\nkind = \"cosine\"\nwarmup_epochs = 0.5",
        );
        spec.train.optimizer = easel_spec::Optimizer::Sgd;
        spec.train.learning_rate = 0.05;
        spec.train.momentum = 0.9;
        spec.train.weight_decay = 0.0005;
        spec.model.dropout = 0.3;
        spec.augment.random_crop = 0.1;
        // Cancelled after epoch 1 with no checkpoint due: the cancel itself must write one.
        spec.train.checkpoint_every_epochs = 2;
        spec
    };
    let (whole, parts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let uninterrupted = train(&spec, &manifest, whole.path(), None, None);
    assert!(matches!(uninterrupted.outcome, TrainOutcome::Completed(_)));

    let interrupted = train(&spec, &manifest, parts.path(), None, Some(1));
    assert_eq!(
        interrupted.outcome,
        TrainOutcome::Cancelled {
            completed_epochs: 1
        }
    );
    assert!(parts.path().join("checkpoints/last.ckpt").is_file());
    assert!(!parts.path().join("report.json").exists());

    let resumed = train(&spec, &manifest, parts.path(), None, None);
    let started = resumed.events.iter().find_map(|e| match e {
        TrainEvent::Started(info) => Some(info.start_epoch),
        _ => None,
    });
    assert_eq!(started, Some(2), "resumes after the checkpointed epoch");
    assert!(matches!(resumed.outcome, TrainOutcome::Completed(_)));
    let metrics_of = |dir: &std::path::Path| -> Vec<easel_engine::EpochMetrics> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(
        timeless(&metrics_of(whole.path())),
        timeless(&metrics_of(parts.path()))
    );
    assert_eq!(
        read(&whole.path().join("weights/last.safetensors")),
        read(&parts.path().join("weights/last.safetensors")),
        "resumed weights equal the uninterrupted run's"
    );
}

#[test]
fn a_backbone_trained_on_some_digits_transfers_frozen_to_others() {
    let _serial = support::serial();
    let first_half = subset(&[0, 1, 2, 3, 4], 80, 4);
    let pretrain_dir = tempfile::tempdir().unwrap();
    let pretrain_spec = spec(2, "");
    train(&pretrain_spec, &first_half, pretrain_dir.path(), None, None);

    // Save the backbone of the trained model the way a user would ship it.
    let vs_pretrained = {
        let mut vs = VarStore::new(tch::Device::Cpu);
        build_classifier(&vs.root(), &pretrain_spec.model, 5, (28, 28)).unwrap();
        vs.load(pretrain_dir.path().join("weights/best.safetensors"))
            .unwrap();
        vs
    };
    let backbone = pretrain_dir.path().join("backbone.safetensors");
    assert!(save_backbone(&vs_pretrained, &backbone).unwrap() > 0);

    let second_half = subset(&[5, 6, 7, 8, 9], 80, 5);
    let mut fine_tune = spec(2, "");
    fine_tune.model.pretrained = Some(PretrainedWeights::File(backbone.clone()));
    fine_tune.model.freeze_backbone = true;
    let fine_dir = tempfile::tempdir().unwrap();
    let run = train(&fine_tune, &second_half, fine_dir.path(), None, None);
    let TrainOutcome::Completed(report) = &run.outcome else {
        panic!("fine-tuning completed")
    };
    assert!(
        report.best_validation_accuracy > 0.5,
        "frozen-backbone accuracy {}",
        report.best_validation_accuracy
    );
    let info = run.events.iter().find_map(|e| match e {
        TrainEvent::Started(info) => Some(info.clone()),
        _ => None,
    });
    let info = info.unwrap();
    assert!(
        info.trainable_parameters < info.parameters,
        "backbone frozen: {info:?}"
    );

    // The backbone did not move; the head did.
    let tuned =
        tch::Tensor::read_safetensors(fine_dir.path().join("weights/last.safetensors")).unwrap();
    let pretrained = vs_pretrained.variables();
    for (name, tensor) in &tuned {
        if name.starts_with("features.") {
            assert!(tensor.equal(&pretrained[name]), "{name} stayed frozen");
        }
    }
    assert!(
        tuned
            .iter()
            .any(|(name, _)| name.starts_with("classifier."))
    );

    // Unfrozen after the first epoch, the backbone then learns (at the lower backbone rate).
    let mut unfreeze = fine_tune.clone();
    unfreeze.model.unfreeze_after_epochs = Some(1);
    let unfreeze_dir = tempfile::tempdir().unwrap();
    let run = train(&unfreeze, &second_half, unfreeze_dir.path(), None, None);
    assert!(run.events.iter().any(|e| matches!(e, TrainEvent::Note { message } if message.contains("backbone unfrozen at epoch 2"))));
    let tuned = tch::Tensor::read_safetensors(unfreeze_dir.path().join("weights/last.safetensors"))
        .unwrap();
    let moved = tuned
        .iter()
        .filter(|(name, t)| name.starts_with("features.") && !t.equal(&pretrained[name]))
        .count();
    assert!(moved > 0, "the unfrozen backbone was trained");
}

#[test]
fn the_bf16_copy_trains_the_fp32_master_weights() {
    let _serial = support::serial();
    use easel_engine::trainer::epoch::{Trainee, train_step};
    use easel_engine::trainer::optimizer::{GroupRates, Hyperparameters, Optimizer, parameters_of};
    use easel_engine::trainer::precision::Bf16Copy;
    use tch::{Device, Kind, Reduction, Tensor};
    tch::manual_seed(0);
    let model = easel_spec::ModelSpec::default();
    let vs = VarStore::new(Device::Cpu);
    let net = build_classifier(&vs.root(), &model, 3, (16, 16)).unwrap();
    let copy = Bf16Copy::new(&vs, &model, 3, (16, 16), Device::Cpu).unwrap();
    let optimizer = Optimizer::new(
        Hyperparameters {
            kind: easel_spec::Optimizer::Adam,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        parameters_of(&vs),
    );
    let mut trainee = Trainee {
        vs,
        net,
        optimizer,
        bf16: Some(copy),
    };
    let x = Tensor::randn([12, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::arange(12, (Kind::Int64, Device::Cpu)).remainder(3);
    let rates = GroupRates {
        backbone: 3e-3,
        head: 3e-3,
    };
    let mut losses = Vec::new();
    for _ in 0..30 {
        let (_, loss) = train_step(&mut trainee, &x, &y, 0.0, rates);
        losses.push(loss.double_value(&[]));
    }
    assert!(losses[29] < losses[0] * 0.5, "{losses:?}");
    for (name, tensor) in trainee.vs.variables() {
        assert_eq!(tensor.kind(), Kind::Float, "{name} stays fp32");
    }
    // The fp32 master model has learned what the bf16 copy learned.
    let master_loss = trainee
        .net
        .forward_t(&x, false)
        .cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
    assert!(master_loss.double_value(&[]) < losses[0] * 0.5);
}

#[test]
fn early_stopping_ends_the_run_and_a_rerun_trains_no_further() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2], 30, 6);
    // No epoch can improve the validation loss by 10: patience 1 stops after epoch 2.
    let spec = spec(
        5,
        "[train.early_stopping]\nmonitor = \"val_loss\"\npatience = 1\nmin_delta = 10.0",
    );
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let noted = |run: &support::Recorded, text: &str| {
        run.events
            .iter()
            .any(|e| matches!(e, TrainEvent::Note { message } if message.contains(text)))
    };
    let run = train(&spec, &manifest, dir.path(), Some(cache.path()), None);
    assert!(noted(&run, "images decoded and cached"));
    let TrainOutcome::Completed(report) = &run.outcome else {
        panic!("completed")
    };
    assert!(report.stopped_early);
    assert_eq!(report.epochs_run, 2);
    assert_eq!(run.epochs().len(), 2);
    let again = train(&spec, &manifest, dir.path(), Some(cache.path()), None);
    assert!(
        noted(&again, "images read from the decoded cache"),
        "the second run decodes nothing"
    );
    assert!(
        again.epochs().is_empty(),
        "the finished run is not trained again"
    );
    let TrainOutcome::Completed(again) = &again.outcome else {
        panic!("completed")
    };
    assert_eq!(again.epochs_run, 2);
}
