//! SGD with momentum, Adam and AdamW with their state (momentum and moment buffers, step counts)
//! held here, so that it can be saved in a checkpoint and restored exactly — libtorch's C++
//! optimizers behind tch offer no way to export it. Update rules follow `torch.optim`; an update
//! runs ATen's fused multi-tensor kernels, one call per parameter group (`fused`), and the
//! per-parameter tensor ops (`per_parameter`) are its reference and fallback.

mod fused;
mod per_parameter;

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
    /// SGD momentum buffer, or Adam's first moment; laid out as the parameter is.
    first: Tensor,
    /// Adam's second moment.
    second: Option<Tensor>,
    /// `steps` as a 0-d float tensor on the parameter's device, where the fused Adam kernel reads
    /// and advances it; made when first needed (after a restore, too).
    step_tensor: Option<Tensor>,
}

impl ParameterState {
    fn new(parameter: &Tensor, kind: OptimizerKind) -> Self {
        ParameterState {
            steps: 0,
            first: parameter.zeros_like(),
            second: matches!(kind, OptimizerKind::Adam | OptimizerKind::Adamw)
                .then(|| parameter.zeros_like()),
            step_tensor: None,
        }
    }
}

/// How `Optimizer::step` applies an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKernel {
    /// ATen's fused SGD/Adam/AdamW kernels, one call per parameter group: the default.
    Fused,
    /// Tensor ops, parameter by parameter: the reference, and the fallback if ATen refuses a
    /// fused update.
    PerParameter,
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
    /// One per parameter, in the same order; `None` until its first update.
    state: Vec<Option<ParameterState>>,
    kernel: UpdateKernel,
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
        let state = parameters.iter().map(|_| None).collect();
        Optimizer {
            hyperparameters,
            parameters,
            state,
            kernel: UpdateKernel::Fused,
        }
    }

    /// Updates with `kernel` from now on (the benches and the equality tests compare the two).
    pub fn set_kernel(&mut self, kernel: UpdateKernel) {
        self.kernel = kernel;
    }

    pub fn kernel(&self) -> UpdateKernel {
        self.kernel
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
        let mut updates = Vec::with_capacity(self.parameters.len());
        for (parameter, state) in self.parameters.iter().zip(self.state.iter_mut()) {
            if !parameter.tensor.requires_grad() {
                continue;
            }
            let gradient = gradient_of(parameter);
            if !gradient.defined() {
                continue;
            }
            let state = state.get_or_insert_with(|| {
                ParameterState::new(&parameter.tensor, hyperparameters.kind)
            });
            updates.push(fused::Update {
                parameter,
                state,
                gradient,
            });
        }
        for mut bucket in fused::buckets(updates, hyperparameters.kind) {
            let lr = learning_rates.for_group(bucket[0].parameter.group);
            if self.kernel == UpdateKernel::Fused {
                match fused::update(&mut bucket, lr, hyperparameters) {
                    Ok(()) => continue,
                    Err(error) => {
                        // Refusals come before any write (the C++ file's layout checks, ATen's
                        // argument checks, the allocation of gradient copies); the step tensors
                        // it may have advanced are remade from the counts. So this update and
                        // every later one go parameter by parameter: slower, never wrong.
                        tracing::warn!(%error, "updating parameter by parameter from now on");
                        self.kernel = UpdateKernel::PerParameter;
                    }
                }
            }
            for update in bucket {
                per_parameter::update(update, lr, hyperparameters);
            }
        }
    }

    /// Buffers to checkpoint, named `<parameter>.first` / `<parameter>.second`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::new();
        for (parameter, state) in self.parameters.iter().zip(&self.state) {
            let Some(state) = state else { continue };
            let name = &parameter.name;
            tensors.push((format!("{name}.first"), state.first.shallow_clone()));
            if let Some(second) = &state.second {
                tensors.push((format!("{name}.second"), second.shallow_clone()));
            }
        }
        tensors
    }

    pub fn step_counts(&self) -> BTreeMap<String, u64> {
        self.parameters
            .iter()
            .zip(&self.state)
            .filter_map(|(parameter, state)| Some((parameter.name.clone(), state.as_ref()?.steps)))
            .collect()
    }

    /// Restores what `state_tensors` + `step_counts` saved; `tensors` is looked up by name.
    /// Buffers take their parameter's device and layout (the fused kernels need the layout).
    pub fn restore(
        &mut self,
        step_counts: &BTreeMap<String, u64>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<(), String> {
        let _no_grad = tch::no_grad_guard();
        let mut restored: Vec<Option<ParameterState>> =
            self.parameters.iter().map(|_| None).collect();
        for (name, &steps) in step_counts {
            let Some(index) = self.parameters.iter().position(|p| &p.name == name) else {
                return Err(format!("optimizer state for unknown variable {name}"));
            };
            let parameter = &self.parameters[index].tensor;
            let buffer = |suffix: &str| -> Result<Tensor, String> {
                let saved = tensors
                    .get(&format!("{name}.{suffix}"))
                    .ok_or_else(|| format!("optimizer state {name}.{suffix} missing"))?;
                if saved.size() != parameter.size() {
                    return Err(format!(
                        "optimizer state {name}.{suffix} has shape {:?}, the variable {:?}",
                        saved.size(),
                        parameter.size()
                    ));
                }
                let mut buffer = parameter.empty_like();
                buffer.copy_(saved);
                Ok(buffer)
            };
            let first = buffer("first")?;
            let second = match self.hyperparameters.kind {
                OptimizerKind::Sgd => None,
                _ => Some(buffer("second")?),
            };
            restored[index] = Some(ParameterState {
                steps,
                first,
                second,
                step_tensor: None,
            });
        }
        self.state = restored;
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

#[cfg(test)]
mod tests;
