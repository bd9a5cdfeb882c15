// Host memory pinned for copies to the GPU, allocated pinned (tch's `pin_memory` copies an
// existing tensor, and passes the device argument PyTorch 2.11 deprecates).
//
// The allocation comes from PyTorch's caching host allocator: a block freed after a
// non-blocking copy is handed out again only once that copy has finished (the copy records an
// event on it), so a batch gatherer that allocates one such buffer per batch reuses a small,
// safe ring of pinned blocks instead of pinning fresh pages each time.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "report.h"

#include <exception>

extern "C" int easel_empty_pinned(const int64_t *sizes, size_t dims, at::Tensor **out,
                                  char *error, size_t error_len) {
  try {
    auto options = at::TensorOptions().dtype(at::kByte).pinned_memory(true);
    *out = new at::Tensor(at::empty(at::IntArrayRef(sizes, dims), options));
    return 0;
  } catch (const std::exception &e) {
    return easel_aten::report(e.what(), error, error_len);
  } catch (...) {
    return easel_aten::report("an exception that is not a std::exception", error, error_len);
  }
}
