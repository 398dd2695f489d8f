// Every fastrnn operator's schema, declared once. The drivers (lstm.cpp, gru.cpp, rnn.cpp)
// implement them for every device, registered with TORCH_LIBRARY_IMPL by each device's
// back-end (cpu/backend.cpp, cuda/backend.cpp); fastrnn/_ops.py adds the fake kernels,
// autograd.cpp the autograd formulas.
//
// One operator call runs one layer in one direction over a whole padded sequence:
//   input_gates  [T, B, G*H]  x W_ih^T + b_ih for every step (one GEMM, done by the caller)
//   h0 / c0      [B, P] / [B, H]
//   lengths      [B] int64 or None: sequence b takes part in steps t < lengths[b]
//   reverse      walk t = T-1 .. 0 (the backward direction of a bidirectional layer)
//   save_for_backward  keep what backward needs (returned as the trailing tensors);
//                otherwise those come back empty
//   zoneout_h/c  [T, B, P] / [T, B, H] masks in the input's dtype (1: the unit keeps its
//                previous state at that step), drawn for training; without them zoneout
//                is the keep probability applied as its expected value (evaluation), 0
//                for none. The backward operators take the same.
//   return_cells (LSTM) every step's cell state as an output [T, B, H] (zeros where a
//                sequence has ended), differentiable: its gradient is lstm_backward's
//                grad_cells
#include <torch/library.h>

TORCH_LIBRARY(fastrnn, m) {
  // input [M, K] @ weight^T + bias: the input projection of all time steps at once
  m.def("linear(Tensor input, Tensor weight, Tensor? bias) -> Tensor");
  // its weight gradient grad_output^T @ input [N, K] and, with_bias, its bias gradient
  // (column sums of grad_output [M, N]) from the same product; otherwise an empty tensor
  m.def(
      "linear_weight_grads(Tensor input, Tensor grad_output, bool with_bias) -> "
      "(Tensor grad_weight, Tensor grad_bias)");
  m.def(
      "lstm_forward(Tensor input_gates, Tensor h0, Tensor c0, Tensor w_hh, Tensor? b_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse, bool save_for_backward, "
      "Tensor? zoneout_h=None, Tensor? zoneout_c=None, float zoneout=0., "
      "bool return_cells=False) -> (Tensor output, Tensor h_n, Tensor c_n, Tensor hs, "
      "Tensor cs, Tensor gates, Tensor proj_in, Tensor cells)");
  m.def(
      "lstm_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, Tensor w_hh, "
      "Tensor? w_hr, Tensor hs, Tensor cs, Tensor gates, Tensor proj_in, Tensor? lengths, "
      "bool reverse, Tensor? zoneout_h=None, Tensor? zoneout_c=None, float zoneout=0., "
      "Tensor? grad_cells=None) -> (Tensor grad_input_gates, Tensor grad_h0, Tensor grad_c0, "
      "Tensor grad_w_hh, Tensor grad_b_hh, Tensor grad_w_hr)");
  m.def(
      "gru_forward(Tensor input_gates, Tensor h0, Tensor w_hh, Tensor? b_hh, Tensor? lengths, "
      "bool reverse, bool reset_after, bool save_for_backward, Tensor? zoneout_h=None, "
      "float zoneout=0.) -> (Tensor output, Tensor h_n, Tensor hs, Tensor gates, Tensor extra)");
  m.def(
      "gru_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor w_hh, Tensor hs, "
      "Tensor gates, Tensor extra, Tensor? lengths, bool reverse, bool reset_after, "
      "Tensor? zoneout_h=None, float zoneout=0.) -> "
      "(Tensor grad_input_gates, Tensor grad_h0, Tensor grad_w_hh, Tensor grad_b_hh)");
  m.def(
      "rnn_forward(Tensor input_gates, Tensor h0, Tensor w_hh, Tensor? b_hh, Tensor? lengths, "
      "bool reverse, str nonlinearity, bool save_for_backward, Tensor? zoneout_h=None, "
      "float zoneout=0.) -> (Tensor output, Tensor h_n, Tensor hs)");
  // Inference (nothing saved for backward) through a whole stack: per layer and direction
  // the input projection and the walk above. weights: 5 per layer and direction, layer-major
  // (w_ih, w_hh, b_ih, b_hh, w_hr; None where absent); mode LSTM, GRU, RNN_TANH, RNN_RELU;
  // c_n is empty but for an LSTM.
  m.def(
      "stack_forward(str mode, Tensor x, Tensor h0, Tensor? c0, Tensor?[] weights, "
      "int num_layers, bool bidirectional, Tensor? lengths, bool reset_after) -> "
      "(Tensor output, Tensor h_n, Tensor c_n)");
  m.def(
      "rnn_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor w_hh, Tensor hs, "
      "Tensor? lengths, bool reverse, str nonlinearity, Tensor? zoneout_h=None, "
      "float zoneout=0.) -> "
      "(Tensor grad_input_gates, Tensor grad_h0, Tensor grad_w_hh, Tensor grad_b_hh)");
}
