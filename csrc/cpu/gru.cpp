// GRU over one layer in one direction on the CPU, in both reset forms (cells/gru.h).
// Shapes: input_gates [T, B, 3H] (x W_ih^T + b_ih), h [B, H], w_hh [3H, H].
//  * reset after (torch.nn): one GEMM h W_hh^T per step, one point-wise pass.
//  * reset before (Cho et al.): GEMM for r and z, point-wise, GEMM (r*h) W_hn^T, point-wise.
// Saved for backward: post-activation gates [T, B, 3H] and, per step, the n-part that
// backward cannot rebuild: W_hn h + b_hn (reset after) or r * h (reset before).
#include <torch/library.h>

#include "../checks.h"
#include "../weight_grads.h"
#include "sequence.h"

namespace fastrnn {
namespace cpu {
namespace {

using at::Tensor;
using c10::optional;

struct GruShapes {
  int64_t T, B, H;
};

template <class scalar_t>
void gru_forward_loop(const GruShapes& s, const scalar_t* x, const scalar_t* w,
                      const scalar_t* bias, const LengthMask& mask, bool reverse,
                      bool reset_after, StateHistory<scalar_t> hs, scalar_t* gates,
                      scalar_t* extra, bool per_step, scalar_t* output) {
  const int64_t T = s.T, B = s.B, H = s.H, G = 3 * H;
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = forward_time(step, T, reverse);
    const scalar_t* h_prev = hs.prev(step, t);
    scalar_t* h_next = hs.next(step, t);
    scalar_t* g = gates + (per_step ? t * B * G : 0);
    scalar_t* e = extra + (per_step ? t * B * H : 0);
    const scalar_t* x_t = x + t * B * G;
    scalar_t* out_t = output + t * B * H;

    // Rows of a finished sequence keep the state and write zeros (e.g. r*h = 0, so no
    // stale value reaches the weight-gradient GEMM).
    auto finished_row = [&](int64_t b, int64_t j0, int64_t j1) {
      copy_span(h_next + b * H + j0, h_prev + b * H + j0, j1 - j0);
      zero_span(out_t + b * H + j0, j1 - j0);
      zero_span(e + b * H + j0, j1 - j0);
    };

    if (reset_after) {
      gemm<scalar_t>(false, true, B, G, H, h_prev, H, w, H, scalar_t(0), g, G);
      parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
        if (!mask.active(b, t)) return finished_row(b, j0, j1);
        scalar_t* gb = g + b * G;
        const scalar_t* xb = x_t + b * G;
        for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
          using V = typename decltype(lanes)::V;
          auto with_bias = [&](V v, int64_t gate) {
            return bias == nullptr ? v : v + lanes.load(bias + gate * H + j);
          };
          const V a_r = with_bias(lanes.load(gb + j) + lanes.load(xb + j), 0);
          const V a_z = with_bias(lanes.load(gb + H + j) + lanes.load(xb + H + j), 1);
          const V hh_n = with_bias(lanes.load(gb + 2 * H + j), 2);
          V r, z, n, h;
          cells::gru_forward(a_r, a_z, lanes.load(xb + 2 * H + j), hh_n,
                             lanes.load(h_prev + b * H + j), r, z, n, h);
          lanes.store(gb + j, r);
          lanes.store(gb + H + j, z);
          lanes.store(gb + 2 * H + j, n);
          lanes.store(e + b * H + j, hh_n);
          lanes.store(h_next + b * H + j, h);
          lanes.store(out_t + b * H + j, h);
        });
      });
      continue;
    }

    // reset before: r and z first...
    gemm<scalar_t>(false, true, B, 2 * H, H, h_prev, H, w, H, scalar_t(0), g, G);
    parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, t)) return zero_span(e + b * H + j0, j1 - j0);
      scalar_t* gb = g + b * G;
      const scalar_t* xb = x_t + b * G;
      for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V a_r = lanes.load(gb + j) + lanes.load(xb + j);
        V a_z = lanes.load(gb + H + j) + lanes.load(xb + H + j);
        if (bias != nullptr) {
          a_r = a_r + lanes.load(bias + j);
          a_z = a_z + lanes.load(bias + H + j);
        }
        V r, z, reset_h;
        cells::gru_cho_gates(a_r, a_z, lanes.load(h_prev + b * H + j), r, z, reset_h);
        lanes.store(gb + j, r);
        lanes.store(gb + H + j, z);
        lanes.store(e + b * H + j, reset_h);
      });
    });
    // ...then the candidate from the reset state.
    gemm<scalar_t>(false, true, B, H, H, e, H, w + 2 * H * H, H, scalar_t(0), g + 2 * H, G);
    parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, t)) return finished_row(b, j0, j1);
      scalar_t* gb = g + b * G;
      const scalar_t* xb = x_t + b * G;
      for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V a_n = lanes.load(gb + 2 * H + j) + lanes.load(xb + 2 * H + j);
        if (bias != nullptr) a_n = a_n + lanes.load(bias + 2 * H + j);
        V n, h;
        cells::gru_cho_candidate(a_n, lanes.load(gb + H + j), lanes.load(h_prev + b * H + j),
                                 n, h);
        lanes.store(gb + 2 * H + j, n);
        lanes.store(h_next + b * H + j, h);
        lanes.store(out_t + b * H + j, h);
      });
    });
  }
}

