use super::*;
use tch::{Device, Kind, nn::VarStore};

fn quadratic_descent(kind: OptimizerKind, lr: f64) -> f64 {
    let vs = VarStore::new(Device::Cpu);
    let x = vs
        .root()
        .set_group(HEAD_GROUP)
        .var_copy("x", &Tensor::from_slice(&[3.0f32, -2.0]));
    let hyperparameters = Hyperparameters {
        kind,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut optimizer = Optimizer::new(hyperparameters, parameters_of(&vs));
    for _ in 0..200 {
        optimizer.zero_grad();
        let loss = (&x * &x).sum(Kind::Float);
        loss.backward();
        optimizer.step(GroupRates {
            backbone: lr,
            head: lr,
        });
    }
    (&x * &x).sum(Kind::Float).double_value(&[])
}

#[test]
fn every_optimizer_minimises_a_quadratic() {
    assert!(quadratic_descent(OptimizerKind::Sgd, 0.01) < 1e-3);
    assert!(quadratic_descent(OptimizerKind::Adam, 0.1) < 1e-2);
    assert!(quadratic_descent(OptimizerKind::Adamw, 0.1) < 1e-2);
}

#[test]
fn sgd_matches_torch_optim_by_hand() {
    // torch.optim.SGD(momentum=0.9, weight_decay=0.1), lr 0.5, grad of sum(x^2) = 2x.
    let vs = VarStore::new(Device::Cpu);
    let x = vs.root().var_copy("x", &Tensor::from_slice(&[1.0f64]));
    let hyperparameters = Hyperparameters {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 0.1,
    };
    let mut optimizer = Optimizer::new(hyperparameters, parameters_of(&vs));
    let mut expected = 1.0f64;
    let mut buffer = 0.0;
    for step in 0..3 {
        optimizer.zero_grad();
        (&x * &x).sum(Kind::Double).backward();
        optimizer.step(GroupRates {
            backbone: 0.5,
            head: 0.5,
        });
        let g = 2.0 * expected + 0.1 * expected;
        buffer = if step == 0 { g } else { 0.9 * buffer + g };
        expected -= 0.5 * buffer;
    }
    assert!(
        (x.double_value(&[0]) - expected).abs() < 1e-5,
        "{} vs {expected}",
        x.double_value(&[0])
    );
}

/// The textbook updates with a fresh tensor per operation (the engine's updates before they
/// worked in place): the in-place ones must land on the same parameters.
fn reference_step(
    kind: OptimizerKind,
    weights: &Tensor,
    gradient: &Tensor,
    moments: &mut (Tensor, Tensor),
    step: i32,
    lr: f64,
    wd: f64,
) -> Tensor {
    let (beta1, beta2) = ADAM_BETAS;
    match kind {
        OptimizerKind::Sgd => {
            let gradient = gradient + weights * wd;
            moments.0 = if step == 1 {
                gradient
            } else {
                &moments.0 * 0.9 + gradient
            };
            weights - &moments.0 * lr
        }
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let decoupled = kind == OptimizerKind::Adamw;
            let weights = if decoupled {
                weights * (1.0 - lr * wd)
            } else {
                weights.shallow_clone()
            };
            let gradient = if decoupled {
                gradient.shallow_clone()
            } else {
                gradient + &weights * wd
            };
            moments.0 = &moments.0 * beta1 + &gradient * (1.0 - beta1);
            moments.1 = &moments.1 * beta2 + &gradient * &gradient * (1.0 - beta2);
            let bias1 = 1.0 - beta1.powi(step);
            let bias2 = 1.0 - beta2.powi(step);
            let denominator = moments.1.sqrt() / bias2.sqrt() + ADAM_EPS;
            weights - &moments.0 / denominator * (lr / bias1)
        }
    }
}

const KINDS: [OptimizerKind; 3] = [
    OptimizerKind::Sgd,
    OptimizerKind::Adam,
    OptimizerKind::Adamw,
];
const KERNELS: [UpdateKernel; 2] = [UpdateKernel::Fused, UpdateKernel::PerParameter];

