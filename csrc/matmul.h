// The large products outside the time loop (weight gradients, input projection), the same
// call on every device: on the CPU in float32 through oneDNN's brgemm (cpu/brgemm.h: MKL,
// torch's BLAS, runs its AVX2 path on AMD processors), elsewhere at::mm.
#pragma once

#include <ATen/ATen.h>

#include "cpu/brgemm.h"

namespace fastrnn {

// a [M, K] @ b [K, N] (+ bias [N] on every row); a and b may be transposed views.
inline at::Tensor product(const at::Tensor& a, const at::Tensor& b,
                         const c10::optional<at::Tensor>& bias = c10::nullopt) {
  if (cpu::kHaveBrgemm && a.is_cpu() && a.scalar_type() == at::kFloat &&
      b.scalar_type() == at::kFloat && a.size(0) >= cpu::kBrgemmMinRows) {
    return cpu::brgemm_matmul(a, b, bias);
  }
  at::Tensor c = at::mm(a, b);
  return bias.has_value() ? c.add_(*bias) : c;
}

}  // namespace fastrnn
