// Argument checks shared by every device's operators, run before any kernel. The Python
// layers check first and name the user's arguments; these guard direct operator calls.
#pragma once

#include <ATen/ATen.h>

#include "cells/common.h"
#include "cpu/buffer_cache.h"

namespace fastrnn {

// lengths [B] int64, on the data's device, each in [0, T].
inline void check_lengths(const char* op, const c10::optional<at::Tensor>& lengths, int64_t B,
                          int64_t T, const at::Device& device) {
  if (!lengths.has_value()) return;
  TORCH_CHECK(lengths->dim() == 1 && lengths->size(0) == B, op, ": lengths must have shape [",
              B, "], got ", lengths->sizes());
  TORCH_CHECK(lengths->scalar_type() == at::kLong, op, ": lengths must be int64, got ",
              lengths->scalar_type());
  TORCH_CHECK(lengths->device() == device, op, ": lengths is on ", lengths->device(),
              " but the data is on ", device);
  if (lengths->is_cpu() && B > 0) {  // on a GPU this would sync; the layers check there
    const auto lo = lengths->min().item<int64_t>(), hi = lengths->max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi <= T, op, ": lengths must lie in [0, T=", T, "], got values in [",
                lo, ", ", hi, "]");
  }
}

// input_gates [T, B, G*H], h0 [B, P], c0 [B, H] (LSTM), w_hh [G*H, P], b_hh [G*H],
// w_hr [P, H] (LSTM projection; without it P == H), lengths [B] int64 with 0 <= l <= T.
inline void check_layer_args(const char* op, int64_t gates_per_unit, const at::Tensor& input_gates,
                             const at::Tensor& h0, const at::Tensor* c0, const at::Tensor& w_hh,
                             const c10::optional<at::Tensor>& b_hh,
                             const c10::optional<at::Tensor>& w_hr,
                             const c10::optional<at::Tensor>& lengths) {
  TORCH_CHECK(input_gates.dim() == 3, op, ": input_gates must be 3-D [T, B, ", gates_per_unit,
              "*H], got shape ", input_gates.sizes());
  if (w_hr.has_value()) {  // before reading its size: a 0-d w_hr has none
    TORCH_CHECK(w_hr->dim() == 2 && w_hr->size(0) >= 1, op,
                ": w_hr must be 2-D [P, H] with P >= 1, got shape ", w_hr->sizes());
  }
  TORCH_CHECK(input_gates.size(2) % gates_per_unit == 0 && input_gates.size(2) > 0, op,
              ": input_gates.size(2) must be a positive multiple of ", gates_per_unit,
              ", got ", input_gates.size(2));
  const int64_t T = input_gates.size(0), B = input_gates.size(1);
  const int64_t H = input_gates.size(2) / gates_per_unit;
  const int64_t P = w_hr.has_value() ? w_hr->size(0) : H;
  TORCH_CHECK(input_gates.is_floating_point(), op, ": input_gates must be floating point, got ",
              input_gates.scalar_type());
  auto same = [&](const char* name, const at::Tensor& t, at::IntArrayRef shape) {
    TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
                t.sizes());
    TORCH_CHECK(t.scalar_type() == input_gates.scalar_type(), op, ": ", name, " has dtype ",
                t.scalar_type(), " but input_gates has ", input_gates.scalar_type());
    TORCH_CHECK(t.device() == input_gates.device(), op, ": ", name, " is on ", t.device(),
                " but input_gates is on ", input_gates.device());
  };
  if (w_hr.has_value()) same("w_hr", *w_hr, {P, H});
  same("h0", h0, {B, P});
  if (c0 != nullptr) same("c0", *c0, {B, H});
  same("w_hh", w_hh, {gates_per_unit * H, P});
  if (b_hh.has_value()) same("b_hh", *b_hh, {gates_per_unit * H});
  check_lengths(op, lengths, B, T, input_gates.device());
}

