//! Pretrained backbones: load `features.*` tensors from safetensors or a PyTorch `state_dict`
//! file into a model's VarStore, and save a trained backbone so one run's features become the
//! next run's `model.pretrained`.
//!
//! Every tensor is checked before any is copied, so a file that does not fit leaves the model
//! untouched and the error lists every missing, mis-shaped or unexpected tensor at once.

use crate::models::BACKBONE_PREFIX;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

mod pickle;
mod torch_archive;
mod torch_legacy;

#[cfg(test)]
pub(crate) use pickle::REFUSALS as PICKLE_REFUSALS;

/// How to turn any PyTorch weights file into one Easel reads, shown when a file cannot be read.
const CONVERT_SNIPPET: &str = "import torch; from safetensors.torch import save_file\n\
    state = torch.load(\"IN.pth\", map_location=\"cpu\")  # a model object? use its .state_dict()\n\
    save_file({k: v.contiguous() for k, v in state.items() if torch.is_tensor(v)}, \"OUT.safetensors\")";

/// How the owner of a TorchScript archive turns it into safetensors (loading it runs its code,
/// which is theirs to run, not the worker's).
const TORCHSCRIPT_SNIPPET: &str = "import torch; from safetensors.torch import save_file\n\
    module = torch.jit.load(\"IN.pt\", map_location=\"cpu\")\n\
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, \"OUT.safetensors\")";

/// BatchNorm's step counter in torchvision state_dicts; Easel's batch norm has a fixed momentum
/// and never reads it.
const BATCH_COUNTER_SUFFIX: &str = ".num_batches_tracked";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsFormat {
    Safetensors,
    /// A zip archive written by `torch.save(state_dict)` (`.pt`, `.pth`, `.bin`).
    PytorchArchive,
    /// The pickle stream `torch.save` wrote before PyTorch 1.6 (torchvision's published weights).
    PytorchLegacy,
}

/// What `load_pretrained_backbone` did, for logs and the run report.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub path: PathBuf,
    pub format: WeightsFormat,
    /// Backbone tensors copied into the model (weights, biases, batch-norm statistics).
    pub tensors_loaded: usize,
    /// Elements copied, summed over those tensors.
    pub elements_loaded: u64,
    /// Tensors in the file that were not used (the old head, batch counters...).
    pub ignored: Vec<String>,
    /// Human notes on what was ignored and why.
    pub notes: Vec<String>,
}

/// Copies the backbone (`features.*`) tensors of the weights file at `path` into `vs`, whose model
/// was built at `vs.root()`. Accepts a full torchvision VGG state_dict: its `classifier.*` head is
/// ignored (the new head keeps its fresh initialisation) and reported in the notes.
///
/// The weights file a spec's `model.pretrained` names, if any. A blob reference (`blob:…`) is
/// for the worker to point at its blob store first; reaching the engine, it is refused by name.
pub fn pretrained_file(spec: &easel_spec::ExperimentSpec) -> Result<Option<&Path>> {
    match &spec.model.pretrained {
        None => Ok(None),
        Some(weights) => weights.file().map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "model.pretrained = `{weights}` names weights uploaded to a worker, not a file"
            ))
        }),
    }
}

/// Fails with `Error::Weights` listing every backbone tensor that is missing from the file, has
/// another shape, or is in the file under `features.*` but not in the model; nothing is copied then.
pub fn load_pretrained_backbone(vs: &mut VarStore, path: &Path) -> Result<LoadReport> {
    let (format, file_tensors) = read_weights(path)?;
    let (file_tensors, data_parallel) = strip_data_parallel_prefix(file_tensors);
    let model_tensors: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| is_backbone(name))
        .collect();
    let problems = fit_problems(&model_tensors, &file_tensors);
    if !problems.is_empty() {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            problems,
        });
    }

    let mut elements_loaded = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, mut target) in model_tensors.iter().map(|(n, t)| (n, t.shallow_clone())) {
            let source = &file_tensors[name];
            target
                .f_copy_(source)
                .map_err(|source_error| Error::Weights {
                    path: path.to_path_buf(),
                    problems: vec![format!("{name}: {source_error}")],
                })?;
            elements_loaded += source.numel() as u64;
        }
        Ok(())
    })?;

    let ignored: Vec<String> = file_tensors
        .keys()
        .filter(|name| !model_tensors.contains_key(*name))
        .cloned()
        .collect();
    let mut notes = ignore_notes(&ignored);
    if data_parallel {
        notes.push(format!(
            "names carried DataParallel's {DATA_PARALLEL_PREFIX:?} prefix; it was removed"
        ));
    }
    tracing::info!(
        path = %path.display(),
        tensors = model_tensors.len(),
        ignored = ignored.len(),
        "loaded pretrained backbone"
    );
    Ok(LoadReport {
        path: path.to_path_buf(),
        format,
        tensors_loaded: model_tensors.len(),
        elements_loaded,
        ignored,
        notes,
    })
}

