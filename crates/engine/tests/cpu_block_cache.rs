//! The CPU block cache the trainer installs: once a run's steps have run, the same steps again
//! allocate no fresh large block (their activations reuse freed memory instead of faulting in
//! new pages), and training computes exactly what it computes with libtorch's own allocator.
//! One test in its own binary, so no other test's tensors move the cache's counters.

use easel_engine::DeviceChoice;
use easel_engine::compute_precision::ComputePrecision;
use easel_engine::trainer::epoch::train_step;
use easel_engine::trainer::model_setup::InitialModel;
use easel_engine::trainer::optimizer::GroupRates;
use easel_spec::ExperimentSpec;
use tch::{Device, Kind, Tensor};

const STEPS: usize = 5;

/// The losses of `STEPS` small_cnn steps at 64 px, batch 8 (activations of about 4 MB: cached).
fn losses() -> Vec<f64> {
    let spec: ExperimentSpec = toml::from_str(
        r#"
        [data]
        path = "unused"
        image_size = 64
        [model]
        architecture = "small_cnn"
        head = [32]
        [train]
        epochs = 1
        batch_size = 8
        optimizer = "adam"
        "#,
    )
    .unwrap();
    tch::manual_seed(3);
    let initial = InitialModel::build(&spec, 5, (64, 64), Device::Cpu, &mut |_| {}).unwrap();
    let precision = ComputePrecision::resolve(spec.train.precision, Device::Cpu);
    let mut trainee = initial
        .into_trainee(&spec, &precision, false, None)
        .unwrap();
    let x = Tensor::randn([8, 3, 64, 64], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(5, [8], (Kind::Int64, Device::Cpu));
    let rates = GroupRates {
        backbone: 1e-3,
        head: 1e-3,
    };
    (0..STEPS)
        .map(|_| {
            train_step(&mut trainee, &x, &y, 0.0, rates)
                .1
                .double_value(&[])
        })
        .collect()
}

#[test]
fn steps_after_the_first_reuse_every_large_block_and_train_as_libtorchs_allocator_does() {
    assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
    let installed = easel_aten::cpu_block_cache_counts();

    // Nothing kept: every freed block goes back to the system, as with libtorch's allocator.
    easel_aten::set_cpu_block_cache_capacity(0);
    let uncached = losses();
    let after_uncached = easel_aten::cpu_block_cache_counts();
    assert_eq!(after_uncached.cached_blocks, 0, "{after_uncached:?}");
    assert_eq!(
        after_uncached.hits, installed.hits,
        "hits with nothing kept"
    );

    easel_aten::set_cpu_block_cache_capacity(1 << 30);
    let cached = losses();
    let counts = easel_aten::cpu_block_cache_counts();
    assert!(
        counts.hits > after_uncached.hits,
        "no block reused: {counts:?}"
    );
    assert!(
        counts.cached_blocks > 0 && counts.cached_bytes <= 1 << 30,
        "{counts:?}"
    );
    // A second run of the same steps (a new model, the same sizes) finds every block it needs
    // among those the first one freed.
    let again_before = easel_aten::cpu_block_cache_counts();
    let again = losses();
    let again_after = easel_aten::cpu_block_cache_counts();
    assert_eq!(
        again_after.misses, again_before.misses,
        "a repeated run allocated fresh blocks ({again_before:?} -> {again_after:?})"
    );
    assert!(again_after.hits > again_before.hits);

    for (step, ((a, b), c)) in uncached.iter().zip(&cached).zip(&again).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs() && (a - c).abs() <= 1e-6 * a.abs(),
            "step {step}: loss {a} with libtorch's allocator, {b} and {c} with the cache"
        );
    }
}
