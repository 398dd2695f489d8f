// LSTM over one layer in one direction on the CPU: per step one GEMM with the recurrent
// weights, one fused point-wise pass (cells/lstm.h) and, with a projection, one GEMM to the
// projected state. Shapes: input_gates [T, B, 4H] (x W_ih^T + b_ih, all steps at once),
// h [B, P] (P = proj_size or H), c [B, H], w_hh [4H, P], w_hr [P, H].
#include <torch/library.h>

#include "../checks.h"
#include "../weight_grads.h"
#include "sequence.h"

namespace fastrnn {
namespace cpu {
namespace {

using at::Tensor;
using c10::optional;

template <class scalar_t>
void lstm_forward_loop(const Tensor& input_gates, const Tensor& w_hh, const optional<Tensor>& b_hh,
                       const optional<Tensor>& w_hr, const LengthMask& mask, bool reverse,
                       StateHistory<scalar_t> hs, StateHistory<scalar_t> cs, scalar_t* gates,
                       bool gates_per_step, scalar_t* proj_in, bool proj_per_step,
                       scalar_t* output) {
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / 4, P = w_hh.size(1);
  const scalar_t* x = input_gates.data_ptr<scalar_t>();
  const scalar_t* w = w_hh.data_ptr<scalar_t>();
  const scalar_t* bias = optional_data<scalar_t>(b_hh);
  const scalar_t* w_proj = optional_data<scalar_t>(w_hr);

  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = forward_time(step, T, reverse);
    const scalar_t* h_prev = hs.prev(step, t);
    const scalar_t* c_prev = cs.prev(step, t);
    scalar_t* h_next = hs.next(step, t);
    scalar_t* c_next = cs.next(step, t);
    scalar_t* g = gates + (gates_per_step ? t * B * G : 0);
    scalar_t* r = proj_in == nullptr ? nullptr : proj_in + (proj_per_step ? t * B * H : 0);
    const scalar_t* x_t = x + t * B * G;
    scalar_t* out_t = output + t * B * P;

    gemm<scalar_t>(false, true, B, G, P, h_prev, P, w, P, scalar_t(0), g, G);

    parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t n = j1 - j0;
      if (!mask.active(b, t)) {  // finished sequence: keep the state, write zeros
        copy_span(c_next + b * H + j0, c_prev + b * H + j0, n);
        if (r != nullptr) {
          zero_span(r + b * H + j0, n);
        } else {
          copy_span(h_next + b * H + j0, h_prev + b * H + j0, n);
          zero_span(out_t + b * H + j0, n);
        }
        return;
      }
      scalar_t* gb = g + b * G;
      const scalar_t* xb = x_t + b * G;
      for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        auto pre = [&](int64_t gate) {
          V a = lanes.load(gb + gate * H + j) + lanes.load(xb + gate * H + j);
          return bias == nullptr ? a : a + lanes.load(bias + gate * H + j);
        };
        V i, f, gg, o, c, h;
        cells::lstm_forward(pre(0), pre(1), pre(2), pre(3), lanes.load(c_prev + b * H + j),
                            i, f, gg, o, c, h);
        lanes.store(gb + j, i);
        lanes.store(gb + H + j, f);
        lanes.store(gb + 2 * H + j, gg);
        lanes.store(gb + 3 * H + j, o);
        lanes.store(c_next + b * H + j, c);
        if (r != nullptr) {
          lanes.store(r + b * H + j, h);
        } else {
          lanes.store(h_next + b * H + j, h);
          lanes.store(out_t + b * H + j, h);
        }
      });
    });

    if (r != nullptr) {  // projection: h = r W_hr^T, then the same masking on [B, P]
      gemm<scalar_t>(false, true, B, P, H, r, H, w_proj, H, scalar_t(0), h_next, P);
      for (int64_t b = 0; b < B; ++b) {
        if (mask.active(b, t)) {
          copy_span(out_t + b * P, h_next + b * P, P);
        } else {
          copy_span(h_next + b * P, h_prev + b * P, P);
          zero_span(out_t + b * P, P);
        }
      }
    }
  }
}