// Gates, the LSTM cell state and state gradients are kept in float32 for half and
// bfloat16 (CUDA); float32 and float64 keep their own type.
inline at::ScalarType accumulation_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// A saved tensor handed back to a backward operator: the shape the forward gave it, the
// dtype (`like`'s, or its accumulation type) and device. A forward run with save_for_backward=false
// returns 1-D empties, which this rejects.
inline void check_saved(const char* op, const char* name, const at::Tensor& t,
                        at::IntArrayRef shape, const at::Tensor& like, bool accumulation) {
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must be the tensor of shape ", shape,
              " saved by the forward operator with save_for_backward=True, got shape ", t.sizes());
  const auto dtype = accumulation ? accumulation_dtype(like.scalar_type()) : like.scalar_type();
  TORCH_CHECK(t.scalar_type() == dtype && t.device() == like.device(), op, ": ", name,
              " must be ", dtype, " on ", like.device(), ", got ", t.scalar_type(), " on ",
              t.device());
}

// An incoming gradient, when present, has its output's shape.
inline void check_grad(const char* op, const char* name, const c10::optional<at::Tensor>& grad,
                       at::IntArrayRef shape, const at::Tensor& like) {
  if (!grad.has_value()) return;
  TORCH_CHECK(grad->sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
              grad->sizes());
  TORCH_CHECK(grad->scalar_type() == like.scalar_type() && grad->device() == like.device(), op,
              ": ", name, " must be ", like.scalar_type(), " on ", like.device(),
              " like w_hh, got ", grad->scalar_type(), " on ", grad->device());
}

inline int64_t saved_steps(const char* op, const at::Tensor& hs) {
  TORCH_CHECK(hs.dim() == 3 && hs.size(0) >= 1, op, ": hs must be the [T+1, B, P] tensor "
              "saved by the forward operator with save_for_backward=True, got shape ", hs.sizes());
  return hs.size(0) - 1;
}

// The recurrent weight handed to a backward operator: 2-D, floating point.
inline void check_recurrent_weight(const char* op, const at::Tensor& w_hh) {
  TORCH_CHECK(w_hh.dim() == 2, op, ": w_hh must be 2-D, got shape ", w_hh.sizes());
  TORCH_CHECK(w_hh.is_floating_point(), op, ": w_hh must be floating point, got ",
              w_hh.scalar_type());
}

// A weight's dtype and device, named, against w_hh's.
inline void check_like(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& w_hh) {
  TORCH_CHECK(t.scalar_type() == w_hh.scalar_type() && t.device() == w_hh.device(), op, ": ",
              name, " must be ", w_hh.scalar_type(), " on ", w_hh.device(), " like w_hh, got ",
              t.scalar_type(), " on ", t.device());
}

// Optional tensors made contiguous: the kernels read every argument through its data pointer.
inline c10::optional<at::Tensor> contiguous_or_none(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? c10::optional<at::Tensor>(contiguous_buffer(*t)) : c10::nullopt;
}

// The arguments every backward operator shares, checked against one another before any
// kernel runs: the saved state history hs [T+1, B, P], w_hh [G*H, P] (H = P unless w_hr
// [P, H] projects), the saved gates [T, B, G*H] in the accumulation type (none for the
// Elman RNN), the incoming gradients and lengths.
inline void check_backward_args(const char* op, int64_t gates_per_unit,
                                const c10::optional<at::Tensor>& lengths,
                                const at::Tensor& w_hh, const at::Tensor& hs,
                                const at::Tensor* gates,
                                const c10::optional<at::Tensor>& grad_output,
                                const c10::optional<at::Tensor>& grad_h_n,
                                const c10::optional<at::Tensor>& w_hr = c10::nullopt) {
  const int64_t T = saved_steps(op, hs), B = hs.size(1), P = hs.size(2);
  check_recurrent_weight(op, w_hh);
  if (w_hr.has_value()) {
    TORCH_CHECK(w_hr->dim() == 2 && P >= 1 && w_hr->size(0) == P, op, ": w_hr must be [", P,
                ", H] with P >= 1, got ", w_hr->sizes());
    check_like(op, "w_hr", *w_hr, w_hh);
  }
  const int64_t H = w_hr.has_value() ? w_hr->size(1) : P;
  TORCH_CHECK(w_hh.sizes() == at::IntArrayRef({gates_per_unit * H, P}), op, ": w_hh must be [",
              gates_per_unit * H, ", ", P, "], got ", w_hh.sizes());
  check_saved(op, "hs", hs, {T + 1, B, P}, w_hh, false);
  if (gates != nullptr) check_saved(op, "gates", *gates, {T, B, gates_per_unit * H}, w_hh, true);
  check_grad(op, "grad_output", grad_output, {T, B, P}, w_hh);
  check_grad(op, "grad_h_n", grad_h_n, {B, P}, w_hh);
  check_lengths(op, lengths, B, T, w_hh.device());
}

