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

/// What a checkpoint must match to be resumed: the spec's training settings and the content of
/// the dataset and of the pretrained weights (blake3 of the file, as [`file_digest`] computes).
/// Where the data and weights lie (data paths, the pretrained file's path, which on a worker names
/// its blob store) and the laptop-only `[local]` table are left out, so a checkpoint carried to
/// another machine, or a spec submitted from another folder, still matches.
pub fn run_identity(
    spec: &easel_spec::ExperimentSpec,
    dataset_digest: &str,
    pretrained_digest: Option<&str>,
) -> String {
    let spec_text = toml::to_string(&training_settings(spec)).unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"easel run identity v2\n");
    hasher.update(spec_text.as_bytes());
    hasher.update(b"\ndataset ");
    hasher.update(dataset_digest.as_bytes());
    hasher.update(b"\npretrained ");
    hasher.update(pretrained_digest.unwrap_or("none").as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// The part of a spec a checkpoint depends on: the spec without data locations, the pretrained
/// file's path, the `[local]` table and speed switches (see [`run_identity`]).
pub fn training_settings(spec: &easel_spec::ExperimentSpec) -> easel_spec::ExperimentSpec {
    let mut training = spec.clone();
    let data = &mut training.data;
    data.path = None;
    data.paths.clear();
    data.train = None;
    data.validation = None;
    data.test = None;
    training.model.pretrained = None;
    training.local = easel_spec::LocalSpec::default();
    // A speed switch: a run may resume with the feature cache turned on or off.
    training.train.cache_frozen_features = true;
    training
}

/// blake3 of a file's bytes, lowercase hex (the digest the worker's blob store names files by).
pub fn file_digest(path: &Path) -> Result<String> {
    easel_digest::digest_file(path).map_err(|e| Error::io(path, e))
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
    let (_, metadata) =
        SafeTensors::read_metadata(&bytes).map_err(|e| unreadable(path, format!("{e:?}")))?;
    let state = parse_state(path, metadata.metadata().as_ref())?;
    let tensors =
        SafeTensors::deserialize(&bytes).map_err(|e| unreadable(path, format!("{e:?}")))?;
    let mut named = HashMap::new();
    for (name, view) in tensors.tensors() {
        let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let kind = Kind::try_from(view.dtype())?;
        named.insert(name, Tensor::f_from_data_size(view.data(), &size, kind)?);
    }
    Ok((state, named))
}

/// Reads only a checkpoint's header (identity, epochs done, history): the first bytes of the
/// file, not its tensors, so a caller can decide cheaply whether a checkpoint fits a run.
pub fn read_state(path: &Path) -> Result<CheckpointState> {
    use std::io::Read;
    // safetensors refuses headers above 100 MB; so does this.
    const MAX_HEADER: u64 = 100_000_000;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|e| unreadable(path, format!("no header length: {e}")))?;
    let length = u64::from_le_bytes(length);
    if length > MAX_HEADER {
        return Err(unreadable(path, format!("header of {length} bytes")));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header)
        .map_err(|e| unreadable(path, format!("header cut short: {e}")))?;
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__")]
        metadata: Option<HashMap<String, String>>,
    }
    let header: Header =
        serde_json::from_slice(&header).map_err(|e| unreadable(path, e.to_string()))?;
    parse_state(path, header.metadata.as_ref())
}

fn unreadable(path: &Path, why: String) -> Error {
    Error::artifact(path, format!("not a readable checkpoint: {why}"))
}

fn parse_state(path: &Path, metadata: Option<&HashMap<String, String>>) -> Result<CheckpointState> {
    let header = metadata
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| unreadable(path, "no easel header".into()))?;
    let state: CheckpointState =
        serde_json::from_str(header).map_err(|e| unreadable(path, e.to_string()))?;
    if state.format != FORMAT {
        return Err(unreadable(
            path,
            format!("format {} (this build reads {FORMAT})", state.format),
        ));
    }
    Ok(state)
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

#[cfg(test)]
mod tests {
    use super::*;
    use easel_spec::ExperimentSpec;

    fn spec(text: &str) -> ExperimentSpec {
        toml::from_str(text).unwrap()
    }

    const BASE: &str = "[data]\npath = \"/home/ana/data/art\"\n[train]\nlearning_rate = 0.001\n";

    #[test]
    fn identity_ignores_where_data_and_weights_lie() {
        let laptop = run_identity(&spec(BASE), "d1", Some("w1"));
        let moved = spec(
            "[data]\npaths = [\"/mnt/a\", \"/mnt/b\"]\n[model]\npretrained = \"blob:w1\"\n\
             [train]\nlearning_rate = 0.001\n[local]\nsteps = 3\n",
        );
        assert_eq!(run_identity(&moved, "d1", Some("w1")), laptop);
        let split = spec(
            "[data]\ntrain = \"/x/t\"\nvalidation = \"/x/v\"\ntest = \"/x/e\"\n\
             [model]\npretrained = \"/var/lib/easel/blobs/ab/cd\"\n[train]\nlearning_rate = 0.001\n",
        );
        assert_eq!(run_identity(&split, "d1", Some("w1")), laptop);
    }

    #[test]
    fn identity_follows_training_settings_dataset_and_weights() {
        let base = run_identity(&spec(BASE), "d1", None);
        let other_rate = spec("[data]\npath = \"/a\"\n[train]\nlearning_rate = 0.01\n");
        assert_ne!(run_identity(&other_rate, "d1", None), base);
        let other_augment = spec(&format!("{BASE}[augment]\nflip = false\n"));
        assert_ne!(run_identity(&other_augment, "d1", None), base);
        assert_ne!(run_identity(&spec(BASE), "d2", None), base);
        assert_ne!(run_identity(&spec(BASE), "d1", Some("w1")), base);
        assert_ne!(
            run_identity(&spec(BASE), "d1", Some("w1")),
            run_identity(&spec(BASE), "d1", Some("w2"))
        );
    }

    #[test]
    fn file_digest_is_the_blake3_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        std::fs::write(&path, b"weights").unwrap();
        assert_eq!(
            file_digest(&path).unwrap(),
            blake3::hash(b"weights").to_hex().to_string()
        );
    }

    #[test]
    fn read_state_reads_the_header_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let mut state = new_state("identity-1".into());
        state.epoch = 3;
        state.global_step = 42;
        let model = vec![("fc.weight".to_string(), Tensor::from_slice(&[1.0f32, 2.0]))];
        write(&path, &state, &model, &[]).unwrap();
        assert_eq!(read_state(&path).unwrap(), state);
        let (full, tensors) = read(&path).unwrap();
        assert_eq!(full, state);
        assert!(tensors.contains_key("model/fc.weight"));

        let garbage = dir.path().join("garbage.ckpt");
        std::fs::write(&garbage, [0xffu8; 16]).unwrap();
        let error = read_state(&garbage).unwrap_err().to_string();
        assert!(error.contains("not a readable checkpoint"), "{error}");
        let plain = dir.path().join("plain.safetensors");
        let bytes = safetensors::tensor::serialize(
            std::iter::empty::<(&str, &HostTensor)>(),
            &None::<HashMap<String, String>>,
        )
        .unwrap();
        std::fs::write(&plain, bytes).unwrap();
        let error = read_state(&plain).unwrap_err().to_string();
        assert!(error.contains("no easel header"), "{error}");
    }
}
