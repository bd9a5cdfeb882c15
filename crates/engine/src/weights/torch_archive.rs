//! Tensors from a `torch.save` zip archive (`<name>/data.pkl` + `<name>/data/<key>` records).
//!
//! libtorch's own loader (`torch::jit::_load_parameters`, tch's `loadz_multi`) reads a plain
//! dict but fails on the `OrderedDict` that `model.state_dict()` returns, i.e. on nearly every real
//! `.pt`/`.pth` file, so the pickle is read here and the storages are copied out of the zip.

use super::pickle::{self, TensorRef, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use tch::Tensor;
use zip::ZipArchive;

/// What a zip archive holds, by the names of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `torch.save`: `data.pkl` and no TorchScript code; read here.
    TorchSave,
    /// `torch.jit.save` or a libtorch C++ archive: `data.pkl` beside code or constants. Refused:
    /// libtorch's loader for it compiles and runs that code.
    TorchScript,
    /// No `data.pkl`, or not a readable zip: no PyTorch file, and never handed to libtorch.
    Other,
}

pub fn archive_kind(path: &Path) -> ArchiveKind {
    let Ok(archive) = File::open(path)
        .map(std::io::BufReader::new)
        .map(ZipArchive::new)
    else {
        return ArchiveKind::Other;
    };
    let Ok(archive) = archive else {
        return ArchiveKind::Other;
    };
    let names: Vec<&str> = archive.file_names().collect();
    let has_code = names.iter().any(|name| {
        name.starts_with("code/") || name.contains("/code/") || name.ends_with("constants.pkl")
    });
    match (
        names.iter().any(|name| is_record(name, "data.pkl")),
        has_code,
    ) {
        (false, _) => ArchiveKind::Other,
        (true, false) => ArchiveKind::TorchSave,
        (true, true) => ArchiveKind::TorchScript,
    }
}

/// The tensors of the state dict in a `torch.save` archive, by name. A checkpoint that wraps the
/// state dict (`{"state_dict": {...}}`, `{"model": {...}}`) is unwrapped; the returned string
/// says which key was used.
pub fn read_state_dict(path: &Path) -> Result<(BTreeMap<String, Tensor>, Option<String>), String> {
    let file = File::open(path).map_err(|error| error.to_string())?;
    let archive_bytes = file.metadata().map_err(|error| error.to_string())?.len();
    let mut archive =
        ZipArchive::new(std::io::BufReader::new(file)).map_err(|error| error.to_string())?;
    let pickle_name = archive
        .file_names()
        .find(|name| is_record(name, "data.pkl"))
        .map(str::to_string)
        .ok_or("the archive has no data.pkl")?;
    let prefix = pickle_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    let record = |archive: &mut Archive, name: &str| read_record(archive, name, archive_bytes);
    if let Some(order) = record(&mut archive, &format!("{prefix}byteorder")).ok()
        && order != b"little"
    {
        return Err(format!(
            "tensors stored {} endian are not supported",
            String::from_utf8_lossy(&order)
        ));
    }

    let top = pickle::parse(&record(&mut archive, &pickle_name)?)?;
    let (entries, wrapper) = state_dict_entries(top)?;
    rebuild_tensors(entries, |key| {
        record(&mut archive, &format!("{prefix}data/{key}"))
    })
    .map(|tensors| (tensors, wrapper))
}

