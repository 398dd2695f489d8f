// The layer-normalised LSTM's point-wise formulas (Ba, Kiros & Hinton 2016, haste's
// formulation), around the row statistics the caller computes:
//   a = x + gamma_hh * LN(h_prev W_hh^T);  i, f, g, o and c from a as in the LSTM
//   (lstm_gates, lstm_cell_backward in lstm.h);  h = o tanh(n), n = gamma_c * LN(c) + beta_c.
// V is a scalar or an at::vec::Vectorized lane group (see common.h).
#pragma once

#include "common.h"
#include "lstm.h"

namespace fastrnn {
namespace cells {
inline namespace FASTRNN_CPU_LEVEL {  // see common.h

// Backward through h = o tanh(n): dh reaches h; gives o's pre-activation gradient and n's.
template <class V>
FASTRNN_HD void layernorm_lstm_output_backward(V o, V tanh_n, V dh, V& da_o, V& dn) {
  const V one(1);
  da_o = dh * tanh_n * o * (one - o);
  dn = dh * o * (one - tanh_n * tanh_n);
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
