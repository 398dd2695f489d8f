// Weight gradients after the time loop: a few large GEMMs over all steps at once, the same
// code on every device (product() in matmul.h: brgemm on the CPU in float32, at::mm
// elsewhere). Each is computed transposed, (x^T dpre)^T, so that both operands run along
// their rows. `hs` is the saved state history [T+1, B, width]; the states entering the
// steps are one contiguous slice of it (see StateHistory).
#pragma once

#include <ATen/ATen.h>

#include "matmul.h"

namespace fastrnn {

inline at::Tensor states_entering_steps(const at::Tensor& hs, bool reverse) {
  const int64_t T = hs.size(0) - 1;
  return hs.narrow(0, reverse ? 1 : 0, T).reshape({T * hs.size(1), hs.size(2)});
}

// d(W_hh) = sum_t dpre_t^T h_{t-1} and d(b_hh) = sum_t dpre_t, for the recurrent
// pre-activations dpre [T, B, G].
inline std::tuple<at::Tensor, at::Tensor> recurrent_weight_grads(const at::Tensor& dpre,
                                                                 const at::Tensor& hs,
                                                                 bool reverse) {
  const at::Tensor flat = dpre.reshape({-1, dpre.size(2)});
  // as (h^T dpre)^T: both operands then run along their rows, as brgemm reads them
  return {product(states_entering_steps(hs, reverse).t(), flat).t().contiguous(), flat.sum(0)};
}

// The reset-before GRU: W_hr and W_hz multiply h, W_hn multiplies the saved r * h.
inline std::tuple<at::Tensor, at::Tensor> reset_before_weight_grads(const at::Tensor& dpre,
                                                                    const at::Tensor& hs,
                                                                    const at::Tensor& reset_h,
                                                                    bool reverse) {
  const int64_t H = hs.size(2);
  const at::Tensor flat = dpre.reshape({-1, 3 * H});
  at::Tensor gates = product(states_entering_steps(hs, reverse).t(), flat.narrow(1, 0, 2 * H));
  at::Tensor candidate = product(reset_h.reshape({-1, H}).t(), flat.narrow(1, 2 * H, H));
  return {at::cat({gates.t(), candidate.t()}), flat.sum(0)};
}

// The LSTM projection h = r W_hr^T: d(W_hr) = sum_t dh_t^T r_t.
inline at::Tensor projection_weight_grad(const at::Tensor& grad_proj_out,
                                         const at::Tensor& proj_in) {
  return product(proj_in.reshape({-1, proj_in.size(2)}).t(),
                grad_proj_out.reshape({-1, grad_proj_out.size(2)}))
      .t()
      .contiguous();
}

}  // namespace fastrnn
