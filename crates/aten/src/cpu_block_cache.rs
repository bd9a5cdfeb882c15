//! A CPU allocator for libtorch that keeps large freed blocks for reuse (`csrc/cpu_block_cache.cpp`
//! says why: without it every training step faults in and zeroes its activations afresh).

use crate::{AtenError, ERROR_BUFFER, outcome};
use std::ffi::{c_char, c_int};

#[allow(unsafe_code)]
// SAFETY (for the block): the signatures match `csrc/cpu_block_cache.cpp`; the install catches
// every exception, the other two cannot throw.
unsafe extern "C" {
    fn easel_install_cpu_block_cache(error: *mut c_char, error_len: usize) -> c_int;
    fn easel_cpu_block_cache_counts(
        hits: *mut u64,
        misses: *mut u64,
        cached_bytes: *mut u64,
        cached_blocks: *mut u64,
        capacity_bytes: *mut u64,
    );
    fn easel_release_cpu_block_cache();
    fn easel_set_cpu_block_cache_capacity(bytes: u64);
}

/// Makes the block cache libtorch's CPU allocator for every CPU tensor allocated from now on.
/// Calling it again does nothing. It holds at most a quarter of the memory this process may use
/// (the machine's, or its cgroup's limit when lower), or `EASEL_CPU_BLOCK_CACHE_MIB` (0: nothing
/// is kept); an allocation no cached block fits first frees as much of the longest-waiting ones.
pub fn install_cpu_block_cache() -> Result<(), AtenError> {
    let mut message: [c_char; ERROR_BUFFER] = [0; ERROR_BUFFER];
    #[allow(unsafe_code)]
    // SAFETY: the message buffer is ERROR_BUFFER bytes and written only by the call.
    let code = unsafe { easel_install_cpu_block_cache(message.as_mut_ptr(), ERROR_BUFFER) };
    outcome(code, &message)
}

/// What the block cache has done since it was installed (all zero before).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuBlockCacheCounts {
    /// Large allocations served from a cached block.
    pub hits: u64,
    /// Large allocations that needed a fresh block.
    pub misses: u64,
    /// Bytes in blocks waiting for reuse.
    pub cached_bytes: u64,
    pub cached_blocks: u64,
    /// The most it may keep.
    pub capacity_bytes: u64,
}

pub fn cpu_block_cache_counts() -> CpuBlockCacheCounts {
    let mut counts = CpuBlockCacheCounts::default();
    #[allow(unsafe_code)]
    // SAFETY: five valid, exclusive u64 out-pointers.
    unsafe {
        easel_cpu_block_cache_counts(
            &mut counts.hits,
            &mut counts.misses,
            &mut counts.cached_bytes,
            &mut counts.cached_blocks,
            &mut counts.capacity_bytes,
        )
    };
    counts
}

/// Frees the blocks waiting for reuse; tensors alive keep theirs.
pub fn release_cpu_block_cache() {
    #[allow(unsafe_code)]
    // SAFETY: takes no arguments; a no-op before the install.
    unsafe {
        easel_release_cpu_block_cache()
    };
}

/// Sets how many bytes of freed blocks the cache may keep from now on (0: none, which is
/// libtorch's own allocator's behaviour); the longest-waiting blocks beyond that are freed now. A
/// no-op before [`install_cpu_block_cache`].
pub fn set_cpu_block_cache_capacity(bytes: u64) {
    #[allow(unsafe_code)]
    // SAFETY: takes a plain integer; a no-op before the install.
    unsafe {
        easel_set_cpu_block_cache_capacity(bytes)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// 4 MiB of f32: large enough to be cached.
    const LARGE: i64 = 1 << 20;

    #[test]
    fn a_freed_large_block_serves_the_next_allocation_of_its_size_with_correct_results() {
        install_cpu_block_cache().unwrap();
        install_cpu_block_cache().unwrap();
        let expected: Vec<f32> = (0..LARGE).map(|i| (i % 1000) as f32 * 2.0).collect();
        // Other tests of this binary allocate too, so only growth is asserted.
        let before = cpu_block_cache_counts();
        for _ in 0..3 {
            let ramp = Tensor::arange(LARGE, (Kind::Float, tch::Device::Cpu)).remainder(1000);
            let doubled = &ramp * 2.0;
            let values = Vec::<f32>::try_from(&doubled).unwrap();
            assert!(values == expected, "a reused block gave wrong values");
        }
        let after = cpu_block_cache_counts();
        assert!(after.hits >= before.hits + 2, "{before:?} -> {after:?}");
        assert!(after.cached_blocks >= 1, "{after:?}");
    }

    #[test]
    fn small_allocations_are_left_to_libtorch() {
        install_cpu_block_cache().unwrap();
        let before = cpu_block_cache_counts();
        // Many small tensors; at most the other tests' large ones move the counters meanwhile.
        for _ in 0..10_000 {
            let _small = Tensor::zeros([256], (Kind::Float, tch::Device::Cpu));
        }
        let after = cpu_block_cache_counts();
        // The other test's few large tensors at most.
        assert!(after.hits + after.misses - before.hits - before.misses < 100);
    }
}
