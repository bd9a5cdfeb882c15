//! ATen operations that tch does not bind, called through a little C++ (`csrc/`) compiled
//! against the headers of the libtorch tch links:
//!
//! - [`fused_sgd`] / [`fused_adam`]: one multi-tensor optimizer update per parameter group;
//! - [`empty_pinned`]: host memory pinned for copies to the GPU, from PyTorch's caching host
//!   allocator;
//! - [`install_cpu_block_cache`]: a CPU allocator that keeps large freed blocks for the next
//!   training step instead of returning them to the operating system.
//!
//! Every C++ function catches its exceptions and hands their message back; nothing unwinds into
//! Rust.

mod cpu_block_cache;
mod fused;
mod pinned;

pub use cpu_block_cache::{
    CpuBlockCacheCounts, cpu_block_cache_counts, install_cpu_block_cache, release_cpu_block_cache,
    set_cpu_block_cache_capacity,
};
pub use fused::{Adam, AdamGroup, Sgd, SgdGroup, fused_adam, fused_sgd};
pub use pinned::empty_pinned;

use std::ffi::{CStr, c_char, c_int};

/// Why an ATen call was not made: its arguments disagree, or ATen refused it (its message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtenError(pub String);

impl std::fmt::Display for AtenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ATen call failed: {}", self.0)
    }
}

impl std::error::Error for AtenError {}

/// Room for the message of a refused call.
const ERROR_BUFFER: usize = 1024;

/// Turns a C++ function's return code and message buffer into a result.
fn outcome(code: c_int, message: &[c_char; ERROR_BUFFER]) -> Result<(), AtenError> {
    if code == 0 {
        return Ok(());
    }
    #[allow(unsafe_code)]
    // SAFETY: the C++ side writes a NUL-terminated string into the buffer on failure, and the
    // buffer was zeroed before the call, so it ends in a NUL either way.
    let text = unsafe { CStr::from_ptr(message.as_ptr()) };
    Err(AtenError(text.to_string_lossy().into_owned()))
}
