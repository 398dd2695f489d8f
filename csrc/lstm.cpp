// The LSTM operators' driver, the same on every device (see drivers.h). Shapes:
// input_gates [T, B, 4H] (x W_ih^T + b_ih, all steps at once), h [B, P] (P = proj_size or
// H), c [B, H], w_hh [4H, P], w_hr [P, H].
#include <c10/core/DeviceGuard.h>

#include "backend.h"
#include "checks.h"
#include "drivers.h"
#include "sequence/common.h"
#include "weight_grads.h"

namespace fastrnn {

// Returns (output [T,B,P], h_n [B,P], c_n [B,H], and what backward needs when saving:
// hs [T+1,B,P], cs [T+1,B,H], post-activation gates [T,B,4H], projection input [T,B,H];
// then with return_cells every step's cell state [T,B,H], else an empty tensor).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& input_gates_in, const Tensor& h0, const Tensor& c0, const Tensor& w_hh_in,
    const optional<Tensor>& b_hh_in, const optional<Tensor>& w_hr_in,
    const optional<Tensor>& lengths_in, bool reverse, bool save_for_backward,
    const optional<Tensor>& zoneout_h_in, const optional<Tensor>& zoneout_c_in, double zoneout,
    bool return_cells) {
  const char* op = "fastrnn::lstm_forward";
  check_layer_args(op, kLstmGates, input_gates_in, h0, &c0, w_hh_in, b_hh_in, w_hr_in,
                   lengths_in);
  check_lstm_zoneout(op, zoneout_h_in, zoneout_c_in, zoneout, input_gates_in.size(0),
                     h0.size(0), h0.size(1), c0.size(1), input_gates_in);
  const c10::DeviceGuard guard(input_gates_in.device());
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in), w_hr = contiguous_or_none(w_hr_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const optional<Tensor> zoneout_c = contiguous_or_none(zoneout_c_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / kLstmGates, P = h0.size(1);
  const bool has_proj = w_hr.has_value(), keep_all = save_for_backward;
  const auto opts = input_gates.options();
  const auto acc_opts = opts.dtype(accumulation_dtype(input_gates.scalar_type()));
  const int64_t slots = keep_all ? T + 1 : 2;

  Tensor output = new_buffer({T, B, P}, opts);
  Tensor hs = new_buffer({slots, B, P}, opts);
  Tensor cs = new_buffer({slots, B, H}, acc_opts);
  Tensor gates = new_buffer({keep_all ? T : 1, B, G}, acc_opts);
  Tensor proj_in = has_proj ? new_buffer({keep_all ? T : 1, B, H}, opts) : new_buffer({0}, opts);
  Tensor cells = return_cells ? new_buffer({T, B, H}, opts) : new_buffer({0}, opts);
  place_state(hs, initial_state_slot(T, reverse, keep_all), h0);
  place_state(cs, initial_state_slot(T, reverse, keep_all), c0);
  if (T > 0 && B > 0) {
    backend_for(input_gates.device().type())
        .lstm_forward({sequence_args(T, B, H, P, reverse, keep_all, lengths,
                                     input_gates.scalar_type()),
                       input_gates.data_ptr(), w_hh.data_ptr(), data_or_null(b_hh),
                       data_or_null(w_hr), hs.data_ptr(), cs.data_ptr(), gates.data_ptr(),
                       has_proj ? proj_in.data_ptr() : nullptr, output.data_ptr(),
                       data_or_null(zoneout_h), data_or_null(zoneout_c),
                       zoneout_probability(zoneout_h, zoneout),
                       return_cells ? cells.data_ptr() : nullptr});
  }

  const int64_t last = final_state_slot(T, reverse, keep_all);
  Tensor h_n = final_state(hs, last, keep_all);
  // the cell state accumulates in float for bfloat16: returned converted, a copy
  Tensor c_n = cs.scalar_type() == input_gates.scalar_type()
                   ? final_state(cs, last, keep_all)
                   : cs[last].to(input_gates.scalar_type());
  if (!keep_all) {  // inference saves nothing for backward
    hs = new_buffer({0}, opts);
    cs = new_buffer({0}, acc_opts);
    gates = new_buffer({0}, acc_opts);
    proj_in = new_buffer({0}, opts);
  }
  return {output, h_n, c_n, hs, cs, gates, proj_in, cells};
}

// Returns (grad_input_gates [T,B,4H], grad_h0 [B,P], grad_c0 [B,H], grad_w_hh [4H,P],
// grad_b_hh [4H], grad_w_hr [P,H] or empty).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const optional<Tensor>& grad_c_n, const Tensor& w_hh_in, const optional<Tensor>& w_hr_in,
    const Tensor& hs_in, const Tensor& cs_in, const Tensor& gates_in,
    const Tensor& proj_in_arg, const optional<Tensor>& lengths_in, bool reverse,
    const optional<Tensor>& zoneout_h_in, const optional<Tensor>& zoneout_c_in, double zoneout,
    const optional<Tensor>& grad_cells_in) {
  const char* op = "fastrnn::lstm_backward";
  check_lstm_backward_extras(w_hh_in, w_hr_in, hs_in, cs_in, proj_in_arg, grad_c_n);
  check_backward_args(op, kLstmGates, lengths_in, w_hh_in, hs_in, &gates_in, grad_output_in,
                      grad_h_n, w_hr_in);
  check_lstm_zoneout(op, zoneout_h_in, zoneout_c_in, zoneout, hs_in.size(0) - 1, hs_in.size(1),
                     hs_in.size(2), cs_in.size(2), hs_in);
  check_grad(op, "grad_cells", grad_cells_in, {hs_in.size(0) - 1, hs_in.size(1), cs_in.size(2)},
             w_hh_in);
  const c10::DeviceGuard guard(hs_in.device());
  const Tensor hs = hs_in.contiguous(), cs = cs_in.contiguous(), gates = gates_in.contiguous();
  const Tensor proj_in = proj_in_arg.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> w_hr = contiguous_or_none(w_hr_in);
  OutputGrad grad_output(grad_output_in), grad_cells(grad_cells_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const optional<Tensor> zoneout_c = contiguous_or_none(zoneout_c_in);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2);
  const int64_t H = G / kLstmGates, P = hs.size(2);
  const bool has_proj = w_hr.has_value();
  const auto opts = hs.options();
  const auto acc_opts = gates.options();

  Tensor grad_gates = new_buffer({T, B, G}, opts);
  Tensor dh = state_grad(grad_h_n, {B, P}, acc_opts);
  Tensor dc = state_grad(grad_c_n, {B, H}, acc_opts);
  // With a projection: the gradient reaching each step's projected output (kept for the
  // W_hr gradient) and scratch for the gradient reaching the projection's input.
  Tensor grad_proj_out = has_proj ? new_buffer({T, B, P}, opts) : new_buffer({0}, opts);
  Tensor grad_proj_in = has_proj ? new_buffer({B, H}, acc_opts) : new_buffer({0}, acc_opts);
  if (T > 0 && B > 0) {
    backend_for(hs.device().type())
        .lstm_backward({sequence_args(T, B, H, P, reverse, true, lengths, hs.scalar_type()),
                        grad_output.data(), grad_output.step, w_hh.data_ptr(), data_or_null(w_hr),
                        cs.data_ptr(), gates.data_ptr(), dh.data_ptr(), dc.data_ptr(),
                        grad_gates.data_ptr(), has_proj ? grad_proj_out.data_ptr() : nullptr,
                        has_proj ? grad_proj_in.data_ptr() : nullptr,
                        data_or_null(zoneout_h), data_or_null(zoneout_c),
                        zoneout_probability(zoneout_h, zoneout), grad_cells.data(),
                        grad_cells.step});
  }

  grad_output.tensor.reset();  // copies are freed before the weight gradients
  grad_cells.tensor.reset();
  auto [grad_w_hh, grad_b_hh] = recurrent_weight_grads(grad_gates, hs, reverse);
  Tensor grad_w_hr = has_proj ? projection_weight_grad(grad_proj_out, proj_in)
                              : new_buffer({0}, opts);
  return {grad_gates, dh.to(opts.dtype()), dc.to(opts.dtype()), grad_w_hh, grad_b_hh,
          grad_w_hr};
}

}  // namespace fastrnn
