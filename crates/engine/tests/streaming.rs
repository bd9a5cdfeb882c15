//! A dataset streamed from its decoded cache file, batches gathered ahead on a thread of their
//! own (what a dataset larger than memory gets), trains exactly as one held resident.

mod support;

use easel_engine::models::build_classifier;
use easel_engine::pipeline::{Augment, BatchSource, CacheStatus, Residency, load_manifest};
use easel_engine::trainer::epoch::{EpochPlan, TrainTotals, Trainee, train_epoch};
use easel_engine::trainer::optimizer::{Hyperparameters, Optimizer, parameters_of};
use std::sync::atomic::AtomicBool;
use support::{decode_to, sample, spec, subset};
use tch::Device;
use tch::nn::VarStore;

fn trainee(spec: &easel_spec::ExperimentSpec) -> Trainee {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let net = build_classifier(&vs.root(), &spec.model, 3, (20, 24)).unwrap();
    let optimizer = Optimizer::new(Hyperparameters::of(&spec.train), parameters_of(&vs));
    Trainee {
        vs,
        net,
        optimizer,
        bf16: None,
    }
}

/// Two epochs on `source`, from the same initial weights; the totals and the final weights.
fn two_epochs(
    source: &BatchSource,
    spec: &easel_spec::ExperimentSpec,
) -> (Vec<TrainTotals>, Trainee) {
    let mut trainee = trainee(spec);
    let augment = Augment::from_spec(&spec.augment, 20, 24);
    let train_indices: Vec<i64> = (0..source.len() as i64).collect();
    let cancel = AtomicBool::new(false);
    // 90 images in batches of 16: five full batches and a short one of 10.
    let plan = EpochPlan {
        train: &spec.train,
        augment: &augment,
        train_indices: &train_indices,
        batch_size: 16,
        steps_per_epoch: 6,
        total_steps: 12,
        backbone_lr_scale: 1.0,
        cancel: &cancel,
        features: None,
    };
    let mut step = 0;
    let totals = (1..=2)
        .map(|epoch| {
            train_epoch(
                &mut trainee,
                source,
                &plan,
                11,
                epoch,
                &mut step,
                &mut |_| {},
            )
            .unwrap()
            .unwrap()
        })
        .collect();
    (totals, trainee)
}

#[test]
fn an_epoch_streamed_from_the_mapped_cache_trains_exactly_as_one_held_in_memory() {
    let _serial = support::serial();
    let manifest = subset(&[0, 1, 2], 30, 4);
    let mut spec = spec(2, "");
    spec.augment.flip = true;
    let cache = tempfile::tempdir().unwrap();
    let source = &sample().source;
    let in_memory = load_manifest(&manifest, source, decode_to(20, 24), None).unwrap();
    assert_eq!(in_memory.cache, CacheStatus::Disabled);
    let written = load_manifest(&manifest, source, decode_to(20, 24), Some(cache.path())).unwrap();
    assert_eq!(written.cache, CacheStatus::Written);
    let mapped = load_manifest(&manifest, source, decode_to(20, 24), Some(cache.path())).unwrap();
    assert_eq!(mapped.cache, CacheStatus::Hit);
    assert!(mapped.data.images.equal(&in_memory.data.images));
    assert!(written.data.images.equal(&in_memory.data.images));

    let resident =
        BatchSource::with_residency(&in_memory.data, Device::Cpu, false, Residency::OnDevice)
            .unwrap();
    let streamed =
        BatchSource::with_residency(&mapped.data, Device::Cpu, false, Residency::Streamed).unwrap();
    assert_eq!(streamed.residency(), Residency::Streamed);
    let (resident_totals, resident_trainee) = two_epochs(&resident, &spec);
    let (streamed_totals, streamed_trainee) = two_epochs(&streamed, &spec);
    assert_eq!(resident_totals.len(), 2);
    assert_eq!(resident_totals[0].images, 90);
    for (a, b) in resident_totals.iter().zip(&streamed_totals) {
        assert_eq!(
            (a.loss, a.accuracy, a.images),
            (b.loss, b.accuracy, b.images)
        );
    }
    let weights = |t: &Trainee| {
        let mut named = t.vs.variables().into_iter().collect::<Vec<_>>();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    for ((name, a), (_, b)) in weights(&resident_trainee)
        .iter()
        .zip(weights(&streamed_trainee).iter())
    {
        assert!(a.equal(b), "{name} differs between resident and streamed");
    }
}

#[test]
fn a_streamed_pass_left_part_way_stops_its_thread_and_the_next_pass_starts_afresh() {
    let manifest = subset(&[0, 1], 20, 5);
    let loaded = load_manifest(&manifest, &sample().source, decode_to(12, 12), None).unwrap();
    let streamed =
        BatchSource::with_residency(&loaded.data, Device::Cpu, false, Residency::Streamed).unwrap();
    let order: Vec<i64> = (0..40).rev().collect();
    {
        let mut pass = streamed.batches(&order, 4, 10).unwrap();
        let (x, y) = pass.next_batch(None).unwrap().unwrap();
        assert_eq!(x.size(), vec![4, 3, 12, 12]);
        assert_eq!(y.size(), vec![4]);
        // Dropped here with batches still waiting: the gatherer must not keep it from returning.
    }
    let mut pass = streamed.batches(&order, 16, 3).unwrap();
    let mut sizes = Vec::new();
    while let Some((x, y)) = pass.next_batch(None).unwrap() {
        sizes.push(x.size()[0]);
        let expected = streamed.batch(
            &streamed.indices(&order[(sizes.len() - 1) * 16..][..x.size()[0] as usize]),
            None,
        );
        assert!(x.equal(&expected.0) && y.equal(&expected.1));
    }
    assert_eq!(sizes, vec![16, 16, 8]);
}
