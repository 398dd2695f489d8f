// The operators' drivers, one per operator and device-independent (lstm.cpp, gru.cpp,
// rnn.cpp): each checks its arguments, allocates every buffer, places the initial state in
// its history slot, hands one argument struct (params.h) to its device's back-end
// (backend.h), and returns the final states and what backward needs. Registered for every
// device with a back-end (ops.cpp for the CPU, cuda/backend.cpp for CUDA).
#pragma once

#include <ATen/ATen.h>

#include <cstring>
#include <tuple>

#include "backend.h"
#include "cpu/buffer_cache.h"
#include "params.h"

namespace fastrnn {

using at::Tensor;
using c10::optional;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& input_gates, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
    const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
    const optional<Tensor>& lengths, bool reverse, bool save_for_backward,
    const optional<Tensor>& zoneout_h, const optional<Tensor>& zoneout_c, double zoneout,
    bool return_cells);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_h_n,
    const optional<Tensor>& grad_c_n, const Tensor& w_hh, const optional<Tensor>& w_hr,
    const Tensor& hs, const Tensor& cs, const Tensor& gates, const Tensor& proj_in,
    const optional<Tensor>& lengths, bool reverse, const optional<Tensor>& zoneout_h,
    const optional<Tensor>& zoneout_c, double zoneout, const optional<Tensor>& grad_cells);

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(
    const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh,
    const optional<Tensor>& b_hh, const optional<Tensor>& lengths, bool reverse,
    bool reset_after, bool save_for_backward, const optional<Tensor>& zoneout_h,
    double zoneout);
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_h_n, const Tensor& w_hh,
    const Tensor& hs, const Tensor& gates, const Tensor& extra,
    const optional<Tensor>& lengths, bool reverse, bool reset_after,
    const optional<Tensor>& zoneout_h, double zoneout);

std::tuple<Tensor, Tensor, Tensor> rnn_forward(
    const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh,
    const optional<Tensor>& b_hh, const optional<Tensor>& lengths, bool reverse,
    c10::string_view nonlinearity, bool save_for_backward, const optional<Tensor>& zoneout_h,
    double zoneout);
std::tuple<Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const optional<Tensor>& grad_output, const optional<Tensor>& grad_h_n, const Tensor& w_hh,
    const Tensor& hs, const optional<Tensor>& lengths, bool reverse,
    c10::string_view nonlinearity, const optional<Tensor>& zoneout_h, double zoneout);

std::tuple<Tensor, Tensor, Tensor> stack_forward(
    c10::string_view mode, const Tensor& x, const Tensor& h0, const optional<Tensor>& c0,
    const c10::List<optional<Tensor>>& weights, int64_t num_layers, bool bidirectional,
    const optional<Tensor>& lengths, bool reset_after);

Tensor linear(const Tensor& input, const Tensor& weight, const optional<Tensor>& bias);
std::tuple<Tensor, Tensor> linear_weight_grads(const Tensor& input, const Tensor& grad_output,
                                               bool with_bias);

// ---- helpers shared by the drivers

inline const void* data_or_null(const optional<Tensor>& t) {
  return t.has_value() ? t->data_ptr() : nullptr;
}

// The initial state into `slot` of a state history. A contiguous CPU state of the
// history's dtype is one memcpy: select and copy_ through the dispatcher cost 1.5 us, a
// twentieth of a one-step call at H=16.
inline void place_state(const Tensor& history, int64_t slot, const Tensor& state) {
  if (history.is_cpu() && state.is_cpu() && state.is_contiguous() &&
      state.scalar_type() == history.scalar_type() &&
      state.numel() * history.size(0) == history.numel()) {
    const size_t bytes = state.nbytes();
    if (bytes > 0) {
      std::memcpy(static_cast<char*>(history.data_ptr()) + slot * bytes, state.data_ptr(), bytes);
    }
    return;
  }
  history[slot].copy_(state);
}

// The final state in `slot` of a state history. Saved for backward, the history must not
// change under the caller's hands: a copy. In inference the two-slot history is the
// operator's own, and the state a view of it (no copy in a generation step's call).
inline Tensor final_state(const Tensor& history, int64_t slot, bool saved_for_backward) {
  return saved_for_backward ? history[slot].clone() : history[slot];
}

// The gradient reaching the output, as the backward walk reads it: contiguous [T, B, P]
// with `step` = B * P elements between time steps; or, when one gradient reaches every
// step (expanded along time, as `output.sum()` or `.mean()` hand back), that [B, P] step
// alone with `step` = 0, rather than a T-fold copy (32 MB for T=256, B=64, P=512).
struct OutputGrad {
  optional<Tensor> tensor;  // none when autograd passed no gradient
  int64_t step = 0;

  explicit OutputGrad(const optional<Tensor>& grad) {
    if (!grad.has_value()) return;
    if (grad->size(0) > 1 && grad->stride(0) == 0) {
      tensor = contiguous_buffer((*grad)[0]);
    } else {
      tensor = contiguous_buffer(*grad);
      step = grad->size(1) * grad->size(2);
    }
  }
  const void* data() const { return tensor.has_value() ? tensor->data_ptr() : nullptr; }
};

// The gradient reaching a final state, as a fresh contiguous buffer in the accumulation
// type (the backward walk accumulates into it); zeros when autograd passed none.
inline Tensor state_grad(const optional<Tensor>& grad, at::IntArrayRef shape,
                         const at::TensorOptions& acc_options) {
  if (!grad.has_value()) return at::zeros(shape, acc_options);
  return grad->to(acc_options.dtype().toScalarType(), /*non_blocking=*/false, /*copy=*/true,
                  at::MemoryFormat::Contiguous);
}

inline SequenceArgs sequence_args(int64_t T, int64_t B, int64_t H, int64_t P, bool reverse,
                                  bool keep_all, const optional<Tensor>& lengths,
                                  at::ScalarType dtype) {
  SequenceArgs args{T, B, H, P, reverse, keep_all,
                    lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr, dtype};
  if (lengths.has_value() && on_cpu_backend(lengths->device())) {
    const int64_t* l = args.lengths;
    bool longest_first = true;
    for (int64_t b = 1; b < B && longest_first; ++b) longest_first = l[b] <= l[b - 1];
    if (longest_first) args.sorted_host_lengths = l;
  }
  return args;
}

}  // namespace fastrnn
