//! SGD with momentum, Adam and AdamW, written with tensor ops so that their state (momentum and
//! moment buffers, step counts) can be saved in a checkpoint and restored exactly — libtorch's
//! C++ optimizers behind tch offer no way to export it. Update rules follow `torch.optim`.

use crate::models::{BACKBONE_GROUP, HEAD_GROUP};
use easel_spec::{Optimizer as OptimizerKind, TrainSpec};
use std::collections::{BTreeMap, HashMap};
use tch::Tensor;
use tch::nn::VarStore;

const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const ADAM_EPS: f64 = 1e-8;

/// A learnable variable of the model, by its var-store name.
#[derive(Debug)]
pub struct Parameter {
    pub name: String,
    pub tensor: Tensor,
    pub group: usize,
}

#[derive(Debug)]
struct ParameterState {
    steps: u64,
    /// SGD momentum buffer, or Adam's first moment.
    first: Tensor,
    /// Adam's second moment.
    second: Option<Tensor>,
}

/// What shapes every update besides the learning rate: the update rule, SGD's momentum and the
/// weight decay (added to the gradient, or decoupled from it for AdamW).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyperparameters {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Hyperparameters {
    /// Plain SGD with `momentum` and no weight decay (what the benches train with).
    pub fn sgd(momentum: f64) -> Self {
        Hyperparameters {
            kind: OptimizerKind::Sgd,
            momentum,
            weight_decay: 0.0,
        }
    }

    /// Those a spec's `[train]` table names.
    pub fn of(train: &TrainSpec) -> Self {
        Hyperparameters {
            kind: train.optimizer,
            momentum: train.momentum,
            weight_decay: train.weight_decay,
        }
    }
}

#[derive(Debug)]
pub struct Optimizer {
    hyperparameters: Hyperparameters,
    parameters: Vec<Parameter>,
    state: HashMap<String, ParameterState>,
}

/// Learnable variables of `vs` with their names and groups, sorted by name (a stable order).
pub fn parameters_of(vs: &VarStore) -> Vec<Parameter> {
    let variables = vs
        .variables_
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name_of: HashMap<usize, &String> = variables
        .named_variables
        .iter()
        .map(|(name, tensor)| (tensor.data_ptr() as usize, name))
        .collect();
    let mut parameters: Vec<Parameter> = variables
        .trainable_variables
        .iter()
        .filter_map(|var| {
            let name = name_of.get(&(var.tensor.data_ptr() as usize))?;
            Some(Parameter {
                name: (*name).clone(),
                tensor: var.tensor.shallow_clone(),
                group: var.group,
            })
        })
        .collect();
    parameters.sort_by(|a, b| a.name.cmp(&b.name));
    parameters
}

impl Optimizer {
    pub fn new(hyperparameters: Hyperparameters, parameters: Vec<Parameter>) -> Self {
        Optimizer {
            hyperparameters,
            parameters,
            state: HashMap::new(),
        }
    }

    pub fn parameters(&self) -> &[Parameter] {
        &self.parameters
    }

    pub fn zero_grad(&mut self) {
        for parameter in &mut self.parameters {
            parameter.tensor.zero_grad();
        }
    }

    /// One update with the gradients libtorch accumulated on the parameters.
    pub fn step(&mut self, learning_rates: GroupRates) {
        self.step_with(learning_rates, |parameter| parameter.tensor.grad());
    }

    /// One update with gradients supplied by `gradient_of` (an undefined tensor = no gradient,
    /// e.g. a frozen variable): used when the gradients were computed on a reduced-precision copy.
    pub fn step_with(
        &mut self,
        learning_rates: GroupRates,
        gradient_of: impl Fn(&Parameter) -> Tensor,
    ) {
        let _no_grad = tch::no_grad_guard();
        let hyperparameters = self.hyperparameters;
        for parameter in &self.parameters {
            if !parameter.tensor.requires_grad() {
                continue;
            }
            let gradient = gradient_of(parameter);
            if !gradient.defined() {
                continue;
            }
            let lr = learning_rates.for_group(parameter.group);
            let state =
                self.state
                    .entry(parameter.name.clone())
                    .or_insert_with(|| ParameterState {
                        steps: 0,
                        first: parameter.tensor.zeros_like(),
                        second: matches!(
                            hyperparameters.kind,
                            OptimizerKind::Adam | OptimizerKind::Adamw
                        )
                        .then(|| parameter.tensor.zeros_like()),
                    });
            state.steps += 1;
            let mut weights = parameter.tensor.shallow_clone();
            match hyperparameters.kind {
                OptimizerKind::Sgd => sgd(&mut weights, gradient, state, lr, hyperparameters),
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    adam(&mut weights, gradient, state, lr, hyperparameters)
                }
            }
        }
    }

    /// Buffers to checkpoint, named `<parameter>.first` / `<parameter>.second`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::new();
        for (name, state) in &self.state {
            tensors.push((format!("{name}.first"), state.first.shallow_clone()));
            if let Some(second) = &state.second {
                tensors.push((format!("{name}.second"), second.shallow_clone()));
            }
        }
        tensors
    }

    pub fn step_counts(&self) -> BTreeMap<String, u64> {
        self.state
            .iter()
            .map(|(name, state)| (name.clone(), state.steps))
            .collect()
    }

    /// Restores what `state_tensors` + `step_counts` saved; `tensors` is looked up by name.
    pub fn restore(
        &mut self,
        step_counts: &BTreeMap<String, u64>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<(), String> {
        self.state.clear();
        for (name, &steps) in step_counts {
            let Some(parameter) = self.parameters.iter().find(|p| &p.name == name) else {
                return Err(format!("optimizer state for unknown variable {name}"));
            };
            let device = parameter.tensor.device();
            let first = tensors
                .get(&format!("{name}.first"))
                .ok_or_else(|| format!("optimizer state {name}.first missing"))?
                .to_device(device);
            let second = match self.hyperparameters.kind {
                OptimizerKind::Sgd => None,
                _ => Some(
                    tensors
                        .get(&format!("{name}.second"))
                        .ok_or_else(|| format!("optimizer state {name}.second missing"))?
                        .to_device(device),
                ),
            };
            self.state.insert(
                name.clone(),
                ParameterState {
                    steps,
                    first,
                    second,
                },
            );
        }
        Ok(())
    }
}

