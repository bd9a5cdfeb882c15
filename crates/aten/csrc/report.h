// How every C++ function of this crate hands an exception's message back to Rust.
#pragma once

#include <cstddef>
#include <cstring>

namespace easel_aten {

// Copies `message` into `error` (NUL-terminated, cut to `error_len`); returns 1, the failure code.
inline int report(const char *message, char *error, size_t error_len) {
  if (error != nullptr && error_len > 0) {
    std::strncpy(error, message, error_len - 1);
    error[error_len - 1] = '\0';
  }
  return 1;
}

} // namespace easel_aten
