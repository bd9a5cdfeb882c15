//! The resumable checkpoint: ONE safetensors file holding the model's variables (`model/<name>`,
//! batch-norm statistics included), the optimizer's buffers (`optimizer/<name>.first|second`) and,
//! in the file's metadata under `easel`, a JSON header: completed epochs, optimizer step counts,
//! best-metric/early-stopping state, the metrics history and the run identity (spec + dataset).
//!
//! Random state: every epoch re-seeds libtorch and the shuffle from (seed, epoch), so the epoch
//! number is the whole RNG state and a resumed run draws exactly what the uninterrupted run drew.
//! Written to a temporary file and renamed: a crash never leaves half a checkpoint.

use crate::events::EpochMetrics;
use crate::trainer::monitor::MetricMonitor;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const METADATA_KEY: &str = "easel";
const FORMAT: u32 = 1;
pub const MODEL_PREFIX: &str = "model/";
pub const OPTIMIZER_PREFIX: &str = "optimizer/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// `run_identity(spec, manifest)` of the run that wrote it.
    pub identity: String,
    /// Completed epochs.
    pub epoch: u32,
    pub global_step: u64,
    pub monitor: MetricMonitor,
    pub history: Vec<EpochMetrics>,
    pub optimizer_steps: BTreeMap<String, u64>,
    pub backbone_frozen: bool,
    /// Early stopping ended the run: a resumed run trains no further.
    pub stopped_early: bool,
    /// Training seconds so far (summed over resumptions).
    pub seconds: f64,
}

/// What a checkpoint must match to be resumed: the resolved spec and the dataset content.
pub fn run_identity(spec: &easel_spec::ExperimentSpec, dataset_digest: &str) -> String {
    let spec_text = toml::to_string(spec).unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"easel run identity v1\n");
    hasher.update(spec_text.as_bytes());
    hasher.update(b"\n");
    hasher.update(dataset_digest.as_bytes());
    hasher.finalize().to_hex().to_string()
}

struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    fn new(tensor: &Tensor) -> Result<Self> {
        let tensor = tensor.detach().to_device(Device::Cpu).contiguous();
        let dtype = Dtype::try_from(tensor.kind())?;
        let numel = tensor.numel();
        let mut bytes = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
        tensor.f_copy_data_u8(&mut bytes, numel)?;
        Ok(HostTensor {
            dtype,
            shape: tensor.size().iter().map(|&d| d as usize).collect(),
            bytes,
        })
    }
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes the checkpoint atomically; returns its size in bytes.
pub fn write(
    path: &Path,
    state: &CheckpointState,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
) -> Result<u64> {
    let mut host = Vec::with_capacity(model.len() + optimizer.len());
    for (name, tensor) in model {
        host.push((format!("{MODEL_PREFIX}{name}"), HostTensor::new(tensor)?));
    }
    for (name, tensor) in optimizer {
        host.push((
            format!("{OPTIMIZER_PREFIX}{name}"),
            HostTensor::new(tensor)?,
        ));
    }
    let header = serde_json::to_string(state).map_err(|e| Error::json("checkpoint header", e))?;
    let metadata = Some(HashMap::from([(METADATA_KEY.to_string(), header)]));
    let bytes =
        safetensors::tensor::serialize(host.iter().map(|(name, t)| (name.as_str(), t)), &metadata)
            .map_err(|e| Error::artifact(path, format!("cannot serialise checkpoint: {e:?}")))?;
    crate::artifacts::write_atomically(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads a checkpoint: its header and tensors (on the CPU), by full name.
pub fn read(path: &Path) -> Result<(CheckpointState, HashMap<String, Tensor>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let unreadable =
        |why: String| Error::artifact(path, format!("not a readable checkpoint: {why}"));
    let (_, metadata) =
        SafeTensors::read_metadata(&bytes).map_err(|e| unreadable(format!("{e:?}")))?;
    let header = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| unreadable("no easel header".into()))?;
    let state: CheckpointState =
        serde_json::from_str(header).map_err(|e| unreadable(e.to_string()))?;
    if state.format != FORMAT {
        return Err(unreadable(format!(
            "format {} (this build reads {FORMAT})",
            state.format
        )));
    }
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| unreadable(format!("{e:?}")))?;
    let mut named = HashMap::new();
    for (name, view) in tensors.tensors() {
        let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let kind = Kind::try_from(view.dtype())?;
        named.insert(name, Tensor::f_from_data_size(view.data(), &size, kind)?);
    }
    Ok((state, named))
}

pub fn new_state(identity: String) -> CheckpointState {
    CheckpointState {
        format: FORMAT,
        identity,
        epoch: 0,
        global_step: 0,
        monitor: MetricMonitor::new(None),
        history: Vec::new(),
        optimizer_steps: BTreeMap::new(),
        backbone_frozen: false,
        stopped_early: false,
        seconds: 0.0,
    }
}

/// Copies `tensors[prefix + name]` into every variable of `vs`; lists every missing one.
pub fn load_variables(
    vs: &tch::nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    let mut missing = Vec::new();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut variable) in variables {
        match tensors.get(&format!("{prefix}{name}")) {
            Some(source) if source.size() == variable.size() => variable.f_copy_(source)?,
            Some(source) => missing.push(format!(
                "{name} has shape {:?}, expected {:?}",
                source.size(),
                variable.size()
            )),
            None => missing.push(format!("{name} missing")),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::artifact(
            path,
            format!("does not fit this model: {}", missing.join("; ")),
        ))
    }
}
