//! Which device a run uses, and what this build of libtorch can do.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// CUDA device 0 when available, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl From<easel_spec::worker::DeviceName> for DeviceChoice {
    fn from(name: easel_spec::worker::DeviceName) -> Self {
        use easel_spec::worker::DeviceName;
        match name {
            DeviceName::Auto => DeviceChoice::Auto,
            DeviceName::Cpu => DeviceChoice::Cpu,
            DeviceName::Cuda(index) => DeviceChoice::Cuda(index),
        }
    }
}

impl DeviceChoice {
    /// The device the work runs on, with the host made ready for it first: libtorch's CPU
    /// allocator keeps large freed blocks for the next step (`keep_freed_cpu_blocks`).
    pub fn resolve(self) -> Result<tch::Device> {
        keep_freed_cpu_blocks();
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda(index) => {
                let count = tch::Cuda::device_count() as usize;
                if index < count {
                    Ok(tch::Device::Cuda(index))
                } else {
                    Err(Error::Invalid(format!(
                        "CUDA device {index} requested but {count} CUDA device(s) are available"
                    )))
                }
            }
        }
    }
}

/// Installs the CPU block cache (`easel_aten::install_cpu_block_cache`): a step's activations
/// are tens of megabytes each, and libtorch's own allocator returns them to the operating system
/// when freed, so every step would fault in and zero them again (a third of a small CNN's epoch on
/// a 2-core CPU). Where the cache cannot be installed, work goes on with libtorch's allocator.
fn keep_freed_cpu_blocks() {
    if let Err(error) = easel_aten::install_cpu_block_cache() {
        tracing::warn!(%error, "libtorch's CPU allocator is left as it is");
    }
}

/// Free memory of a CUDA device as reported by `nvidia-smi` (libtorch's C API offers no query).
/// It leaves out what this process's caching allocator holds free for reuse.
pub(crate) fn cuda_free_bytes(index: usize) -> Option<u64> {
    cuda_memory_bytes(index, "memory.free")
}

/// `field` (`memory.free`, `memory.total`) of CUDA device `index`, from `nvidia-smi`.
fn cuda_memory_bytes(index: usize, field: &str) -> Option<u64> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let output = std::process::Command::new("nvidia-smi")
        .args([
            &format!("--query-gpu={field}"),
            "--format=csv,noheader,nounits",
            "-i",
            &smi_device_id(index, visible.as_deref()),
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let mib: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    Some(mib << 20)
}

/// The id `nvidia-smi -i` takes for this process's CUDA device `ordinal`. nvidia-smi ignores
/// `CUDA_VISIBLE_DEVICES`, so in a process that sees a subset (a worker's training process sees
/// its slot's GPU alone, as its `cuda:0`) the ordinal names another card: the `ordinal`-th entry
/// of the list is the card (an index, a `GPU-…` UUID or a `MIG-…` id, all of which `-i`
/// takes). An index entry means nvidia-smi's index when `CUDA_DEVICE_ORDER=PCI_BUS_ID`, which
/// the worker sets for the processes it gives a GPU.
///
/// The worker uses the same mapping to give a training process its slot's card.
pub fn smi_device_id(ordinal: usize, visible: Option<&str>) -> String {
    visible
        .and_then(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .nth(ordinal)
        })
        .map_or_else(|| ordinal.to_string(), str::to_owned)
}

/// The most memory a run could take on `device`: the GPU's whole memory (what is free now
/// leaves out blocks this worker's earlier jobs cached for reuse), or the host's available
/// memory (Linux `MemAvailable`); `None` where it cannot be asked.
pub(crate) fn memory_limit_bytes(device: tch::Device) -> Option<u64> {
    match device {
        tch::Device::Cuda(index) => cuda_memory_bytes(index, "memory.total"),
        other => free_memory_bytes(other),
    }
}

/// Memory a run may still take on `device`: free GPU memory, or the host's available memory
/// (Linux `MemAvailable`); `None` where it cannot be asked.
pub(crate) fn free_memory_bytes(device: tch::Device) -> Option<u64> {
    match device {
        tch::Device::Cuda(index) => cuda_free_bytes(index),
        _ => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib << 10)
        }
    }
}

/// A short human name for a device: "cpu", "cuda:0".
pub(crate) fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(index) => format!("cuda:{index}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// The libtorch version this binary was built against (read from the install at build time).
    pub libtorch_version: String,
    pub cuda_available: bool,
    pub cuda_device_count: usize,
    pub cudnn_available: bool,
}

/// The line `client --version` and `worker --version` print after their own version.
impl std::fmt::Display for RuntimeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libtorch {}, CUDA available: ", self.libtorch_version)?;
        if self.cuda_available {
            let cudnn = if self.cudnn_available { "yes" } else { "no" };
            write!(
                f,
                "yes, {} device(s), cuDNN: {cudnn}",
                self.cuda_device_count
            )
        } else {
            write!(f, "no")
        }
    }
}

pub fn runtime_info() -> RuntimeInfo {
    let cuda_available = tch::Cuda::is_available();
    RuntimeInfo {
        libtorch_version: env!("EASEL_LIBTORCH_VERSION").to_string(),
        cuda_available,
        cuda_device_count: if cuda_available {
            tch::Cuda::device_count() as usize
        } else {
            0
        },
        cudnn_available: cuda_available && tch::Cuda::cudnn_is_available(),
    }
}

#[cfg(test)]
mod tests {
    use super::smi_device_id;

    #[test]
    fn a_cuda_ordinal_names_the_card_nvidia_smi_knows() {
        assert_eq!(smi_device_id(0, None), "0");
        assert_eq!(smi_device_id(2, None), "2");
        // A training process that sees card 3 alone: its cuda:0 is nvidia-smi's 3.
        assert_eq!(smi_device_id(0, Some("3")), "3");
        assert_eq!(smi_device_id(1, Some("4, 6")), "6");
        assert_eq!(
            smi_device_id(0, Some("GPU-8d1b7a2e-0000-0000-0000-000000000000")),
            "GPU-8d1b7a2e-0000-0000-0000-000000000000"
        );
        assert_eq!(smi_device_id(0, Some("MIG-1a2b")), "MIG-1a2b");
        // Past the list (CUDA would report no such device): the ordinal as it stands.
        assert_eq!(smi_device_id(2, Some("5")), "2");
    }
}
