// The layer-normalised LSTM's point-wise formulas (Ba, Kiros & Hinton 2016, haste's
// formulation), around the row statistics the caller computes:
//   a = x + gamma_hh * LN(h_prev W_hh^T);  i, f, g, o from a as in the LSTM;
//   c = f c_prev + i g;  h = o tanh(n), n = gamma_c * LN(c) + beta_c.
// V is a scalar or an at::vec::Vectorized lane group (see common.h).
#pragma once

#include "common.h"

namespace fastrnn {
namespace cells {
inline namespace FASTRNN_CPU_LEVEL {  // see common.h

// The gates and the new cell state from the pre-activations.
template <class V>
FASTRNN_HD void layernorm_lstm_gates(V a_i, V a_f, V a_g, V a_o, V c_prev,
                                     V& i, V& f, V& g, V& o, V& c) {
  i = sigmoid(a_i);
  f = sigmoid(a_f);
  g = tanh_act(a_g);
  o = sigmoid(a_o);
  c = f * c_prev + i * g;
}

// Backward through h = o tanh(n): dh reaches h; gives o's pre-activation gradient and n's.
template <class V>
FASTRNN_HD void layernorm_lstm_output_backward(V o, V tanh_n, V dh, V& da_o, V& dn) {
  const V one(1);
  da_o = dh * tanh_n * o * (one - o);
  dn = dh * o * (one - tanh_n * tanh_n);
}

// Backward through c = f c_prev + i g, dc the whole gradient reaching c.
template <class V>
FASTRNN_HD void layernorm_lstm_cell_backward(V i, V f, V g, V c_prev, V dc,
                                             V& da_i, V& da_f, V& da_g, V& dc_prev) {
  const V one(1);
  da_i = dc * g * i * (one - i);
  da_f = dc * c_prev * f * (one - f);
  da_g = dc * i * (one - g * g);
  dc_prev = dc * f;
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
