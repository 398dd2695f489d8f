// The Elman RNN operators' driver (tanh or relu), the same on every device (see drivers.h).
// Shapes: input_gates [T, B, H] (x W_ih^T + b_ih), h [B, H], w_hh [H, H].
#include <c10/core/DeviceGuard.h>

#include "backend.h"
#include "checks.h"
#include "drivers.h"
#include "sequence/common.h"
#include "weight_grads.h"

namespace fastrnn {

// Returns (output [T,B,H], h_n [B,H], and when saving hs [T+1,B,H]).
std::tuple<Tensor, Tensor, Tensor> rnn_forward(const Tensor& input_gates_in, const Tensor& h0,
                                               const Tensor& w_hh_in,
                                               const optional<Tensor>& b_hh_in,
                                               const optional<Tensor>& lengths_in, bool reverse,
                                               c10::string_view nonlinearity,
                                               bool save_for_backward,
                                               const optional<Tensor>& zoneout_h_in,
                                               double zoneout) {
  const char* op = "fastrnn::rnn_forward";
  const bool relu = is_relu(nonlinearity);
  check_layer_args(op, kRnnGates, input_gates_in, h0, nullptr, w_hh_in, b_hh_in, c10::nullopt,
                   lengths_in);
  check_zoneout(op, zoneout, zoneout_h_in, "zoneout_h",
                {input_gates_in.size(0), h0.size(0), h0.size(1)}, input_gates_in);
  const c10::DeviceGuard guard(input_gates_in.device());
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), H = input_gates.size(2);
  const bool keep_all = save_for_backward;
  const auto opts = input_gates.options();
  Tensor output = new_buffer({T, B, H}, opts);
  Tensor hs = new_buffer({keep_all ? T + 1 : 2, B, H}, opts);
  Tensor recurrent = new_buffer({B, H}, opts.dtype(accumulation_dtype(input_gates.scalar_type())));
  place_state(hs, initial_state_slot(T, reverse, keep_all), h0);
  if (T > 0 && B > 0) {
    backend_for(input_gates.device().type())
        .rnn_forward({sequence_args(T, B, H, H, reverse, keep_all, lengths,
                                    input_gates.scalar_type()),
                      relu, input_gates.data_ptr(), w_hh.data_ptr(), data_or_null(b_hh),
                      hs.data_ptr(), recurrent.data_ptr(), output.data_ptr(),
                      data_or_null(zoneout_h), zoneout_probability(zoneout_h, zoneout)});
  }

  Tensor h_n = final_state(hs, final_state_slot(T, reverse, keep_all), keep_all);
  if (!keep_all) hs = new_buffer({0}, opts);
  return {output, h_n, hs};
}

// Returns (grad_input_gates [T,B,H], grad_h0 [B,H], grad_w_hh [H,H], grad_b_hh [H]).
std::tuple<Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& hs_in, const optional<Tensor>& lengths_in, bool reverse,
    c10::string_view nonlinearity, const optional<Tensor>& zoneout_h_in, double zoneout) {
  const char* op = "fastrnn::rnn_backward";
  const bool relu = is_relu(nonlinearity);
  check_backward_args(op, kRnnGates, lengths_in, w_hh_in, hs_in, nullptr, grad_output_in,
                      grad_h_n);
  check_zoneout(op, zoneout, zoneout_h_in, "zoneout_h",
                {hs_in.size(0) - 1, hs_in.size(1), hs_in.size(2)}, hs_in);
  const c10::DeviceGuard guard(hs_in.device());
  const Tensor hs = hs_in.contiguous(), w_hh = w_hh_in.contiguous();
  OutputGrad grad_output(grad_output_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const int64_t T = hs.size(0) - 1, B = hs.size(1), H = hs.size(2);
  const auto opts = hs.options();
  const auto acc_opts = opts.dtype(accumulation_dtype(hs.scalar_type()));
  Tensor grad_gates = new_buffer({T, B, H}, opts);
  Tensor dh = state_grad(grad_h_n, {B, H}, acc_opts);
  if (T > 0 && B > 0) {
    backend_for(hs.device().type())
        .rnn_backward({sequence_args(T, B, H, H, reverse, true, lengths, hs.scalar_type()),
                       relu, grad_output.data(), grad_output.step, w_hh.data_ptr(), hs.data_ptr(),
                       dh.data_ptr(), grad_gates.data_ptr(), data_or_null(zoneout_h),
                       zoneout_probability(zoneout_h, zoneout)});
  }

  grad_output.tensor.reset();  // a copy is freed before the weight gradients
  auto [grad_w_hh, grad_b_hh] = recurrent_weight_grads(grad_gates, hs, reverse);
  return {grad_gates, dh.to(opts.dtype()), grad_w_hh, grad_b_hh};
}

}  // namespace fastrnn
