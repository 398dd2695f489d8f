// The GRU operators' driver, both reset forms, the same on every device (see drivers.h).
// Shapes: input_gates [T, B, 3H] (x W_ih^T + b_ih), h [B, H], w_hh [3H, H]. Saved for
// backward: post-activation gates and, per step, the n-part that backward cannot rebuild:
// W_hn h + b_hn (reset after) or r * h (reset before).
#include <c10/core/DeviceGuard.h>

#include "backend.h"
#include "checks.h"
#include "drivers.h"
#include "sequence/common.h"
#include "weight_grads.h"

namespace fastrnn {

// Returns (output [T,B,H], h_n [B,H], and when saving: hs [T+1,B,H], gates [T,B,3H],
// extra [T,B,H]).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(
    const Tensor& input_gates_in, const Tensor& h0, const Tensor& w_hh_in,
    const optional<Tensor>& b_hh_in, const optional<Tensor>& lengths_in, bool reverse,
    bool reset_after, bool save_for_backward, const optional<Tensor>& zoneout_h_in,
    double zoneout) {
  const char* op = "fastrnn::gru_forward";
  check_layer_args(op, kGruGates, input_gates_in, h0, nullptr, w_hh_in, b_hh_in, c10::nullopt,
                   lengths_in);
  check_zoneout(op, zoneout, zoneout_h_in, "zoneout_h",
                {input_gates_in.size(0), h0.size(0), h0.size(1)}, input_gates_in);
  const c10::DeviceGuard guard(input_gates_in.device());
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / kGruGates;
  const bool keep_all = save_for_backward;
  const auto opts = input_gates.options();
  const auto acc_opts = opts.dtype(accumulation_dtype(input_gates.scalar_type()));

  Tensor output = new_buffer({T, B, H}, opts);
  Tensor hs = new_buffer({keep_all ? T + 1 : 2, B, H}, opts);
  Tensor gates = new_buffer({keep_all ? T : 1, B, G}, acc_opts);
  Tensor extra = new_buffer({keep_all ? T : 1, B, H}, opts);
  place_state(hs, initial_state_slot(T, reverse, keep_all), h0);
  if (T > 0 && B > 0) {
    backend_for(input_gates.device().type())
        .gru_forward({sequence_args(T, B, H, H, reverse, keep_all, lengths,
                                    input_gates.scalar_type()),
                      reset_after, input_gates.data_ptr(), w_hh.data_ptr(), data_or_null(b_hh),
                      hs.data_ptr(), gates.data_ptr(), extra.data_ptr(), output.data_ptr(),
                      data_or_null(zoneout_h), zoneout_probability(zoneout_h, zoneout)});
  }

  Tensor h_n = final_state(hs, final_state_slot(T, reverse, keep_all), keep_all);
  if (!keep_all) {
    hs = new_buffer({0}, opts);
    gates = new_buffer({0}, acc_opts);
    extra = new_buffer({0}, opts);
  }
  return {output, h_n, hs, gates, extra};
}

// Returns (grad_input_gates [T,B,3H], grad_h0 [B,H], grad_w_hh [3H,H], grad_b_hh [3H]).
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& hs_in, const Tensor& gates_in, const Tensor& extra_in,
    const optional<Tensor>& lengths_in, bool reverse, bool reset_after,
    const optional<Tensor>& zoneout_h_in, double zoneout) {
  const char* op = "fastrnn::gru_backward";
  check_backward_args(op, kGruGates, lengths_in, w_hh_in, hs_in, &gates_in, grad_output_in,
                      grad_h_n);
  check_zoneout(op, zoneout, zoneout_h_in, "zoneout_h",
                {hs_in.size(0) - 1, hs_in.size(1), hs_in.size(2)}, hs_in);
  check_saved(op, "extra", extra_in, {hs_in.size(0) - 1, hs_in.size(1), hs_in.size(2)},
              w_hh_in, false);
  const c10::DeviceGuard guard(hs_in.device());
  const Tensor hs = hs_in.contiguous(), gates = gates_in.contiguous();
  const Tensor extra = extra_in.contiguous(), w_hh = w_hh_in.contiguous();
  OutputGrad grad_output(grad_output_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = G / kGruGates;
  const auto opts = hs.options();
  const auto acc_opts = gates.options();

  Tensor grad_gates = new_buffer({T, B, G}, opts);
  // The gradient of the recurrent pre-activations h W_hh^T + b_hh: with the reset before
  // the product it is grad_gates; with it after, its r and z parts are grad_gates' and its
  // n-part, r times grad_gates', is kept here.
  Tensor grad_hh_n = new_buffer({reset_after ? T : 0, B, H}, opts);
  Tensor dh = state_grad(grad_h_n, {B, H}, acc_opts);
  Tensor dz = reset_after ? new_buffer({0}, acc_opts) : new_buffer({B, H}, acc_opts);
  Tensor d_reset_h = reset_after ? new_buffer({0}, acc_opts) : new_buffer({B, H}, acc_opts);
  if (T > 0 && B > 0) {
    backend_for(hs.device().type())
        .gru_backward({sequence_args(T, B, H, H, reverse, true, lengths, hs.scalar_type()),
                       reset_after, grad_output.data(), grad_output.step, w_hh.data_ptr(),
                       hs.data_ptr(), gates.data_ptr(), extra.data_ptr(), dh.data_ptr(),
                       grad_gates.data_ptr(),
                       reset_after ? grad_hh_n.data_ptr() : nullptr,
                       reset_after ? nullptr : dz.data_ptr(),
                       reset_after ? nullptr : d_reset_h.data_ptr(),
                       data_or_null(zoneout_h), zoneout_probability(zoneout_h, zoneout)});
  }

  grad_output.tensor.reset();  // a copy is freed before the weight gradients
  auto [grad_w_hh, grad_b_hh] = reset_after
      ? reset_after_weight_grads(grad_gates, grad_hh_n, hs, reverse)
      : reset_before_weight_grads(grad_gates, hs, extra, reverse);
  return {grad_gates, dh.to(opts.dtype()), grad_w_hh, grad_b_hh};
}

}  // namespace fastrnn
