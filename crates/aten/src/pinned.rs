//! Pinned host buffers for batches on their way to the GPU.

use crate::{AtenError, ERROR_BUFFER, outcome};
use std::ffi::{c_char, c_int};
use tch::Tensor;
use torch_sys::C_tensor;

#[allow(unsafe_code)]
// SAFETY (for the block): the signature matches `csrc/pinned.cpp`, which on success stores a
// heap-allocated `torch::Tensor*` (libtch's `C_tensor`) in `out` and catches every exception.
unsafe extern "C" {
    fn easel_empty_pinned(
        sizes: *const i64,
        dims: usize,
        out: *mut *mut C_tensor,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// An uninitialised u8 tensor of `shape` in pinned host memory (from PyTorch's caching host
/// allocator; see `csrc/pinned.cpp`). Fails where no accelerator is available.
pub fn empty_pinned(shape: &[i64]) -> Result<Tensor, AtenError> {
    let mut tensor: *mut C_tensor = std::ptr::null_mut();
    let mut message: [c_char; ERROR_BUFFER] = [0; ERROR_BUFFER];
    #[allow(unsafe_code)]
    // SAFETY: `shape` is `shape.len()` live i64s; `tensor` and the message buffer (ERROR_BUFFER
    // bytes) are written only by the call.
    let code = unsafe {
        easel_empty_pinned(
            shape.as_ptr(),
            shape.len(),
            &mut tensor,
            message.as_mut_ptr(),
            ERROR_BUFFER,
        )
    };
    outcome(code, &message)?;
    if tensor.is_null() {
        return Err(AtenError("no tensor came back".to_string()));
    }
    #[allow(unsafe_code)]
    // SAFETY: a non-null `tensor` is a fresh `new torch::Tensor` owned by no one else; tch's
    // `Tensor` takes ownership and frees it on drop (`at_free`).
    Ok(unsafe { Tensor::from_ptr(tensor) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_memory_is_allocated_where_cuda_is_and_refused_with_a_reason_elsewhere() {
        match empty_pinned(&[4, 3, 8, 8]) {
            Ok(buffer) => {
                assert!(tch::Cuda::is_available(), "pinned memory without CUDA");
                assert_eq!(buffer.size(), [4, 3, 8, 8]);
                assert_eq!(buffer.kind(), tch::Kind::Uint8);
                assert!(buffer.is_pinned(tch::Device::Cuda(0)), "not pinned");
            }
            Err(error) => {
                assert!(!tch::Cuda::is_available(), "refused with CUDA: {error}");
                assert!(!error.0.is_empty());
            }
        }
    }
}