/// Builds each named tensor from its storage's bytes (`storage_bytes(key)`, asked once per
/// storage) as a contiguous copy of the view the pickle described.
pub(super) fn rebuild_tensors<B: AsRef<[u8]>>(
    entries: Vec<(String, TensorRef)>,
    mut storage_bytes: impl FnMut(&str) -> Result<B, String>,
) -> Result<BTreeMap<String, Tensor>, String> {
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (name, reference) in entries {
        if !storages.contains_key(&reference.storage_key) {
            let bytes = storage_bytes(&reference.storage_key)?;
            let bytes = bytes.as_ref();
            let element = reference.kind.elt_size_in_bytes();
            let storage =
                Tensor::f_from_data_size(bytes, &[(bytes.len() / element) as i64], reference.kind)
                    .map_err(|error| format!("{name}: {error}"))?;
            storages.insert(reference.storage_key.clone(), storage);
        }
        let storage = &storages[&reference.storage_key];
        // A view larger than its storage (stride 0 repeating one value) is not a state dict's;
        // copying it out could take any amount of memory.
        let elements = reference
            .size
            .iter()
            .try_fold(1i64, |total, &side| total.checked_mul(side.max(0)));
        if elements.is_none_or(|elements| elements > storage.numel() as i64) {
            return Err(format!(
                "{name}: its shape {:?} holds more values than its storage's {}",
                reference.size,
                storage.numel()
            ));
        }
        let tensor = storage
            .f_as_strided(&reference.size, &reference.stride, Some(reference.offset))
            .and_then(|view| view.f_contiguous())
            .map_err(|error| format!("{name}: {error}"))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

fn is_record(name: &str, record: &str) -> bool {
    name == record || name.ends_with(&format!("/{record}"))
}

type Archive = ZipArchive<std::io::BufReader<File>>;

/// How many times its archive's own size a record may inflate to: `torch.save` stores records
/// uncompressed, so only a re-compressed archive has records larger than itself, and only a zip
/// bomb much larger.
const MAX_INFLATION: u64 = 8;

/// A record's bytes. The size its header states is trusted neither for allocation nor as the
/// length: a record stating more than `MAX_INFLATION` times the archive is refused, and one that
/// inflates past what it states is cut off and refused.
fn read_record(archive: &mut Archive, name: &str, archive_bytes: u64) -> Result<Vec<u8>, String> {
    let record = archive
        .by_name(name)
        .map_err(|error| format!("{name}: {error}"))?;
    let stated = record.size();
    let most = archive_bytes.saturating_mul(MAX_INFLATION).max(1 << 20);
    if stated > most {
        return Err(format!(
            "{name}: the record states {stated} bytes, more than {MAX_INFLATION} times the \
             archive's {archive_bytes}"
        ));
    }
    let mut bytes = Vec::with_capacity(stated.min(64 << 20) as usize);
    record
        .take(stated.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| format!("{name}: {error}"))?;
    if bytes.len() as u64 != stated {
        return Err(format!(
            "{name}: the record holds more or fewer bytes than the {stated} it states"
        ));
    }
    Ok(bytes)
}

/// Common keys under which training checkpoints keep the model's state dict.
const WRAPPER_KEYS: [&str; 4] = ["state_dict", "model_state_dict", "model", "module"];

/// Named tensor references, and the checkpoint key they were found under (if wrapped).
type Entries = (Vec<(String, TensorRef)>, Option<String>);

pub(super) fn state_dict_entries(top: Value) -> Result<Entries, String> {
    let Value::Dict(entries) = top else {
        return Err(
            "the pickle holds no dict of tensors (a whole pickled model? save its state_dict())"
                .into(),
        );
    };
    let tensors = tensor_entries(&entries);
    if !tensors.is_empty() {
        return Ok((tensors, None));
    }
    for (key, value) in entries {
        if let (Value::Str(key), Value::Dict(inner)) = (key, value)
            && WRAPPER_KEYS.contains(&key.as_str())
        {
            let tensors = tensor_entries(&inner);
            if !tensors.is_empty() {
                return Ok((tensors, Some(key)));
            }
        }
    }
    Err("the pickle's dict holds no tensors by name".into())
}

fn tensor_entries(entries: &[(Value, Value)]) -> Vec<(String, TensorRef)> {
    entries
        .iter()
        .filter_map(|(key, value)| match (key, value) {
            (Value::Str(name), Value::Tensor(reference)) => Some((name.clone(), reference.clone())),
            _ => None,
        })
        .collect()
}
