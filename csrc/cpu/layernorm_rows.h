// The layer-normalised LSTM's walk through a sequence on the CPU, at this file's SIMD level
// (kernels.h includes it): per step the recurrent product through the CPU Device (packed
// weights, brgemm), then one parallel pass over the batch rows in which each row's
// statistics are two sums over its own features and the formulas of cells/layernorm_lstm.h
// run lane by lane. Rows are independent, so the threads split the batch.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "cpu/device.h"
#include "cpu/simd.h"
#include "params.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {
namespace layernorm {

// sum over j in [0, n) of term(lanes, j), summed in vectors and then across the lanes.
template <class S, class Term>
S row_sum(int64_t n, const Term& term) {
  at::vec::Vectorized<S> sums(S(0));
  S tail = 0;
  for_each_lane<S>(0, n, [&](auto lanes, int64_t j) {
    if constexpr (std::is_same_v<decltype(lanes), VectorLanes<S>>) {
      sums = sums + term(lanes, j);
    } else {
      tail += term(lanes, j);
    }
  });
  return at::vec::vec_reduce_all<S>([](auto a, auto b) { return a + b; }, sums) + tail;
}

// mean and 1 / sqrt(var + eps) of a row of n values (biased variance, two passes).
template <class S>
std::pair<S, S> row_statistics(const S* v, int64_t n, double eps) {
  const S mean = row_sum<S>(n, [&](auto lanes, int64_t j) { return lanes.load(v + j); }) / n;
  const S variance = row_sum<S>(n, [&](auto lanes, int64_t j) {
    using V = typename decltype(lanes)::V;
    const V centred = lanes.load(v + j) - V(mean);
    return centred * centred;
  }) / n;
  return {mean, S(1) / std::sqrt(variance + S(eps))};
}

// dv = rstd * (dy - mean(dy) - y * mean(dy * y)): the gradient reaching v through
// y = (v - mean(v)) * rstd. dv may be dy itself.
template <class S>
void normalisation_backward(const S* dy, const S* y, S rstd, int64_t n, S* dv) {
  const S mean_dy = row_sum<S>(n, [&](auto lanes, int64_t j) { return lanes.load(dy + j); }) / n;
  const S mean_dy_y = row_sum<S>(n, [&](auto lanes, int64_t j) {
    return lanes.load(dy + j) * lanes.load(y + j);
  }) / n;
  for_each_lane<S>(0, n, [&](auto lanes, int64_t j) {
    using V = typename decltype(lanes)::V;
    lanes.store(dv + j, V(rstd) * (lanes.load(dy + j) - V(mean_dy) -
                                   lanes.load(y + j) * V(mean_dy_y)));
  });
}

// Row b of a [T or T+1, B, width] buffer at index i (a step or a time).
template <class S, class P>
S* row(P* buffer, int64_t i, int64_t b, int64_t B, int64_t width) {
  return static_cast<S*>(const_cast<void*>(static_cast<const void*>(buffer))) +
         (i * B + b) * width;
}

// The rows of processing step s (time t); a.recurrent holds h_prev W_hh^T.
template <class S>
void forward_rows(const LayerNormLstmForwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 4 * H;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const S* h_prev = row<S>(a.hs, s, b, B, H);
      const S* c_prev = row<S>(a.cs, s, b, B, H);
      S* h_next = row<S>(a.hs, s + 1, b, B, H);
      S* c_next = row<S>(a.cs, s + 1, b, B, H);
      S* out = row<S>(a.output, t, b, B, H);
      S* gate = row<S>(a.gates, t, b, B, G);
      S* r_hat = row<S>(a.recurrent_hat, t, b, B, G);
      S* c_hat = row<S>(a.cell_hat, t, b, B, H);
      S* rstd = row<S>(a.rstd, t, b, B, 2);
      if (a.lengths != nullptr && a.lengths[b] <= t) {  // keep the state, write zeros
        std::copy(h_prev, h_prev + H, h_next);
        std::copy(c_prev, c_prev + H, c_next);
        std::fill(out, out + H, S(0));
        std::fill(gate, gate + G, S(0));
        std::fill(r_hat, r_hat + G, S(0));
        std::fill(c_hat, c_hat + H, S(0));
        rstd[0] = rstd[1] = S(0);
        continue;
      }
      const S* r = row<S>(a.recurrent, 0, b, B, G);
      const S* x = row<S>(a.input_gates, t, b, B, G);
      const S* gamma_hh = static_cast<const S*>(a.gamma_hh);
      const S* gamma_c = static_cast<const S*>(a.gamma_c);
      const S* beta_c = static_cast<const S*>(a.beta_c);
      const auto [r_mean, r_rstd] = row_statistics(r, G, a.eps);
      for_each_lane<S>(0, G, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const V normalised = (lanes.load(r + j) - V(r_mean)) * V(r_rstd);
        lanes.store(r_hat + j, normalised);
        lanes.store(gate + j, lanes.load(x + j) + lanes.load(gamma_hh + j) * normalised);
      });
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V i, f, g, o, c;
        cells::lstm_gates(lanes.load(gate + j), lanes.load(gate + H + j),
                          lanes.load(gate + 2 * H + j), lanes.load(gate + 3 * H + j),
                          lanes.load(c_prev + j), i, f, g, o, c);
        lanes.store(gate + j, i);
        lanes.store(gate + H + j, f);
        lanes.store(gate + 2 * H + j, g);
        lanes.store(gate + 3 * H + j, o);
        lanes.store(c_next + j, c);
      });
      const auto [c_mean, c_rstd] = row_statistics(c_next, H, a.eps);
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const V normalised = (lanes.load(c_next + j) - V(c_mean)) * V(c_rstd);
        lanes.store(c_hat + j, normalised);
        V n = lanes.load(gamma_c + j) * normalised;
        if (beta_c != nullptr) n = n + lanes.load(beta_c + j);
        const V h = lanes.load(gate + 3 * H + j) * cells::tanh_act(n);
        lanes.store(h_next + j, h);
        lanes.store(out + j, h);
      });
      rstd[0] = r_rstd;
      rstd[1] = c_rstd;
    }
  });
}

