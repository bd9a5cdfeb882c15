//! Tensors from a legacy (pre-1.6, non-zip) `torch.save` file, the format of torchvision's
//! published VGG weights (`vgg16-397923af.pth`, saved in 2017).
//!
//! The file is five parts in a row: three small pickles (a magic number, the protocol version
//! 1001, a dict of system facts such as byte order), the pickled state dict whose tensors point
//! at storages by key, a pickled list of those keys, and then each storage's raw bytes in that
//! order, every one preceded by its element count as a little-endian u64.

use super::pickle::{self, Value};
use super::torch_archive::{rebuild_tensors, state_dict_entries};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use tch::Tensor;

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as LONG1's little-endian bytes.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// The state dict of a legacy `torch.save` file, by name, and the checkpoint key it was found
/// under when wrapped (`{"state_dict": {...}}`).
pub fn read_state_dict(path: &Path) -> Result<(BTreeMap<String, Tensor>, Option<String>), String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    let mut reader = Parts {
        bytes: &bytes,
        position: 0,
    };
    match reader.pickle("magic number")?.value {
        Value::BigInt(magic) if magic == MAGIC_NUMBER => {}
        _ => {
            return Err(
                "a pickle, but not one torch.save wrote (its magic number is missing)".to_string(),
            );
        }
    }
    match reader.pickle("protocol version")?.value {
        Value::Int(PROTOCOL_VERSION) => {}
        other => {
            return Err(format!(
                "unsupported legacy protocol version {other:?} (expected {PROTOCOL_VERSION})"
            ));
        }
    }
    check_little_endian(&reader.pickle("system information")?.value)?;
    let top = reader.pickle("state dict")?;
    let (entries, wrapper) = state_dict_entries(top.value)?;
    let Value::List(keys) = reader.pickle("storage key list")?.value else {
        return Err("the storage key list is not a list".to_string());
    };

    let used: HashSet<&str> = entries
        .iter()
        .map(|(_, reference)| reference.storage_key.as_str())
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err("a storage key is not a string".to_string());
        };
        let kind = top
            .storages
            .get(&key)
            .ok_or_else(|| format!("storage {key} is listed but no tensor names it"))?;
        let count = u64::from_le_bytes(reader.array(&key)?);
        let length = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(kind.elt_size_in_bytes()))
            .ok_or_else(|| format!("storage {key}: {count} elements is too large"))?;
        let data = reader.take(length, &key)?;
        // Storages of other checkpoint contents (optimizer state...) are stepped over.
        if used.contains(key.as_str()) {
            storages.insert(key, data);
        }
    }
    rebuild_tensors(entries, |key| {
        storages
            .remove(key)
            .ok_or_else(|| format!("the file holds no data for storage {key}"))
    })
    .map(|tensors| (tensors, wrapper))
}

/// The legacy format stores raw bytes in the saving machine's order.
fn check_little_endian(system: &Value) -> Result<(), String> {
    let Value::Dict(entries) = system else {
        return Ok(());
    };
    let big_endian = entries.iter().any(|(key, value)| {
        matches!((key, value), (Value::Str(key), Value::Bool(false)) if key == "little_endian")
    });
    if big_endian {
        return Err("the file was saved on a big-endian machine; it is not supported".to_string());
    }
    Ok(())
}

/// A cursor over the file's consecutive parts.
struct Parts<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Parts<'a> {
    fn pickle(&mut self, what: &str) -> Result<pickle::Parsed, String> {
        let rest = &self.bytes[self.position..];
        let parsed = pickle::parse_prefix(rest)
            .map_err(|why| format!("{what} (at byte {}): {why}", self.position))?;
        self.position += parsed.length;
        Ok(parsed)
    }

    fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "storage {what}: the file ends early ({} bytes needed at byte {}, {} there)",
                    length,
                    self.position,
                    self.bytes.len() - self.position
                )
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }
}