// Returns (output [T,B,P], h_n [B,P], c_n [B,H], and what backward needs when training:
// hs [T+1,B,P], cs [T+1,B,H], post-activation gates [T,B,4H], projection input [T,B,H]).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& input_gates_in, const Tensor& h0, const Tensor& c0, const Tensor& w_hh_in,
    const optional<Tensor>& b_hh_in, const optional<Tensor>& w_hr_in,
    const optional<Tensor>& lengths_in, bool reverse, bool training) {
  check_layer_args("fastrnn::lstm_forward", 4, input_gates_in, h0, &c0, w_hh_in, b_hh_in,
                   w_hr_in, lengths_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor input_gates = input_gates_in.contiguous();
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const optional<Tensor> w_hr = contiguous_or_none(w_hr_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / 4, P = h0.size(1);
  const bool has_proj = w_hr.has_value();
  const auto opts = input_gates.options();

  Tensor output = at::empty({T, B, P}, opts);
  Tensor hs = at::empty({training ? T + 1 : 2, B, P}, opts);
  Tensor cs = at::empty({training ? T + 1 : 2, B, H}, opts);
  Tensor gates = at::empty({training ? T : 1, B, G}, opts);
  Tensor proj_in = has_proj ? at::empty({training ? T : 1, B, H}, opts) : at::empty({0}, opts);

  AT_DISPATCH_FLOATING_TYPES(input_gates.scalar_type(), "fastrnn_lstm_forward_cpu", [&] {
    StateHistory<scalar_t> h_hist{hs.data_ptr<scalar_t>(), B * P, T, reverse, training};
    StateHistory<scalar_t> c_hist{cs.data_ptr<scalar_t>(), B * H, T, reverse, training};
    copy_span(h_hist.initial(), h0.contiguous().data_ptr<scalar_t>(), B * P);
    copy_span(c_hist.initial(), c0.contiguous().data_ptr<scalar_t>(), B * H);
    lstm_forward_loop<scalar_t>(input_gates, w_hh, b_hh, w_hr, length_mask(lengths), reverse,
                                h_hist, c_hist, gates.data_ptr<scalar_t>(), training,
                                has_proj ? proj_in.data_ptr<scalar_t>() : nullptr, training,
                                output.data_ptr<scalar_t>());
  });

  const int64_t last = final_state_slot(T, reverse, training);
  Tensor h_n = hs[last].clone();
  Tensor c_n = cs[last].clone();
  if (!training) {  // inference saves nothing for backward
    hs = at::empty({0}, opts);
    cs = at::empty({0}, opts);
    gates = at::empty({0}, opts);
    proj_in = at::empty({0}, opts);
  }
  return {output, h_n, c_n, hs, cs, gates, proj_in};
}

// Returns (grad_input_gates [T,B,4H], grad_h0 [B,P], grad_c0 [B,H], grad_w_hh [4H,P],
// grad_b_hh [4H], grad_w_hr [P,H] or empty).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const optional<Tensor>& grad_c_n, const Tensor& w_hh_in, const optional<Tensor>& w_hr_in,
    const Tensor& hs_in, const Tensor& cs_in, const Tensor& gates_in, const Tensor& proj_in_arg,
    const optional<Tensor>& lengths_in, bool reverse) {
  check_lstm_backward_args(lengths_in, w_hh_in, w_hr_in, hs_in, cs_in, gates_in, proj_in_arg, grad_output_in,
                           grad_h_n, grad_c_n);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor hs = hs_in.contiguous();
  const Tensor cs = cs_in.contiguous();
  const Tensor gates = gates_in.contiguous();
  const Tensor proj_in = proj_in_arg.contiguous();
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> w_hr = contiguous_or_none(w_hr_in);
  const optional<Tensor> grad_output =
      contiguous_or_none(grad_output_in);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2);
  const int64_t H = G / 4, P = hs.size(2);
  const bool has_proj = w_hr.has_value();
  const auto opts = gates.options();

  Tensor grad_gates = at::empty({T, B, G}, opts);
  Tensor dh_state = grad_or_zeros(grad_h_n, {B, P}, opts);
  Tensor dc_state = grad_or_zeros(grad_c_n, {B, H}, opts);
  // With a projection: the gradient reaching each step's projected output (kept for the
  // W_hr gradient) and the gradient reaching the projection's input.
  Tensor grad_proj_out = has_proj ? at::empty({T, B, P}, opts) : at::empty({0}, opts);
  Tensor grad_proj_in = has_proj ? at::empty({B, H}, opts) : at::empty({0}, opts);
  const LengthMask mask = length_mask(lengths);

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "fastrnn_lstm_backward_cpu", [&] {
    const StateHistory<scalar_t> c_hist{cs.data_ptr<scalar_t>(), B * H, T, reverse, true};
    const scalar_t* go = optional_data<scalar_t>(grad_output);
    const scalar_t* w = w_hh.data_ptr<scalar_t>();
    const scalar_t* saved = gates.data_ptr<scalar_t>();
    scalar_t* dgates = grad_gates.data_ptr<scalar_t>();
    scalar_t* dh = dh_state.data_ptr<scalar_t>();
    scalar_t* dc = dc_state.data_ptr<scalar_t>();

    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = backward_time(step, T, reverse);
      add_output_grad(dh, go == nullptr ? nullptr : go + t * B * P, mask, t, B, P);

      // dh_cell: the gradient reaching o * tanh(c). Without a projection it is dh itself,
      // which each active element then hands over to the recurrent GEMM (dh := 0 first).
      const scalar_t* dh_cell = dh;
      if (has_proj) {
        scalar_t* dproj = grad_proj_out.data_ptr<scalar_t>() + t * B * P;
        for (int64_t b = 0; b < B; ++b) {
          if (mask.active(b, t)) {
            copy_span(dproj + b * P, dh + b * P, P);
            zero_span(dh + b * P, P);
          } else {
            zero_span(dproj + b * P, P);
          }
        }
        scalar_t* dr = grad_proj_in.data_ptr<scalar_t>();
        gemm<scalar_t>(false, false, B, H, P, dproj, P, w_hr->data_ptr<scalar_t>(), H,
                       scalar_t(0), dr, H);
        dh_cell = dr;
      }

      const scalar_t* g_t = saved + t * B * G;
      scalar_t* dg_t = dgates + t * B * G;
      const scalar_t* c_prev = c_hist.prev(step, t);
      const scalar_t* c_new = c_hist.next(step, t);
      parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
        scalar_t* dgb = dg_t + b * G;
        if (!mask.active(b, t)) {  // the state passed through: so does its gradient
          for (int64_t gate = 0; gate < 4; ++gate) zero_span(dgb + gate * H + j0, j1 - j0);
          return;
        }
        const scalar_t* gb = g_t + b * G;
        for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
          using V = typename decltype(lanes)::V;
          const int64_t e = b * H + j;
          V da_i, da_f, da_g, da_o, dc_prev;
          cells::lstm_backward(lanes.load(gb + j), lanes.load(gb + H + j),
                               lanes.load(gb + 2 * H + j), lanes.load(gb + 3 * H + j),
                               lanes.load(c_prev + e), lanes.load(c_new + e),
                               lanes.load(dh_cell + e), lanes.load(dc + e),
                               da_i, da_f, da_g, da_o, dc_prev);
          lanes.store(dgb + j, da_i);
          lanes.store(dgb + H + j, da_f);
          lanes.store(dgb + 2 * H + j, da_g);
          lanes.store(dgb + 3 * H + j, da_o);
          lanes.store(dc + e, dc_prev);
          if (!has_proj) lanes.store(dh + e, V(scalar_t(0)));
        });
      });
      // dh_prev = (pass-through of finished sequences) + dgates_t W_hh
      gemm<scalar_t>(false, false, B, P, G, dg_t, G, w, P, scalar_t(1), dh, P);
    }
  });

  auto [grad_w_hh, grad_b_hh] = recurrent_weight_grads(grad_gates, hs, reverse);
  Tensor grad_w_hr = has_proj ? projection_weight_grad(grad_proj_out, proj_in)
                              : at::empty({0}, opts);
  return {grad_gates, dh_state, dc_state, grad_w_hh, grad_b_hh, grad_w_hr};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}

}  // namespace cpu
}  // namespace fastrnn