// The rows of processing step s (time t), before the product that hands d_rec back to h.
// scratch: [B, H], the gradient reaching LN(c).
template <class S>
void backward_rows(const LayerNormLstmBackwardArgs& a, int64_t s, int64_t t, S* scratch_rows) {
  const int64_t B = a.B, H = a.H, G = 4 * H;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      S* scratch = scratch_rows + b * H;
      S* da = row<S>(a.grad_gates, t, b, B, G);
      S* d_rec = row<S>(a.grad_recurrent, s, b, B, G);
      S* dn = row<S>(a.grad_cell_norm, t, b, B, H);
      if (a.lengths != nullptr && a.lengths[b] <= t) {  // the state passed through
        std::fill(da, da + G, S(0));
        std::fill(d_rec, d_rec + G, S(0));
        std::fill(dn, dn + H, S(0));
        continue;
      }
      S* dh = row<S>(a.dh, 0, b, B, H);
      S* dc = row<S>(a.dc, 0, b, B, H);
      const S* gate = row<S>(a.gates, t, b, B, G);
      const S* r_hat = row<S>(a.recurrent_hat, t, b, B, G);
      const S* c_hat = row<S>(a.cell_hat, t, b, B, H);
      const S* c_prev = row<S>(a.cs, s, b, B, H);
      const S* dout = a.grad_output != nullptr ? row<S>(a.grad_output, t, b, B, H) : nullptr;
      const S* gamma_hh = static_cast<const S*>(a.gamma_hh);
      const S* gamma_c = static_cast<const S*>(a.gamma_c);
      const S* beta_c = static_cast<const S*>(a.beta_c);
      const S r_rstd = row<S>(a.rstd, t, b, B, 2)[0];
      const S c_rstd = row<S>(a.rstd, t, b, B, 2)[1];
      // h = o tanh(n), n = gamma_c LN(c) + beta_c; scratch: the gradient reaching LN(c)
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V grad_h = lanes.load(dh + j);
        if (dout != nullptr) grad_h = grad_h + lanes.load(dout + j);
        V n = lanes.load(gamma_c + j) * lanes.load(c_hat + j);
        if (beta_c != nullptr) n = n + lanes.load(beta_c + j);
        V da_o, d_n;
        cells::layernorm_lstm_output_backward(lanes.load(gate + 3 * H + j), cells::tanh_act(n),
                                              grad_h, da_o, d_n);
        lanes.store(da + 3 * H + j, da_o);
        lanes.store(dn + j, d_n);
        lanes.store(scratch + j, d_n * lanes.load(gamma_c + j));
      });
      normalisation_backward(scratch, c_hat, c_rstd, H, scratch);
      // c = f c_prev + i g, its gradient from step t+1 and through h
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V da_i, da_f, da_g, dc_prev;
        cells::lstm_cell_backward(
            lanes.load(gate + j), lanes.load(gate + H + j), lanes.load(gate + 2 * H + j),
            lanes.load(c_prev + j), lanes.load(dc + j) + lanes.load(scratch + j), da_i, da_f,
            da_g, dc_prev);
        lanes.store(da + j, da_i);
        lanes.store(da + H + j, da_f);
        lanes.store(da + 2 * H + j, da_g);
        lanes.store(dc + j, dc_prev);
        lanes.store(dh + j, V(S(0)));  // the recurrent product's gradient replaces it
      });
      // a = x + gamma_hh LN(h_prev W_hh^T)
      for_each_lane<S>(0, G, [&](auto lanes, int64_t j) {
        lanes.store(d_rec + j, lanes.load(da + j) * lanes.load(gamma_hh + j));
      });
      normalisation_backward(d_rec, r_hat, r_rstd, G, d_rec);
    }
  });
}

