//! What a run computes in: a spec's `train.precision` resolved on the device the run got.
//!
//! bf16 halves the bytes every convolution moves and, where the hardware computes it natively
//! (CUDA tensor cores; Intel AMX or AVX512-BF16 through oneDNN), runs it at several times fp32's
//! rate. Elsewhere libtorch emulates it, slower than fp32, so `auto` keeps fp32 there.

use easel_spec::Precision;
use tch::Device;

/// The resolved precision of a run and the sentence that tells the user why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputePrecision {
    pub bf16: bool,
    pub reason: String,
}

impl ComputePrecision {
    /// `requested` on `device`, given what this CPU computes natively.
    pub fn resolve(requested: Precision, device: Device) -> Self {
        Self::resolve_with(requested, device, native_bf16_cpu())
    }

    /// As [`ComputePrecision::resolve`], with the CPU's native bf16 feature (if any) given.
    pub fn resolve_with(requested: Precision, device: Device, cpu_bf16: Option<&str>) -> Self {
        let (bf16, reason) = match (requested, device.is_cuda(), cpu_bf16) {
            (Precision::Fp32, _, _) => (false, "fp32, as train.precision asks".to_owned()),
            (Precision::Bf16, true, _) => (true, "bf16 on CUDA, as train.precision asks".into()),
            (Precision::Bf16, false, Some(feature)) => (
                true,
                format!("bf16 on the CPU ({feature}), as train.precision asks"),
            ),
            (Precision::Bf16, false, None) => (
                true,
                "bf16 on a CPU without native bf16, as train.precision asks: libtorch emulates \
                 it, slower than fp32 (train.precision = \"auto\" picks fp32 here)"
                    .to_owned(),
            ),
            (Precision::Auto, true, _) => (true, "bf16 (auto: CUDA)".to_owned()),
            (Precision::Auto, false, Some(feature)) => (
                true,
                format!("bf16 (auto: this CPU computes bf16 natively, {feature})"),
            ),
            (Precision::Auto, false, None) => (
                false,
                "fp32 (auto: this CPU has no native bf16, where bf16 would be slower)".to_owned(),
            ),
        };
        ComputePrecision { bf16, reason }
    }
}

/// The CPU feature that computes bf16 natively (`AMX` or `AVX512-BF16`), from the kernel's
/// view of the CPU; `None` where there is none or it cannot be asked.
/// Read once per process: the CPU does not change.
pub fn native_bf16_cpu() -> Option<&'static str> {
    static NATIVE: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *NATIVE.get_or_init(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        native_bf16_in_flags(&cpuinfo)
    })
}

/// The native bf16 feature named in `/proc/cpuinfo`'s `flags` line.
fn native_bf16_in_flags(cpuinfo: &str) -> Option<&'static str> {
    let flags = cpuinfo
        .lines()
        .find(|line| line.starts_with("flags"))?
        .split_once(':')?
        .1;
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    if has("amx_bf16") {
        Some("AMX")
    } else if has("avx512_bf16") {
        Some("AVX512-BF16")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_bf16_where_the_hardware_computes_it() {
        let cpu = Device::Cpu;
        let cuda = Device::Cuda(0);
        assert!(ComputePrecision::resolve_with(Precision::Auto, cuda, None).bf16);
        assert!(ComputePrecision::resolve_with(Precision::Auto, cpu, Some("AMX")).bf16);
        let plain = ComputePrecision::resolve_with(Precision::Auto, cpu, None);
        assert!(!plain.bf16);
        assert!(plain.reason.contains("no native bf16"), "{}", plain.reason);
        // What the spec asks for explicitly holds on every device.
        assert!(ComputePrecision::resolve_with(Precision::Bf16, cpu, None).bf16);
        assert!(!ComputePrecision::resolve_with(Precision::Fp32, cuda, Some("AMX")).bf16);
    }

    #[test]
    fn native_bf16_is_read_from_the_cpu_flags() {
        let amx = "processor : 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n";
        assert_eq!(native_bf16_in_flags(amx), Some("AMX"));
        let zen4 = "flags : fpu avx512f avx512_bf16\n";
        assert_eq!(native_bf16_in_flags(zen4), Some("AVX512-BF16"));
        assert_eq!(native_bf16_in_flags("flags : fpu avx2 avx512f\n"), None);
        // A prefix of a flag is not the flag.
        assert_eq!(native_bf16_in_flags("flags : avx512_bf16x\n"), None);
        assert_eq!(native_bf16_in_flags("model name : ARM\n"), None);
    }
}