/// Writes the backbone (`features.*`, batch-norm statistics included) of `vs` as safetensors,
/// ready to be another experiment's `model.pretrained`. Returns the number of tensors written.
/// The file appears complete or not at all (written beside, then renamed).
pub fn save_backbone(vs: &VarStore, path: &Path) -> Result<usize> {
    let tensors: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| is_backbone(name))
        .map(|(name, tensor)| (name, tensor.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    if tensors.is_empty() {
        return Err(Error::Invalid(format!(
            "cannot save a backbone to {}: the model has no {BACKBONE_PREFIX}.* variables",
            path.display()
        )));
    }
    let named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    let partial = path.with_extension("safetensors.partial");
    Tensor::write_safetensors(&named, &partial)?;
    std::fs::rename(&partial, path).map_err(|error| Error::io(path, error))?;
    Ok(tensors.len())
}

/// `nn.DataParallel` saves every name as `module.<name>`.
const DATA_PARALLEL_PREFIX: &str = "module.";

fn strip_data_parallel_prefix(
    tensors: BTreeMap<String, Tensor>,
) -> (BTreeMap<String, Tensor>, bool) {
    if tensors.is_empty()
        || !tensors
            .keys()
            .all(|name| name.starts_with(DATA_PARALLEL_PREFIX))
    {
        return (tensors, false);
    }
    let stripped = tensors
        .into_iter()
        .map(|(name, tensor)| (name[DATA_PARALLEL_PREFIX.len()..].to_string(), tensor))
        .collect();
    (stripped, true)
}

fn is_backbone(name: &str) -> bool {
    name.strip_prefix(BACKBONE_PREFIX)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// Every reason the file's tensors cannot fill the model's backbone, in name order.
fn fit_problems(model: &BTreeMap<String, Tensor>, file: &BTreeMap<String, Tensor>) -> Vec<String> {
    let mut problems = Vec::new();
    if !file.keys().any(|name| is_backbone(name)) {
        let examples: Vec<&str> = file.keys().take(3).map(String::as_str).collect();
        problems.push(format!(
            "no tensor is named {BACKBONE_PREFIX}.* (torchvision's names); the file holds {} tensors, e.g. {}",
            file.len(),
            if examples.is_empty() { "none".to_string() } else { examples.join(", ") }
        ));
    }
    for (name, expected) in model {
        match file.get(name) {
            None => problems.push(format!(
                "missing {name} (the model needs {:?})",
                expected.size()
            )),
            Some(found) if found.size() != expected.size() => problems.push(format!(
                "{name} has shape {:?} in the file, the model needs {:?}",
                found.size(),
                expected.size()
            )),
            Some(found) if !found.is_floating_point() => problems.push(format!(
                "{name} holds {:?} values, not floating point",
                found.kind()
            )),
            Some(_) => {}
        }
    }
    for name in file
        .keys()
        .filter(|name| is_backbone(name) && !model.contains_key(*name))
    {
        if !name.ends_with(BATCH_COUNTER_SUFFIX) {
            problems.push(format!(
                "unexpected {name} (the model has no such layer: another architecture?)"
            ));
        }
    }
    problems
}

fn ignore_notes(ignored: &[String]) -> Vec<String> {
    let head = ignored
        .iter()
        .filter(|name| name.starts_with("classifier."))
        .count();
    let counters = ignored
        .iter()
        .filter(|name| name.ends_with(BATCH_COUNTER_SUFFIX))
        .count();
    let other = ignored.len() - head - counters;
    let mut notes = Vec::new();
    if head > 0 {
        notes.push(format!(
            "ignored {head} classifier.* tensors: the new head is trained from scratch"
        ));
    }
    if counters > 0 {
        notes.push(format!(
            "ignored {counters} batch-norm num_batches_tracked counters (not used by Easel)"
        ));
    }
    if other > 0 {
        notes.push(format!(
            "ignored {other} tensors outside {BACKBONE_PREFIX}.* and classifier.*"
        ));
    }
    notes
}

/// Reads every tensor of a weights file onto the CPU, choosing the reader by the file's content
/// (not its extension): safetensors, a zip archive from `torch.save`, or the legacy `torch.save`
/// pickle stream. A TorchScript archive is refused unread: libtorch's loader for it runs code.
fn read_weights(path: &Path) -> Result<(WeightsFormat, BTreeMap<String, Tensor>)> {
    let mut magic = [0u8; 9];
    let read = std::fs::File::open(path)
        .and_then(|mut file| read_prefix(&mut file, &mut magic))
        .map_err(|error| Error::io(path, error))?;
    let magic = &magic[..read];
    let unreadable = |why: String| Error::Weights {
        path: path.to_path_buf(),
        problems: vec![format!(
            "{why}. Convert it to safetensors with Python, then point model.pretrained at the new file:\n{CONVERT_SNIPPET}"
        )],
    };

    if looks_like_safetensors(magic) {
        let tensors =
            Tensor::read_safetensors(path).map_err(|error| unreadable(error.to_string()))?;
        return Ok((WeightsFormat::Safetensors, tensors.into_iter().collect()));
    }
    if magic.starts_with(b"PK\x03\x04") {
        return match torch_archive::archive_kind(path) {
            torch_archive::ArchiveKind::Other => Err(unreadable(
                "this zip archive holds no data.pkl, so it is no PyTorch file (a dataset zip \
                 named as the weights?)"
                    .to_string(),
            )),
            torch_archive::ArchiveKind::TorchSave => {
                let (tensors, wrapper) = torch_archive::read_state_dict(path).map_err(|why| {
                    unreadable(format!("cannot read this torch.save archive: {why}"))
                })?;
                if let Some(key) = wrapper {
                    tracing::info!(path = %path.display(), key, "using the state dict inside the checkpoint");
                }
                Ok((WeightsFormat::PytorchArchive, tensors))
            }
            // TorchScript (`torch.jit.save`) and libtorch C++ archives carry code that
            // libtorch's loader compiles and runs (`__setstate__`): their bytes never reach it.
            torch_archive::ArchiveKind::TorchScript => Err(Error::Weights {
                path: path.to_path_buf(),
                problems: vec![format!(
                    "this is a TorchScript archive (torch.jit.save or libtorch's torch::save): \
                     it holds code, and Easel never runs code from a weights file. Accepted \
                     formats: safetensors, or a state_dict saved with torch.save (zip or \
                     legacy). Convert it on your own machine, then point model.pretrained at \
                     the new file:\n{TORCHSCRIPT_SNIPPET}"
                )],
            }),
        };
    }
    // A pickle: the legacy torch.save stream (the reader checks its magic number).
    if magic.first() == Some(&0x80) {
        let (tensors, wrapper) = torch_legacy::read_state_dict(path)
            .map_err(|why| unreadable(format!("cannot read this legacy torch.save file: {why}")))?;
        if let Some(key) = wrapper {
            tracing::info!(path = %path.display(), key, "using the state dict inside the checkpoint");
        }
        return Ok((WeightsFormat::PytorchLegacy, tensors));
    }
    Err(unreadable(
        "this is neither a safetensors file nor a PyTorch file (zip archive or legacy pickle)"
            .to_string(),
    ))
}

fn read_prefix(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// safetensors: an 8-byte little-endian header length, then the JSON header's `{`.
fn looks_like_safetensors(magic: &[u8]) -> bool {
    magic.len() == 9 && magic[8] == b'{' && {
        let mut length = [0u8; 8];
        length.copy_from_slice(&magic[..8]);
        let length = u64::from_le_bytes(length);
        length > 1 && length < 100_000_000
    }
}

/// The tensors of a weights file by name (safetensors or PyTorch archive), for callers that want
/// to look inside one (tests, `client` diagnostics).
pub fn read_named_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(read_weights(path)?.1.into_iter().collect())
}
