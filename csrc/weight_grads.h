// Weight gradients after the time loop: a few large GEMMs over all steps at once, the same
// code on every device (product() in matmul.h: brgemm on the CPU in float32, at::mm
// elsewhere). Each is computed transposed, (x^T dpre)^T, so that both operands run along
// their rows. `hs` is the saved state history [T+1, B, width]; the states entering the
// steps are one contiguous slice of it (see StateHistory).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "cpu/buffer_cache.h"
#include "matmul.h"

namespace fastrnn {

inline at::Tensor states_entering_steps(const at::Tensor& hs, bool reverse) {
  const int64_t T = hs.size(0) - 1;
  return hs.narrow(0, reverse ? 1 : 0, T).reshape({T * hs.size(1), hs.size(2)});
}

// x^T [width, rows] with a row of ones below it, in one new buffer: times dpre [rows, G] it
// gives the weight gradient and, in its last row, the bias gradient (the column sums of
// dpre), so the bias no longer costs a pass of its own over dpre (134 MB for the
// benchmark's LSTM: 6 ms of a 420 ms training step here).
inline at::Tensor transposed_with_ones(const at::Tensor& x) {
  const int64_t rows = x.size(0), width = x.size(1);
  at::Tensor lhs = new_buffer({width + 1, rows}, x.options());
  if (on_cpu_backend(x.device()) && x.stride(1) == 1 && rows > 0 && width > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND(
        at::kBFloat16, x.scalar_type(), "fastrnn::transposed_with_ones", [&] {
          cpu::transpose(x.data_ptr<scalar_t>(), rows, width, x.stride(0),
                         lhs.data_ptr<scalar_t>());
        });
  } else {
    lhs.narrow(0, 0, width).copy_(x.t());
  }
  lhs.select(0, width).fill_(1);
  return lhs;
}

// Whether brgemm multiplies [x^T; 1] straight from x, transposing tile by tile into each
// thread's scratch (cpu::ProductRows): wherever product() would send the copy to brgemm.
inline bool transposed_in_tiles(const at::Tensor& x) {
  if (!on_cpu_backend(x.device()) || x.stride(1) != 1 || x.size(0) == 0 || x.size(1) == 0) {
    return false;
  }
  if (x.scalar_type() == at::kFloat) {
    return cpu::kHaveBrgemm && x.size(1) + 1 >= cpu::kBrgemmMinProductRows;
  }
  return x.scalar_type() == at::kBFloat16 && x.size(0) % 2 == 0 && cpu::brgemm_bf16_usable();
}

// transposed_with_ones(x), or an undefined tensor where the product transposes in tiles
inline at::Tensor ones_unless_tiled(const at::Tensor& x) {
  return transposed_in_tiles(x) ? at::Tensor() : transposed_with_ones(x);
}

// (d(W) [G, width], d(b) [G]) = (sum_t dpre_t^T x_t, sum_t dpre_t) for dpre [rows, G] and
// x [rows, width], x_ones = ones_unless_tiled(x).
inline std::tuple<at::Tensor, at::Tensor> grads_from_transposed(const at::Tensor& x,
                                                                const at::Tensor& x_ones,
                                                                const at::Tensor& dpre) {
  const int64_t width = x.size(1);
  // as ([x^T; 1] dpre)^T: both operands then run along their rows, as brgemm reads them
  at::Tensor both;
  if (x_ones.defined()) {
    both = product(x_ones, dpre);
  } else if (x.scalar_type() == at::kFloat) {
    both = cpu::brgemm_matmul(cpu::ProductRows<float>::transposed_with_ones_of(x), width + 1,
                              x.size(0), dpre, c10::nullopt);
  } else {
    both = cpu::brgemm_matmul_bf16(cpu::ProductRows<c10::BFloat16>::transposed_with_ones_of(x),
                                   width + 1, x.size(0), dpre, c10::nullopt);
  }
  return {contiguous_buffer(both.narrow(0, 0, width).t()), both.select(0, width).clone()};
}

// Whether the weight gradients of x go through the BLAS as dpre^T x, the bias's as column
// sums of dpre: in float64 (no brgemm: the transposes only cost), and in float32 on a CPU
// without AVX-512, where oneDNN's brgemm has no wider vectors than MKL's AVX2 path and
// MKL's own blocking of this long product was faster than brgemm on [x^T; 1] with its
// transposes. Measured on the AMD AVX2 VM, bias included, 3200 x 100 -> 400: 4.06 vs 3.31
// ms; 16384 x 512 -> 2048: 299 vs 247 ms; 16384 x 128 -> 2048: 79 vs 76.
inline bool weight_grads_through_blas(const at::Tensor& x) {
  return on_cpu_backend(x.device()) &&
         (x.scalar_type() == at::kDouble ||
          (x.scalar_type() == at::kFloat && !cpu::simd_level().avx512()));
}

inline std::tuple<at::Tensor, at::Tensor> weight_and_bias_grads(const at::Tensor& x,
                                                                const at::Tensor& dpre,
                                                                bool with_bias = true) {
  if (weight_grads_through_blas(x)) {
    return {at::mm(dpre.t(), x), with_bias ? dpre.sum(0) : at::Tensor()};
  }
  return grads_from_transposed(x, ones_unless_tiled(x), dpre);
}

// d(W_hh) = sum_t dpre_t^T h_{t-1} and d(b_hh) = sum_t dpre_t, for the recurrent
// pre-activations dpre [T, B, G].
inline std::tuple<at::Tensor, at::Tensor> recurrent_weight_grads(const at::Tensor& dpre,
                                                                 const at::Tensor& hs,
                                                                 bool reverse) {
  return weight_and_bias_grads(states_entering_steps(hs, reverse),
                               dpre.reshape({-1, dpre.size(2)}));
}

// A GRU's W_hh and b_hh gradients from two products: its r and z rows' (dpre_rz [rows, 2H]
// with x_rz) and its n rows' (dpre_n [rows, H] with x_n). Through the BLAS both are written
// into the rows of one gradient (the concatenation of two cost about 25 us a call at
// H=128 under the profiler on the AMD VM, against 609 us for a one-step GRU's forward and
// backward); with brgemm a shared x is transposed once.
inline std::tuple<at::Tensor, at::Tensor> gru_recurrent_grads(const at::Tensor& x_rz,
                                                              const at::Tensor& dpre_rz,
                                                              const at::Tensor& x_n,
                                                              const at::Tensor& dpre_n) {
  const int64_t H = x_n.size(1);
  if (weight_grads_through_blas(x_rz)) {
    at::Tensor w = at::empty({3 * H, H}, dpre_rz.options());
    at::Tensor b = at::empty({3 * H}, dpre_rz.options());
    at::Tensor w_rz = w.narrow(0, 0, 2 * H), w_n = w.narrow(0, 2 * H, H);
    at::Tensor b_rz = b.narrow(0, 0, 2 * H), b_n = b.narrow(0, 2 * H, H);
    at::mm_out(w_rz, dpre_rz.t(), x_rz);
    at::mm_out(w_n, dpre_n.t(), x_n);
    at::sum_out(b_rz, dpre_rz, 0);
    at::sum_out(b_n, dpre_n, 0);
    return {w, b};
  }
  const at::Tensor rz_ones = ones_unless_tiled(x_rz);
  const at::Tensor n_ones = x_n.is_same(x_rz) ? rz_ones : ones_unless_tiled(x_n);
  auto [w_gates, b_gates] = grads_from_transposed(x_rz, rz_ones, dpre_rz);
  auto [w_candidate, b_candidate] = grads_from_transposed(x_n, n_ones, dpre_n);
  return {at::cat({w_gates, w_candidate}), at::cat({b_gates, b_candidate})};
}

// The reset-after GRU: W_hh's r and z rows get the input gates' gradient, its n rows that
// of W_hn h + b_hn (grad_hh_n [T, B, H]); both multiply h.
inline std::tuple<at::Tensor, at::Tensor> reset_after_weight_grads(const at::Tensor& grad_gates,
                                                                   const at::Tensor& grad_hh_n,
                                                                   const at::Tensor& hs,
                                                                   bool reverse) {
  const int64_t H = hs.size(2);
  const at::Tensor h = states_entering_steps(hs, reverse);
  return gru_recurrent_grads(h, grad_gates.reshape({-1, 3 * H}).narrow(1, 0, 2 * H), h,
                             grad_hh_n.reshape({-1, H}));
}

// The reset-before GRU: W_hr and W_hz multiply h, W_hn multiplies the saved r * h.
inline std::tuple<at::Tensor, at::Tensor> reset_before_weight_grads(const at::Tensor& dpre,
                                                                    const at::Tensor& hs,
                                                                    const at::Tensor& reset_h,
                                                                    bool reverse) {
  const int64_t H = hs.size(2);
  const at::Tensor flat = dpre.reshape({-1, 3 * H});
  return gru_recurrent_grads(states_entering_steps(hs, reverse), flat.narrow(1, 0, 2 * H),
                             reset_h.reshape({-1, H}), flat.narrow(1, 2 * H, H));
}

// The LSTM projection h = r W_hr^T: d(W_hr) = sum_t dh_t^T r_t.
inline at::Tensor projection_weight_grad(const at::Tensor& grad_proj_out,
                                         const at::Tensor& proj_in) {
  return contiguous_buffer(product(proj_in.reshape({-1, proj_in.size(2)}).t(),
                                   grad_proj_out.reshape({-1, grad_proj_out.size(2)}))
                               .t());
}

}  // namespace fastrnn
