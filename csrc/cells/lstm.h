// LSTM cell, point-wise part of one time step (torch.nn gate order i, f, g, o).
//
// The caller has already summed, per gate, the input projection, the recurrent product and
// both biases into a pre-activation `a_*`. Forward keeps the post-activation gates; backward
// uses them (sigma' = y(1-y), tanh' = 1-y^2) and recomputes tanh(c) instead of storing it.
//
// V is float/double on a CUDA thread or an at::vec::Vectorized lane group on the CPU.
#pragma once

#include "common.h"
#include "zoneout.h"

namespace fastrnn {
namespace cells {
inline namespace FASTRNN_CPU_LEVEL {  // see common.h

// The gates and the new cell state from the pre-activations (the layer-normalised LSTM
// shares this part: cells/layernorm_lstm.h).
template <class V>
FASTRNN_HD void lstm_gates(V a_i, V a_f, V a_g, V a_o, V c_prev,
                           V& i, V& f, V& g, V& o, V& c) {
  i = sigmoid(a_i);
  f = sigmoid(a_f);
  g = tanh_act(a_g);
  o = sigmoid(a_o);
  c = f * c_prev + i * g;
}

template <class V>
FASTRNN_HD void lstm_forward(V a_i, V a_f, V a_g, V a_o, V c_prev,
                             V& i, V& f, V& g, V& o, V& c, V& h) {
  lstm_gates(a_i, a_f, a_g, a_o, c_prev, i, f, g, o, c);
  h = o * tanh_act(c);
}

// Backward through c = f c_prev + i g, dc the whole gradient reaching c.
template <class V>
FASTRNN_HD void lstm_cell_backward(V i, V f, V g, V c_prev, V dc,
                                   V& da_i, V& da_f, V& da_g, V& dc_prev) {
  const V one(1);
  da_i = dc * g * i * (one - i);
  da_f = dc * c_prev * f * (one - f);
  da_g = dc * i * (one - g * g);
  dc_prev = dc * f;
}

// dh: gradient reaching this step's output h (from the layer above and from step t+1);
// dc_next: gradient reaching the new cell state c from step t+1.
template <class V>
FASTRNN_HD void lstm_backward(V i, V f, V g, V o, V c_prev, V c, V dh, V dc_next,
                              V& da_i, V& da_f, V& da_g, V& da_o, V& dc_prev) {
  const V one(1);
  const V tanh_c = tanh_act(c);
  const V dc = dc_next + dh * o * (one - tanh_c * tanh_c);
  lstm_cell_backward(i, f, g, c_prev, dc, da_i, da_f, da_g, dc_prev);
  da_o = dh * tanh_c * o * (one - o);
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