/// Learning rates of the two parameter groups (backbone, head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupRates {
    pub backbone: f64,
    pub head: f64,
}

impl GroupRates {
    fn for_group(&self, group: usize) -> f64 {
        match group {
            BACKBONE_GROUP => self.backbone,
            HEAD_GROUP => self.head,
            _ => self.head,
        }
    }
}

/// A 0-d tensor of `value` with the kind and device of `like`: `addcmul_` scales by it without a
/// parameter-sized temporary (tch's in-place adds take no scale). Filled on the device, so
/// nothing waits on a copy from the host.
fn scalar_like(value: f64, like: &Tensor) -> Tensor {
    Tensor::full([], value, (like.kind(), like.device()))
}

// The updates below work in place, as torch.optim's do: a temporary the size of a parameter is a
// fresh allocation (and, on the CPU, its pages' first-touch faults) every step.

fn sgd(
    weights: &mut Tensor,
    gradient: Tensor,
    state: &mut ParameterState,
    lr: f64,
    hyperparameters: Hyperparameters,
) {
    let Hyperparameters {
        momentum,
        weight_decay: wd,
        ..
    } = hyperparameters;
    let mut gradient = gradient;
    if wd != 0.0 {
        // This step's own gradient (zeroed before the next backward): decayed in place.
        let _ = gradient.addcmul_(weights, &scalar_like(wd, weights));
    }
    if momentum != 0.0 {
        if state.steps == 1 {
            state.first.copy_(&gradient);
        } else {
            state.first *= momentum;
            state.first += &gradient;
        }
        gradient = state.first.shallow_clone();
    }
    let _ = weights.addcmul_(&gradient, &scalar_like(-lr, weights));
}

fn adam(
    weights: &mut Tensor,
    gradient: Tensor,
    state: &mut ParameterState,
    lr: f64,
    hyperparameters: Hyperparameters,
) {
    let wd = hyperparameters.weight_decay;
    let decoupled = hyperparameters.kind == OptimizerKind::Adamw;
    let (beta1, beta2) = ADAM_BETAS;
    let mut gradient = gradient;
    if decoupled {
        if wd != 0.0 {
            *weights *= 1.0 - lr * wd;
        }
    } else if wd != 0.0 {
        let _ = gradient.addcmul_(weights, &scalar_like(wd, weights));
    }
    // m = beta1 m + (1 - beta1) g
    let _ = state.first.lerp_(&gradient, 1.0 - beta1);
    let Some(second) = state.second.as_mut() else {
        return;
    };
    // v = beta2 v + (1 - beta2) g^2 (one temporary: tch's addcmul_ takes no scale)
    *second *= beta2;
    let _ = second.addcmul_(&gradient, &(&gradient * (1.0 - beta2)));
    let t = state.steps as i32;
    let bias1 = 1.0 - beta1.powi(t);
    let bias2 = 1.0 - beta2.powi(t);
    // w -= lr / bias1 * m / (sqrt(v / bias2) + eps): one addcdiv_ of m over that denominator
    // scaled by -bias1 / lr.
    let mut denominator = second.sqrt();
    let _ = denominator.g_div_scalar_(bias2.sqrt());
    let _ = denominator.g_add_scalar_(ADAM_EPS);
    let _ = denominator.g_div_scalar_(-lr / bias1);
    let _ = weights.addcdiv_(&state.first, &denominator);
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn in_place_updates_match_the_textbook_formulas_over_20_steps() {
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::Adamw,
        ] {
            tch::manual_seed(3);
            let vs = VarStore::new(Device::Cpu);
            let start = Tensor::randn([64, 33], (Kind::Float, Device::Cpu));
            let w = vs.root().var_copy("w", &start);
            let hyperparameters = Hyperparameters {
                kind,
                momentum: 0.9,
                weight_decay: 0.01,
            };
            let mut optimizer = Optimizer::new(hyperparameters, parameters_of(&vs));
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
            assert!(gap < 1e-6, "{kind:?}: largest difference {gap}");
        }
    }
}
