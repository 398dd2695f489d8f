// GRU cell, point-wise part of one time step (torch.nn gate order r, z, n).
//
// Two forms of the candidate n:
//  * reset after the product (torch.nn, cuDNN):   n = tanh(x_n + r * (W_hn h + b_hn))
//  * reset before the product (Cho et al. 2014):  n = tanh(x_n + W_hn (r * h) + b_hn)
// Both blend the same way: h' = (1 - z) * n + z * h.
// The reset-before form needs the reset gate before its recurrent product, so its step is
// split in two point-wise phases around a second GEMM.
#pragma once

#include "common.h"
#include "zoneout.h"

namespace fastrnn {
namespace cells {
inline namespace FASTRNN_CPU_LEVEL {  // see common.h

template <class V>
FASTRNN_HD V gru_blend(V z, V n, V h_prev) {
  return n + z * (h_prev - n);
}

// ---- reset after the recurrent product (torch.nn) ----
// hh_n = W_hn h + b_hn (kept: backward needs it for the reset gate's gradient).
template <class V>
FASTRNN_HD void gru_forward(V a_r, V a_z, V x_n, V hh_n, V h_prev,
                            V& r, V& z, V& n, V& h) {
  r = sigmoid(a_r);
  z = sigmoid(a_z);
  n = tanh_act(x_n + r * hh_n);
  h = gru_blend(z, n, h_prev);
}

// Returns the gradients of the pre-activations: da_r, da_z, dx_n (for the input part of n),
// dhh_n (for W_hn h + b_hn) and the part of dh_prev that skips the recurrent GEMM.
template <class V>
FASTRNN_HD void gru_backward(V r, V z, V n, V hh_n, V h_prev, V dh,
                             V& da_r, V& da_z, V& dx_n, V& dhh_n, V& dh_prev_direct) {
  const V one(1);
  const V dz = dh * (h_prev - n);
  dx_n = dh * (one - z) * (one - n * n);
  dhh_n = dx_n * r;
  da_r = dx_n * hh_n * r * (one - r);
  da_z = dz * z * (one - z);
  dh_prev_direct = dh * z;
}

// ---- reset before the recurrent product (Cho et al.) ----
// Phase 1: gates and the reset state r * h that enters the second GEMM.
template <class V>
FASTRNN_HD void gru_cho_gates(V a_r, V a_z, V h_prev, V& r, V& z, V& reset_h) {
  r = sigmoid(a_r);
  z = sigmoid(a_z);
  reset_h = r * h_prev;
}

// Phase 2: a_n = x_n + W_hn (r * h) + b_hn.
template <class V>
FASTRNN_HD void gru_cho_candidate(V a_n, V z, V h_prev, V& n, V& h) {
  n = tanh_act(a_n);
  h = gru_blend(z, n, h_prev);
}

// Backward of phase 2: da_n, the update gate's output gradient dz (for phase 1) and the
// part of dh_prev that skips both GEMMs.
template <class V>
FASTRNN_HD void gru_cho_candidate_backward(V z, V n, V h_prev, V dh,
                                           V& da_n, V& dz, V& dh_prev_direct) {
  const V one(1);
  da_n = dh * (one - z) * (one - n * n);
  dz = dh * (h_prev - n);
  dh_prev_direct = dh * z;
}

// Backward of phase 1, given d(r * h) from the second GEMM.
template <class V>
FASTRNN_HD void gru_cho_gates_backward(V r, V z, V h_prev, V d_reset_h, V dz,
                                       V& da_r, V& da_z, V& dh_prev_from_reset) {
  const V one(1);
  da_r = d_reset_h * h_prev * r * (one - r);
  da_z = dz * z * (one - z);
  dh_prev_from_reset = d_reset_h * r;
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