int64_t time_of(int64_t step, int64_t T, bool reverse) { return reverse ? T - 1 - step : step; }

template <class S>
void forward_sequence(const LayerNormLstmForwardArgs& a) {
  const int64_t H = a.H, G = 4 * H;
  CpuDevice device;
  device.prepare<S>(a.T, a.B, {{a.w_hh, G, H, 1}});
  for (int64_t s = 0; s < a.T; ++s) {
    device.gemm(false, true, a.B, G, H, row<S>(a.hs, s, 0, a.B, H), H,
                static_cast<const S*>(a.w_hh), H, 0.0, a.recurrent, G, true);
    forward_rows<S>(a, s, time_of(s, a.T, a.reverse));
  }
}

template <class S>
void backward_sequence(const LayerNormLstmBackwardArgs& a) {
  const int64_t H = a.H, G = 4 * H;
  CpuDevice device;
  device.prepare<S>(a.T, a.B, {{a.w_hh, G, H, 1}}, /*transposed_b=*/false);
  std::vector<S> scratch(a.B * H);  // once per call, not per step
  for (int64_t s = a.T - 1; s >= 0; --s) {
    backward_rows<S>(a, s, time_of(s, a.T, a.reverse), scratch.data());
    // dh_prev = d_rec W_hh; finished rows' d_rec is 0, so their dh passes through
    device.gemm(false, false, a.B, H, G, row<S>(a.grad_recurrent, s, 0, a.B, G), G,
                static_cast<const S*>(a.w_hh), H, 1.0, a.dh, H, true);
  }
}

}  // namespace layernorm

void layernorm_lstm_forward(const LayerNormLstmForwardArgs& args) {
  if (args.float64) {
    layernorm::forward_sequence<double>(args);
  } else {
    layernorm::forward_sequence<float>(args);
  }
}

void layernorm_lstm_backward(const LayerNormLstmBackwardArgs& args) {
  if (args.float64) {
    layernorm::backward_sequence<double>(args);
  } else {
    layernorm::backward_sequence<float>(args);
  }
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