// What only the LSTM's backward takes: the cell-state history, the projection's input and
// the gradient of c_n. Run before check_backward_args, so that a projected history handed
// back without its w_hr gets a message that says so.
inline void check_lstm_backward_extras(const at::Tensor& w_hh,
                                       const c10::optional<at::Tensor>& w_hr,
                                       const at::Tensor& hs, const at::Tensor& cs,
                                       const at::Tensor& proj_in,
                                       const c10::optional<at::Tensor>& grad_c_n) {
  const char* op = "fastrnn::lstm_backward";
  const int64_t T = saved_steps(op, hs), B = hs.size(1), P = hs.size(2);
  check_recurrent_weight(op, w_hh);
  TORCH_CHECK(w_hh.size(0) % kLstmGates == 0 && w_hh.size(0) > 0, op,
              ": w_hh must be [4H, P], got ", w_hh.sizes());
  const int64_t H = w_hh.size(0) / kLstmGates;
  if (!w_hr.has_value()) {
    TORCH_CHECK(P == H, op, ": without w_hr the saved hs must be [T+1, B, H=", H,
                "] (a projected forward needs its w_hr), got shape ", hs.sizes());
  } else {
    check_saved(op, "proj_in", proj_in, {T, B, H}, w_hh, false);
  }
  check_saved(op, "cs", cs, {T + 1, B, H}, w_hh, true);
  check_grad(op, "grad_c_n", grad_c_n, {B, H}, w_hh);
}

// Zoneout's arguments (ops.cpp): the keep probability in [0, 1), and the mask `name`, when
// given, [T, B, width] in `like`'s dtype and on its device.
inline void check_zoneout(const char* op, double p, const c10::optional<at::Tensor>& mask,
                          const char* name, at::IntArrayRef shape, const at::Tensor& like) {
  TORCH_CHECK(p >= 0 && p < 1, op, ": zoneout must lie in [0, 1), got ", p);
  if (!mask.has_value()) return;
  TORCH_CHECK(mask->sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
              mask->sizes());
  TORCH_CHECK(mask->scalar_type() == like.scalar_type() && mask->device() == like.device(), op,
              ": ", name, " must be ", like.scalar_type(), " on ", like.device(), ", got ",
              mask->scalar_type(), " on ", mask->device());
}

// An LSTM's zoneout: masks of h [T, B, P] and c [T, B, H], both or neither.
inline void check_lstm_zoneout(const char* op, const c10::optional<at::Tensor>& zoneout_h,
                               const c10::optional<at::Tensor>& zoneout_c, double p, int64_t T,
                               int64_t B, int64_t P, int64_t H, const at::Tensor& like) {
  TORCH_CHECK(zoneout_h.has_value() == zoneout_c.has_value(), op,
              ": zoneout_h and zoneout_c are given together or not at all");
  check_zoneout(op, p, zoneout_h, "zoneout_h", {T, B, P}, like);
  check_zoneout(op, p, zoneout_c, "zoneout_c", {T, B, H}, like);
}

// The keep probability the kernels apply where no mask is given (params.h).
inline double zoneout_probability(const c10::optional<at::Tensor>& mask, double p) {
  return mask.has_value() ? 0.0 : p;
}

// The Elman RNN's activation: true for relu, false for tanh, an error for anything else.
inline bool is_relu(c10::string_view nonlinearity) {
  TORCH_CHECK(nonlinearity == "tanh" || nonlinearity == "relu",
              "fastrnn: nonlinearity must be 'tanh' or 'relu', got '", nonlinearity, "'");
  return nonlinearity == "relu";
}

}  // namespace fastrnn
