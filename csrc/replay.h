// Gradients that can be differentiated again (create_graph=True: gradient penalties,
// gradgradcheck, meta-learning), for the recurrent operators' autograd formulas.
//
// The fused backward kernels are first-order. Under create_graph=True the formulas instead
// replay the forward recurrence with differentiable ATen ops and take autograd's gradient of
// the replay, whose graph then carries any further derivative. The replay reads what the
// forward saved for the fused backward: its activations come from the saved post-activation
// gates (through SavedActivation, whose derivative is written in terms of the activation
// itself), so it needs no pre-activation values and in particular not the input gates,
// which the forward does not keep (T*B*G elements per layer). Their gradient reaches the
// graph that produced them through the autograd edge the forward records (edge_of).
//
// This path costs T small steps of ATen ops per layer and direction; only create_graph=True
// takes it.
#pragma once

#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/variable.h>

#include <string>

namespace fastrnn {
namespace replay {

using at::Tensor;
using c10::optional;
using torch::autograd::variable_list;

// The autograd edge through which a tensor's gradient flows, as a value the forward can keep
// in its context without keeping the tensor (None when it needs no gradient).
c10::IValue edge_of(const Tensor& tensor);

// Zoneout as the forward applied it (ops.cpp): masks of h and c [T, B, width] (undefined
// without them), else the keep probability p (0: none).
struct ZoneoutArgs {
  Tensor h, c;
  double p = 0;
};

// What a replay reads: the forward's inputs that it keeps (small ones, and the weights that
// the fused backward saves anyway) and the edge of the input gates.
struct Inputs {
  c10::IValue input_gates_edge;  // edge_of(input_gates)
  Tensor h0, c0;                 // c0: LSTM only
  Tensor w_hh, b_hh, w_hr;       // b_hh, w_hr: undefined when absent
  Tensor lengths;                // undefined: every sequence is T long
  bool reverse = false;
  ZoneoutArgs zoneout;
};

// The gradients the fused backward operator returns, as differentiable tensors:
// LSTM (input_gates, h0, c0, w_hh, b_hh, w_hr); GRU and RNN (input_gates, h0, w_hh, b_hh).
// `grads` are the incoming gradients of (output, h_n[, c_n[, cells]]), undefined where none
// came (cells: the LSTM's every-step cell states, return_cells).
// `gates`: the forward's saved post-activation gates (LSTM, GRU); `hs`: its saved states.
variable_list lstm(const Inputs& in, const Tensor& gates, const variable_list& grads);
variable_list gru(const Inputs& in, const Tensor& gates, bool reset_after,
                  const variable_list& grads);
variable_list rnn(const Inputs& in, const Tensor& hs, const std::string& nonlinearity,
                  const variable_list& grads);

}  // namespace replay
}  // namespace fastrnn
