// One multi-tensor optimizer update per parameter group: ATen's fused SGD, Adam and AdamW
// kernels (the ones `torch.optim`'s `fused=True` calls) instead of a handful of kernels per
// parameter. tch binds no `_fused_*` op, so this file calls them for the engine.
//
// Every function returns 0, or 1 with the exception's message in `error` (C++ exceptions must
// not unwind into Rust).

#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <ATen/ops/empty_like.h>

#include "report.h"

#include <exception>
#include <string>
#include <vector>

namespace {

std::vector<at::Tensor> gather(at::Tensor *const *tensors, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

// The CPU kernels walk every tensor of an update as one flat array: a gradient whose strides
// differ from its parameter's (an NCHW master updated from a channels-last bf16 copy) would be
// applied to the wrong elements, silently. Such a gradient (or one of another dtype) is copied
// into the parameter's layout and dtype.
std::vector<at::Tensor> gradients_like(const std::vector<at::Tensor> &params,
                                       at::Tensor *const *grads, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor &grad = *grads[i];
    if (grad.strides() == params[i].strides() &&
        grad.scalar_type() == params[i].scalar_type()) {
      out.push_back(grad);
    } else {
      out.push_back(at::empty_like(params[i]).copy_(grad));
    }
  }
  return out;
}

// Optimizer state must already share its parameter's layout (it is made with `zeros_like` or
// restored into `empty_like`); a mismatch is a bug that would corrupt the state, so it fails.
void require_same_layout(const std::vector<at::Tensor> &params,
                         const std::vector<at::Tensor> &state, const char *what) {
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(state[i].strides() == params[i].strides() &&
                    state[i].scalar_type() == params[i].scalar_type(),
                "optimizer ", what, " ", i, " does not have its parameter's layout and dtype");
  }
}

} // namespace

extern "C" int easel_fused_sgd(at::Tensor *const *params, at::Tensor *const *grads,
                               at::Tensor *const *momentum_buffers, size_t count, double lr,
                               double momentum, double weight_decay, bool is_first_step,
                               char *error, size_t error_len) {
  try {
    auto weights = gather(params, count);
    auto gradients = gradients_like(weights, grads, count);
    std::vector<at::Tensor> buffers;
    if (momentum != 0.0) {
      buffers = gather(momentum_buffers, count);
      require_same_layout(weights, buffers, "momentum buffer");
    }
    at::_fused_sgd_(weights, gradients, buffers, weight_decay, momentum, lr,
                    /*dampening=*/0.0, /*nesterov=*/false, /*maximize=*/false, is_first_step);
    return 0;
  } catch (const std::exception &e) {
    return easel_aten::report(e.what(), error, error_len);
  } catch (...) {
    return easel_aten::report("an exception that is not a std::exception", error, error_len);
  }
}

// `steps` are 0-d float tensors on the parameters' device, one per parameter, counting the
// updates before this one; they are advanced here, as `torch.optim.Adam` does before its kernel.
extern "C" int easel_fused_adam(at::Tensor *const *params, at::Tensor *const *grads,
                                at::Tensor *const *exp_avgs, at::Tensor *const *exp_avg_sqs,
                                at::Tensor *const *steps, size_t count, double lr, double beta1,
                                double beta2, double eps, double weight_decay, bool decoupled,
                                char *error, size_t error_len) {
  try {
    auto weights = gather(params, count);
    auto gradients = gradients_like(weights, grads, count);
    auto first = gather(exp_avgs, count);
    auto second = gather(exp_avg_sqs, count);
    auto step_counts = gather(steps, count);
    require_same_layout(weights, first, "first moment");
    require_same_layout(weights, second, "second moment");
    at::_foreach_add_(step_counts, 1);
    if (decoupled) {
      at::_fused_adamw_(weights, gradients, first, second, /*max_exp_avg_sqs=*/{}, step_counts,
                        lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                        /*maximize=*/false);
    } else {
      at::_fused_adam_(weights, gradients, first, second, /*max_exp_avg_sqs=*/{}, step_counts,
                       lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                       /*maximize=*/false);
    }
    return 0;
  } catch (const std::exception &e) {
    return easel_aten::report(e.what(), error, error_len);
  } catch (...) {
    return easel_aten::report("an exception that is not a std::exception", error, error_len);
  }
}