// Returns (output [T,B,H], h_n [B,H], and when training: hs [T+1,B,H], gates [T,B,3H],
// extra [T,B,H]).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(
    const Tensor& input_gates_in, const Tensor& h0, const Tensor& w_hh_in,
    const optional<Tensor>& b_hh_in, const optional<Tensor>& lengths_in, bool reverse,
    bool reset_after, bool training) {
  check_layer_args("fastrnn::gru_forward", 3, input_gates_in, h0, nullptr, w_hh_in, b_hh_in,
                   c10::nullopt, lengths_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor input_gates = input_gates_in.contiguous();
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const GruShapes s{input_gates.size(0), input_gates.size(1), input_gates.size(2) / 3};
  const auto opts = input_gates.options();

  Tensor output = at::empty({s.T, s.B, s.H}, opts);
  Tensor hs = at::empty({training ? s.T + 1 : 2, s.B, s.H}, opts);
  Tensor gates = at::empty({training ? s.T : 1, s.B, 3 * s.H}, opts);
  Tensor extra = at::empty({training ? s.T : 1, s.B, s.H}, opts);

  AT_DISPATCH_FLOATING_TYPES(input_gates.scalar_type(), "fastrnn_gru_forward_cpu", [&] {
    StateHistory<scalar_t> h_hist{hs.data_ptr<scalar_t>(), s.B * s.H, s.T, reverse, training};
    copy_span(h_hist.initial(), h0.contiguous().data_ptr<scalar_t>(), s.B * s.H);
    gru_forward_loop<scalar_t>(s, input_gates.data_ptr<scalar_t>(), w_hh.data_ptr<scalar_t>(),
                               optional_data<scalar_t>(b_hh), length_mask(lengths), reverse,
                               reset_after, h_hist, gates.data_ptr<scalar_t>(),
                               extra.data_ptr<scalar_t>(), training,
                               output.data_ptr<scalar_t>());
  });

  Tensor h_n = hs[final_state_slot(s.T, reverse, training)].clone();
  if (!training) {
    hs = at::empty({0}, opts);
    gates = at::empty({0}, opts);
    extra = at::empty({0}, opts);
  }
  return {output, h_n, hs, gates, extra};
}

// Returns (grad_input_gates [T,B,3H], grad_h0 [B,H], grad_w_hh [3H,H], grad_b_hh [3H]).
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& hs_in, const Tensor& gates_in, const Tensor& extra_in,
    const optional<Tensor>& lengths_in, bool reverse, bool reset_after) {
  check_gru_backward_args(lengths_in, w_hh_in, hs_in, gates_in, extra_in, grad_output_in, grad_h_n);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor hs = hs_in.contiguous();
  const Tensor gates = gates_in.contiguous();
  const Tensor extra = extra_in.contiguous();
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> grad_output =
      contiguous_or_none(grad_output_in);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = G / 3;
  const auto opts = gates.options();

  Tensor grad_gates = at::empty({T, B, G}, opts);
  // Gradient of the recurrent pre-activations h W_hh^T + b_hh. With the reset before the
  // product it equals grad_gates; with it after, its n-part is r times that of grad_gates.
  Tensor grad_recurrent = reset_after ? at::empty({T, B, G}, opts) : grad_gates;
  Tensor dh_state = grad_or_zeros(grad_h_n, {B, H}, opts);
  Tensor d_reset_h = reset_after ? at::empty({0}, opts) : at::empty({B, H}, opts);
  const LengthMask mask = length_mask(lengths);

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "fastrnn_gru_backward_cpu", [&] {
    const StateHistory<scalar_t> h_hist{hs.data_ptr<scalar_t>(), B * H, T, reverse, true};
    const scalar_t* go = optional_data<scalar_t>(grad_output);
    const scalar_t* w = w_hh.data_ptr<scalar_t>();
    scalar_t* dh = dh_state.data_ptr<scalar_t>();

    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = backward_time(step, T, reverse);
      add_output_grad(dh, go == nullptr ? nullptr : go + t * B * H, mask, t, B, H);
      const scalar_t* g_t = gates.data_ptr<scalar_t>() + t * B * G;
      const scalar_t* e_t = extra.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* h_prev = h_hist.prev(step, t);
      scalar_t* dg_t = grad_gates.data_ptr<scalar_t>() + t * B * G;
      scalar_t* dgr_t = grad_recurrent.data_ptr<scalar_t>() + t * B * G;

      // Finished sequences: zero gate gradients, the state gradient passes through.
      auto finished_row = [&](int64_t b, int64_t j0, int64_t j1) {
        for (int64_t gate = 0; gate < 3; ++gate) {
          zero_span(dg_t + b * G + gate * H + j0, j1 - j0);
          if (reset_after) zero_span(dgr_t + b * G + gate * H + j0, j1 - j0);
        }
      };

      if (reset_after) {
        parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
          if (!mask.active(b, t)) return finished_row(b, j0, j1);
          const scalar_t* gb = g_t + b * G;
          scalar_t* dgb = dg_t + b * G;
          scalar_t* dgrb = dgr_t + b * G;
          for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
            using V = typename decltype(lanes)::V;
            const int64_t el = b * H + j;
            V da_r, da_z, dx_n, dhh_n, dh_direct;
            cells::gru_backward(lanes.load(gb + j), lanes.load(gb + H + j),
                                lanes.load(gb + 2 * H + j), lanes.load(e_t + el),
                                lanes.load(h_prev + el), lanes.load(dh + el),
                                da_r, da_z, dx_n, dhh_n, dh_direct);
            lanes.store(dgb + j, da_r);
            lanes.store(dgb + H + j, da_z);
            lanes.store(dgb + 2 * H + j, dx_n);
            lanes.store(dgrb + j, da_r);
            lanes.store(dgrb + H + j, da_z);
            lanes.store(dgrb + 2 * H + j, dhh_n);
            lanes.store(dh + el, dh_direct);
          });
        });
        gemm<scalar_t>(false, false, B, H, G, dgr_t, G, w, H, scalar_t(1), dh, H);
        continue;
      }

      // reset before: the candidate's backward first; dz waits in the z slot for phase 1.
      parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
        if (!mask.active(b, t)) return finished_row(b, j0, j1);
        const scalar_t* gb = g_t + b * G;
        scalar_t* dgb = dg_t + b * G;
        for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
          using V = typename decltype(lanes)::V;
          const int64_t el = b * H + j;
          V da_n, dz, dh_direct;
          cells::gru_cho_candidate_backward(lanes.load(gb + H + j), lanes.load(gb + 2 * H + j),
                                            lanes.load(h_prev + el), lanes.load(dh + el),
                                            da_n, dz, dh_direct);
          lanes.store(dgb + H + j, dz);
          lanes.store(dgb + 2 * H + j, da_n);
          lanes.store(dh + el, dh_direct);
        });
      });
      scalar_t* drh = d_reset_h.data_ptr<scalar_t>();
      gemm<scalar_t>(false, false, B, H, H, dg_t + 2 * H, G, w + 2 * H * H, H, scalar_t(0),
                     drh, H);
      parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
        if (!mask.active(b, t)) return;
        const scalar_t* gb = g_t + b * G;
        scalar_t* dgb = dg_t + b * G;
        for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
          using V = typename decltype(lanes)::V;
          const int64_t el = b * H + j;
          V da_r, da_z, dh_from_reset;
          cells::gru_cho_gates_backward(lanes.load(gb + j), lanes.load(gb + H + j),
                                        lanes.load(h_prev + el), lanes.load(drh + el),
                                        lanes.load(dgb + H + j), da_r, da_z, dh_from_reset);
          lanes.store(dgb + j, da_r);
          lanes.store(dgb + H + j, da_z);
          lanes.store(dh + el, lanes.load(dh + el) + dh_from_reset);
        });
      });
      gemm<scalar_t>(false, false, B, H, 2 * H, dg_t, G, w, H, scalar_t(1), dh, H);
    }
  });

  auto [grad_w_hh, grad_b_hh] = reset_after
      ? recurrent_weight_grads(grad_recurrent, hs, reverse)
      : reset_before_weight_grads(grad_recurrent, hs, extra, reverse);
  return {grad_gates, dh_state, grad_w_hh, grad_b_hh};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}

}  // namespace cpu
}  // namespace fastrnn
