// The large products outside the time loop (weight gradients, input projection), the same
// call on every device: on the CPU in float32 through oneDNN's brgemm (cpu/brgemm.h: MKL,
// torch's BLAS, runs its AVX2 path on AMD processors), or for a single row times a weight
// used transposed through the SIMD level's GEMV (cpu/gemv.h), or for a few rows through
// the BLAS (kBrgemmMinProductRows); in bfloat16 through brgemm's
// bf16 micro-kernel; elsewhere at::mm.
#pragma once

#include <ATen/ATen.h>

#include "backend.h"
#include "cpu/brgemm.h"
#include "cpu/levels.h"

namespace fastrnn {

// a [M, K] @ b [K, N] (+ bias [N] on every row); a and b may be transposed views.
inline at::Tensor product(const at::Tensor& a, const at::Tensor& b,
                         const c10::optional<at::Tensor>& bias = c10::nullopt) {
  const bool cpu_float = on_cpu_backend(a.device()) && a.scalar_type() == at::kFloat &&
                         b.scalar_type() == at::kFloat;
  if (cpu_float && a.size(0) == 1 && b.stride(0) == 1 && b.size(0) > 0 && b.size(1) > 0) {
    // b = W^T with W's rows contiguous: y = W a^T, one dot product per row of W
    const at::Tensor x = a.contiguous();
    at::Tensor y = at::empty({1, b.size(1)}, a.options());
    cpu::simd_level().gemv(b.size(1), b.size(0), b.data_ptr<float>(), b.stride(1),
                           x.data_ptr<float>(),
                           bias.has_value() ? bias->data_ptr<float>() : nullptr,
                           y.data_ptr<float>());
    return y;
  }
  if (cpu::kHaveBrgemm && cpu_float && a.size(0) >= cpu::kBrgemmMinProductRows) {
    return cpu::brgemm_matmul(a, b, bias);
  }
  const bool cpu_bf16 = on_cpu_backend(a.device()) && a.scalar_type() == at::kBFloat16 &&
                        b.scalar_type() == at::kBFloat16;
  if (cpu_bf16 && a.size(0) == 1 && b.stride(0) == 1 && b.size(0) > 0 && b.size(1) > 0) {
    const at::Tensor x = a.contiguous();  // as for float32 above: no weight to pack
    at::Tensor y = at::empty({1, b.size(1)}, a.options());
    cpu::simd_level().gemv_bf16(b.size(1), b.size(0), b.data_ptr<c10::BFloat16>(),
                                b.stride(1), x.data_ptr<c10::BFloat16>(),
                                bias.has_value() ? bias->data_ptr<c10::BFloat16>() : nullptr,
                                y.data_ptr<c10::BFloat16>());
    return y;
  }
  if (cpu_bf16 && a.size(1) % 2 == 0 && a.size(1) > 0 && cpu::brgemm_bf16_usable()) {
    return cpu::brgemm_matmul_bf16(a, b, bias);
  }
  // addmm adds the bias before the one rounding to a low-precision result (as F.linear)
  return bias.has_value() ? at::addmm(*bias, a, b) : at::mm(a, b);
}

}  // namespace fastrnn