/// An optimizer of `kind` over `vs` with momentum 0.9 and weight decay 0.01 (both in play).
fn optimizer_of(vs: &VarStore, kind: OptimizerKind) -> Optimizer {
    let hyperparameters = Hyperparameters {
        kind,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    Optimizer::new(hyperparameters, parameters_of(vs))
}

#[test]
fn in_place_updates_match_the_textbook_formulas_over_20_steps() {
    for (kind, kernel) in KINDS
        .into_iter()
        .flat_map(|kind| KERNELS.map(|kernel| (kind, kernel)))
    {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let start = Tensor::randn([64, 33], (Kind::Float, Device::Cpu));
        let w = vs.root().var_copy("w", &start);
        let mut optimizer = optimizer_of(&vs, kind);
        optimizer.set_kernel(kernel);
        let mut expected = start.copy();
        let mut moments = (start.zeros_like(), start.zeros_like());
        let rates = GroupRates {
            backbone: 0.01,
            head: 0.01,
        };
        for step in 1..=20 {
            let target = Tensor::randn([64, 33], (Kind::Float, Device::Cpu));
            optimizer.zero_grad();
            let loss = (&w - &target).square().sum(Kind::Float) * 0.5;
            loss.backward();
            // The same gradient for both (copied: SGD decays it in place).
            let gradient = w.grad().copy();
            optimizer.step(rates);
            expected = tch::no_grad(|| {
                reference_step(kind, &expected, &gradient, &mut moments, step, 0.01, 0.01)
            });
        }
        let gap = tch::no_grad(|| (&w - &expected).abs().max().double_value(&[]));
        assert!(gap < 1e-6, "{kind:?} {kernel:?}: largest difference {gap}");
    }
}

/// Values that depend on `seed` and position only: tests run in parallel threads, so libtorch's
/// global generator would not give each the same draws.
fn pattern(size: &[i64], seed: f64) -> Tensor {
    let count: i64 = size.iter().product();
    (Tensor::arange(count, (Kind::Float, Device::Cpu)) * (0.37 + seed * 0.013))
        .sin()
        .view(size)
}

/// A model-shaped set of variables: a backbone convolution (channels-last, as on the CPU and
/// CUDA) and bias, and a head, in their two learning-rate groups.
fn model_variables() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let backbone = vs.root().set_group(BACKBONE_GROUP) / "backbone";
    let conv = backbone.var_copy("conv", &pattern(&[8, 3, 3, 3], 1.0));
    tch::no_grad(|| {
        conv.shallow_clone()
            .set_data(&crate::pipeline::channels_last(&conv))
    });
    let _ = backbone.var_copy("bias", &pattern(&[8], 2.0));
    let head = vs.root().set_group(HEAD_GROUP) / "head";
    let _ = head.var_copy("weight", &pattern(&[5, 72], 3.0));
    let _ = head.var_copy("bias", &pattern(&[5], 4.0));
    vs
}

/// Step `step`'s gradient for `parameter`: none for the backbone in the first five steps
/// (frozen, then unfrozen: its state starts later than the head's), and for the convolution
/// channels-last in even steps and NCHW in odd ones (a gradient from the bf16 copy has another
/// layout than its master).
fn scripted_gradient(parameter: &Parameter, step: i64) -> Tensor {
    if parameter.group == BACKBONE_GROUP && step <= 5 {
        return Tensor::new();
    }
    let seed = (step * 7 + parameter.name.len() as i64) as f64;
    let gradient = pattern(&parameter.tensor.size(), seed);
    if parameter.tensor.dim() == 4 && step % 2 == 0 {
        crate::pipeline::channels_last(&gradient)
    } else {
        gradient
    }
}

/// The backbone learns ten times slower than the head (two buckets of a fused update).
const MODEL_RATES: GroupRates = GroupRates {
    backbone: 0.001,
    head: 0.01,
};

fn trained(kind: OptimizerKind, kernel: UpdateKernel) -> (VarStore, Optimizer) {
    let vs = model_variables();
    let mut optimizer = optimizer_of(&vs, kind);
    optimizer.set_kernel(kernel);
    for step in 1..=20 {
        optimizer.step_with(MODEL_RATES, |parameter| scripted_gradient(parameter, step));
    }
    (vs, optimizer)
}

fn largest_gap(a: &Tensor, b: &Tensor) -> f64 {
    tch::no_grad(|| (a - b).abs().max().double_value(&[]))
}

#[test]
fn fused_updates_match_the_per_parameter_ones_over_20_steps() {
    for kind in KINDS {
        let (fused_vs, fused) = trained(kind, UpdateKernel::Fused);
        let (reference_vs, reference) = trained(kind, UpdateKernel::PerParameter);
        assert_eq!(fused.kernel(), UpdateKernel::Fused, "{kind:?} fell back");
        assert_eq!(fused.step_counts(), reference.step_counts());
        assert_eq!(fused.step_counts()["backbone.conv"], 15);
        let reference_variables = reference_vs.variables();
        for (name, tensor) in fused_vs.variables() {
            let gap = largest_gap(&tensor, &reference_variables[&name]);
            assert!(gap < 1e-6, "{kind:?} {name}: largest difference {gap}");
        }
        let reference_state: HashMap<String, Tensor> =
            reference.state_tensors().into_iter().collect();
        for (name, tensor) in fused.state_tensors() {
            let gap = largest_gap(&tensor, &reference_state[&name]);
            assert!(
                gap < 1e-6,
                "{kind:?} state {name}: largest difference {gap}"
            );
        }
    }
}

#[test]
fn a_restored_fused_optimizer_goes_on_as_if_never_stopped() {
    for kind in KINDS {
        let (uninterrupted_vs, _) = trained(kind, UpdateKernel::Fused);
        // 12 steps, a checkpoint of the state (saved NCHW, as safetensors stores it), a new
        // optimizer restored from it, 8 more steps.
        let vs = model_variables();
        let mut first = optimizer_of(&vs, kind);
        for step in 1..=12 {
            first.step_with(MODEL_RATES, |parameter| scripted_gradient(parameter, step));
        }
        let saved: HashMap<String, Tensor> = first
            .state_tensors()
            .into_iter()
            .map(|(name, tensor)| (name, tensor.contiguous()))
            .collect();
        let mut resumed = optimizer_of(&vs, kind);
        resumed.restore(&first.step_counts(), &saved).unwrap();
        drop(first);
        for step in 13..=20 {
            resumed.step_with(MODEL_RATES, |parameter| scripted_gradient(parameter, step));
        }
        assert_eq!(resumed.kernel(), UpdateKernel::Fused, "{kind:?} fell back");

        let uninterrupted = uninterrupted_vs.variables();
        for (name, tensor) in vs.variables() {
            let gap = largest_gap(&tensor, &uninterrupted[&name]);
            assert!(gap < 1e-6, "{kind:?} {name}: largest difference {gap}");
        }
    }
}

#[test]
fn a_refused_fused_update_falls_back_to_per_parameter_updates() {
    let vs = model_variables();
    let hyperparameters = Hyperparameters::sgd(0.9);
    let mut optimizer = Optimizer::new(hyperparameters, parameters_of(&vs));
    let rates = GroupRates {
        backbone: 0.01,
        head: 0.01,
    };
    optimizer.step_with(rates, |parameter| scripted_gradient(parameter, 6));
    // A momentum buffer laid out unlike its parameter: ATen's checks (in the C++ file) refuse it.
    let index = optimizer
        .parameters
        .iter()
        .position(|p| p.name == "head.weight")
        .unwrap();
    let state = optimizer.state[index].as_mut().unwrap();
    state.first = state.first.transpose(0, 1).contiguous().transpose(0, 1);
    let before = optimizer.parameters[index].tensor.copy();
    let expected_buffer =
        tch::no_grad(|| &state.first * 0.9 + scripted_gradient(&optimizer.parameters[index], 7));
    optimizer.step_with(rates, |parameter| scripted_gradient(parameter, 7));
    assert_eq!(optimizer.kernel(), UpdateKernel::PerParameter);
    let after = &optimizer.parameters[index].tensor;
    let gap = largest_gap(after, &(before - expected_buffer * 0.01));
    assert!(gap < 1e-6, "largest difference {gap}");
    assert_eq!(optimizer.step_counts()["head.weight"], 2);
}
