// The layer-normalised LSTM's and GRU's walks through a sequence on the CPU, at this file's
// SIMD level (kernels.h includes it): per step the recurrent product through the CPU Device
// (packed weights, brgemm), then one parallel pass over the batch rows in which each row's
// statistics are two sums over its own features and the cell formulas (cells/) run lane by
// lane. Rows are independent, so the threads split the batch.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "cells/gru.h"
#include "cells/layernorm_lstm.h"
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

// Zoneout's keep weights for one row (cells/zoneout.h): the mask's row at its time step
// (training), or p for every unit (evaluation); off when neither.
template <class S>
struct Keep {
  const S* mask;
  S p;
  bool on() const { return mask != nullptr || p != S(0); }
  template <class Lanes>
  auto at(Lanes lanes, int64_t j) const {
    using V = typename Lanes::V;
    return mask != nullptr ? lanes.load(mask + j) : V(p);
  }
};

template <class S>
Keep<S> keep_of(const void* masks, double p, int64_t t, int64_t b, int64_t B, int64_t H) {
  return {masks != nullptr ? row<S>(masks, t, b, B, H) : nullptr, S(p)};
}

// The rows of processing step s (time t); a.recurrent holds h_prev W_hh^T.
template <class S>
void forward_rows(const LayerNormLstmForwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 4 * H;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const S* h_prev = row<S>(a.hs, a.state_at(s), b, B, H);
      const S* c_prev = row<S>(a.cs, a.state_at(s), b, B, H);
      S* h_next = row<S>(a.hs, a.state_at(s + 1), b, B, H);
      S* c_next = row<S>(a.cs, a.state_at(s + 1), b, B, H);
      S* out = row<S>(a.output, t, b, B, H);
      S* gate = row<S>(a.gates, a.saved_at(t), b, B, G);
      S* r_hat = row<S>(a.recurrent_hat, a.saved_at(t), b, B, G);
      S* c_hat = row<S>(a.cell_hat, a.saved_at(t), b, B, H);
      S* rstd = row<S>(a.rstd, a.saved_at(t), b, B, 2);
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
      const Keep<S> keep_h = keep_of<S>(a.zoneout_h, a.zoneout_p, t, b, B, H);
      const Keep<S> keep_c = keep_of<S>(a.zoneout_c, a.zoneout_p, t, b, B, H);
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const V c_new = lanes.load(c_next + j);
        const V normalised = (c_new - V(c_mean)) * V(c_rstd);
        lanes.store(c_hat + j, normalised);
        V n = lanes.load(gamma_c + j) * normalised;
        if (beta_c != nullptr) n = n + lanes.load(beta_c + j);
        V h = lanes.load(gate + 3 * H + j) * cells::tanh_act(n);
        // zoned out, the carried states (and the output) keep a share of the previous ones
        if (keep_h.on()) h = cells::zoneout(keep_h.at(lanes, j), lanes.load(h_prev + j), h);
        if (keep_c.on()) {
          lanes.store(c_next + j,
                      cells::zoneout(keep_c.at(lanes, j), lanes.load(c_prev + j), c_new));
        }
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
      const S* dcell = a.grad_cells != nullptr ? row<S>(a.grad_cells, t, b, B, H) : nullptr;
      const S* gamma_hh = static_cast<const S*>(a.gamma_hh);
      const S* gamma_c = static_cast<const S*>(a.gamma_c);
      const S* beta_c = static_cast<const S*>(a.beta_c);
      const S r_rstd = row<S>(a.rstd, t, b, B, 2)[0];
      const S c_rstd = row<S>(a.rstd, t, b, B, 2)[1];
      const Keep<S> keep_h = keep_of<S>(a.zoneout_h, a.zoneout_p, t, b, B, H);
      const Keep<S> keep_c = keep_of<S>(a.zoneout_c, a.zoneout_p, t, b, B, H);
      // h = o tanh(n), n = gamma_c LN(c) + beta_c; scratch: the gradient reaching LN(c).
      // dh keeps what zoneout passes straight to h_prev; the product's part joins it later.
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V grad_h = lanes.load(dh + j);
        if (dout != nullptr) grad_h = grad_h + lanes.load(dout + j);
        V dh_kept(S(0));
        if (keep_h.on()) {
          const V keep = keep_h.at(lanes, j);
          dh_kept = keep * grad_h;
          grad_h = (V(S(1)) - keep) * grad_h;
        }
        lanes.store(dh + j, dh_kept);
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
      // c = f c_prev + i g, its gradient from step t+1 (zoned out: a share of it goes
      // straight to c_prev) and through h
      for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V dc_new = lanes.load(dc + j), dc_kept(S(0));
        if (dcell != nullptr) dc_new = dc_new + lanes.load(dcell + j);  // an output too
        if (keep_c.on()) {
          const V keep = keep_c.at(lanes, j);
          dc_kept = keep * dc_new;
          dc_new = (V(S(1)) - keep) * dc_new;
        }
        V da_i, da_f, da_g, dc_prev;
        cells::lstm_cell_backward(
            lanes.load(gate + j), lanes.load(gate + H + j), lanes.load(gate + 2 * H + j),
            lanes.load(c_prev + j), dc_new + lanes.load(scratch + j), da_i, da_f, da_g,
            dc_prev);
        lanes.store(da + j, da_i);
        lanes.store(da + H + j, da_f);
        lanes.store(da + 2 * H + j, da_g);
        lanes.store(dc + j, dc_prev + dc_kept);
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
    device.gemm(false, true, a.B, G, H, row<S>(a.hs, a.state_at(s), 0, a.B, H), H,
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

// ---- the GRU. G = 3H; gamma_hh's and the recurrent products' blocks are r, z, n.

// v_hat = LN(v) over a row of n values; returns its 1 / sqrt(var + eps).
template <class S>
S normalise_row(const S* v, int64_t n, double eps, S* v_hat) {
  const auto [mean, rstd] = row_statistics(v, n, eps);
  for_each_lane<S>(0, n, [&](auto lanes, int64_t j) {
    using V = typename decltype(lanes)::V;
    lanes.store(v_hat + j, (lanes.load(v + j) - V(mean)) * V(rstd));
  });
  return rstd;
}

// gamma * v_hat (+ beta) at j, the normalised product as the gate reads it.
template <class Lanes, class S>
auto scaled(Lanes lanes, const S* gamma, const S* v_hat, const S* beta, int64_t j) {
  auto v = lanes.load(gamma + j) * lanes.load(v_hat + j);
  return beta != nullptr ? v + lanes.load(beta + j) : v;
}

// Every row of step s (time t) with its own pointers; finished rows (lengths) are handed to
// `finished`, the others to `running`.
template <class S, class Args, class Running, class Finished>
void for_each_row(const Args& a, int64_t t, const Running& running, const Finished& finished) {
  at::parallel_for(0, a.B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      if (a.lengths != nullptr && a.lengths[b] <= t) {
        finished(b);
      } else {
        running(b);
      }
    }
  });
}

// A finished row keeps its state and writes zeros (the saved buffers too: backward reads
// them, and a product sums over them).
template <class S>
void gru_finished_row(const LayerNormGruForwardArgs& a, int64_t s, int64_t t, int64_t b) {
  const int64_t B = a.B, H = a.H, G = 3 * H;
  const S* h_prev = row<S>(a.hs, a.state_at(s), b, B, H);
  std::copy(h_prev, h_prev + H, row<S>(a.hs, a.state_at(s + 1), b, B, H));
  std::fill_n(row<S>(a.output, t, b, B, H), H, S(0));
  std::fill_n(row<S>(a.gates, a.saved_at(t), b, B, G), G, S(0));
  std::fill_n(row<S>(a.recurrent_hat, a.saved_at(t), b, B, G), G, S(0));
  std::fill_n(row<S>(a.rstd, a.saved_at(t), b, B, 2), 2, S(0));
  if (!a.reset_after) std::fill_n(row<S>(a.reset_h, a.saved_at(s), b, B, H), H, S(0));
}

// Reset after the product: a = x + gamma_hh LN(h_prev W_hh^T) for r and z, and
// n = tanh(x_n + r * (gamma_n LN(.)_n + beta_n)), the LN over all 3H of the product.
template <class S>
void gru_forward_rows(const LayerNormGruForwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 3 * H;
  const S* gamma = static_cast<const S*>(a.gamma_hh);
  const S* beta_n = static_cast<const S*>(a.beta_n);
  for_each_row<S>(a, t, [&](int64_t b) {
    const S* h_prev = row<S>(a.hs, a.state_at(s), b, B, H);
    const S* x = row<S>(a.input_gates, t, b, B, G);
    S* gate = row<S>(a.gates, a.saved_at(t), b, B, G);
    S* r_hat = row<S>(a.recurrent_hat, a.saved_at(t), b, B, G);
    S* h_next = row<S>(a.hs, a.state_at(s + 1), b, B, H);
    S* out = row<S>(a.output, t, b, B, H);
    row<S>(a.rstd, a.saved_at(t), b, B, 2)[0] = normalise_row(row<S>(a.recurrent, 0, b, B, G), G, a.eps,
                                                  r_hat);
    const Keep<S> keep = keep_of<S>(a.zoneout_h, a.zoneout_p, t, b, B, H);
    for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
      using V = typename decltype(lanes)::V;
      V r, z, n, h;
      cells::gru_forward(lanes.load(x + j) + scaled(lanes, gamma, r_hat, (const S*)nullptr, j),
                         lanes.load(x + H + j) + scaled(lanes, gamma + H, r_hat + H,
                                                        (const S*)nullptr, j),
                         lanes.load(x + 2 * H + j),
                         scaled(lanes, gamma + 2 * H, r_hat + 2 * H, beta_n, j),
                         lanes.load(h_prev + j), r, z, n, h);
      if (keep.on()) h = cells::zoneout(keep.at(lanes, j), lanes.load(h_prev + j), h);
      lanes.store(gate + j, r);
      lanes.store(gate + H + j, z);
      lanes.store(gate + 2 * H + j, n);
      lanes.store(h_next + j, h);
      lanes.store(out + j, h);
    });
  }, [&](int64_t b) { gru_finished_row<S>(a, s, t, b); });
}

// Reset before the product, phase 1 (after h_prev W_hr,hz^T): r and z from the LN over
// their 2H, and r * h_prev for the second product.
template <class S>
void gru_cho_gates_rows(const LayerNormGruForwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 3 * H;
  const S* gamma = static_cast<const S*>(a.gamma_hh);
  for_each_row<S>(a, t, [&](int64_t b) {
    const S* h_prev = row<S>(a.hs, a.state_at(s), b, B, H);
    const S* x = row<S>(a.input_gates, t, b, B, G);
    S* gate = row<S>(a.gates, a.saved_at(t), b, B, G);
    S* r_hat = row<S>(a.recurrent_hat, a.saved_at(t), b, B, G);
    S* reset_h = row<S>(a.reset_h, a.saved_at(s), b, B, H);
    row<S>(a.rstd, a.saved_at(t), b, B, 2)[0] = normalise_row(row<S>(a.recurrent, 0, b, B, G), 2 * H,
                                                  a.eps, r_hat);
    for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
      using V = typename decltype(lanes)::V;
      V r, z, rh;
      cells::gru_cho_gates(
          lanes.load(x + j) + scaled(lanes, gamma, r_hat, (const S*)nullptr, j),
          lanes.load(x + H + j) + scaled(lanes, gamma + H, r_hat + H, (const S*)nullptr, j),
          lanes.load(h_prev + j), r, z, rh);
      lanes.store(gate + j, r);
      lanes.store(gate + H + j, z);
      lanes.store(reset_h + j, rh);
    });
  }, [&](int64_t b) { gru_finished_row<S>(a, s, t, b); });
}

// Phase 2 (after (r * h_prev) W_hn^T): n = tanh(x_n + gamma_n LN(.) + beta_n), the LN over H.
template <class S>
void gru_cho_candidate_rows(const LayerNormGruForwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 3 * H;
  const S* gamma_n = static_cast<const S*>(a.gamma_hh) + 2 * H;
  const S* beta_n = static_cast<const S*>(a.beta_n);
  for_each_row<S>(a, t, [&](int64_t b) {
    const S* h_prev = row<S>(a.hs, a.state_at(s), b, B, H);
    const S* x_n = row<S>(a.input_gates, t, b, B, G) + 2 * H;
    S* gate = row<S>(a.gates, a.saved_at(t), b, B, G);
    S* n_hat = row<S>(a.recurrent_hat, a.saved_at(t), b, B, G) + 2 * H;
    S* h_next = row<S>(a.hs, a.state_at(s + 1), b, B, H);
    S* out = row<S>(a.output, t, b, B, H);
    row<S>(a.rstd, a.saved_at(t), b, B, 2)[1] = normalise_row(row<S>(a.recurrent, 0, b, B, G) + 2 * H, H,
                                                  a.eps, n_hat);
    const Keep<S> keep = keep_of<S>(a.zoneout_h, a.zoneout_p, t, b, B, H);
    for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
      using V = typename decltype(lanes)::V;
      V n, h;
      cells::gru_cho_candidate(lanes.load(x_n + j) + scaled(lanes, gamma_n, n_hat, beta_n, j),
                               lanes.load(gate + H + j), lanes.load(h_prev + j), n, h);
      if (keep.on()) h = cells::zoneout(keep.at(lanes, j), lanes.load(h_prev + j), h);
      lanes.store(gate + 2 * H + j, n);
      lanes.store(h_next + j, h);
      lanes.store(out + j, h);
    });
  }, [](int64_t) {});
}

// d_rec = LN's backward of grad_norm * gamma over n values (d_rec may not be grad_norm).
template <class S>
void recurrent_backward(const S* grad_norm, const S* gamma, const S* v_hat, S rstd, int64_t n,
                        S* d_rec) {
  for_each_lane<S>(0, n, [&](auto lanes, int64_t j) {
    lanes.store(d_rec + j, lanes.load(grad_norm + j) * lanes.load(gamma + j));
  });
  normalisation_backward(d_rec, v_hat, rstd, n, d_rec);
}

// The rows of backward step s (time t) before the product that hands the recurrent
// gradient back to h. Reset after: the whole step. Reset before: the candidate's part, up
// to d (r * h_prev)'s product; z's output gradient waits in grad_gates' z block.
template <class S>
void gru_backward_rows(const LayerNormGruBackwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 3 * H;
  const S* gamma = static_cast<const S*>(a.gamma_hh);
  const S* beta_n = static_cast<const S*>(a.beta_n);
  for_each_row<S>(a, t, [&](int64_t b) {
    S* dh = row<S>(a.dh, 0, b, B, H);
    const S* dout = a.grad_output != nullptr ? row<S>(a.grad_output, t, b, B, H) : nullptr;
    const S* h_prev = row<S>(a.hs, s, b, B, H);
    const S* gate = row<S>(a.gates, t, b, B, G);
    const S* r_hat = row<S>(a.recurrent_hat, t, b, B, G);
    const S* rstd = row<S>(a.rstd, t, b, B, 2);
    S* da = row<S>(a.grad_gates, t, b, B, G);
    S* dnorm = row<S>(a.grad_norm, t, b, B, G);
    S* d_rec = row<S>(a.grad_recurrent, s, b, B, G);
    const Keep<S> keep = keep_of<S>(a.zoneout_h, a.zoneout_p, t, b, B, H);
    for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
      using V = typename decltype(lanes)::V;
      V grad_h = lanes.load(dh + j);
      if (dout != nullptr) grad_h = grad_h + lanes.load(dout + j);
      V dh_kept(S(0));  // zoneout's share, straight to h_prev
      if (keep.on()) {
        const V k = keep.at(lanes, j);
        dh_kept = k * grad_h;
        grad_h = (V(S(1)) - k) * grad_h;
      }
      const V r = lanes.load(gate + j), z = lanes.load(gate + H + j);
      const V n = lanes.load(gate + 2 * H + j), h = lanes.load(h_prev + j);
      if (a.reset_after) {
        V da_r, da_z, dx_n, dhh_n, dh_direct;
        cells::gru_backward(r, z, n, scaled(lanes, gamma + 2 * H, r_hat + 2 * H, beta_n, j), h,
                            grad_h, da_r, da_z, dx_n, dhh_n, dh_direct);
        lanes.store(da + j, da_r);
        lanes.store(da + H + j, da_z);
        lanes.store(da + 2 * H + j, dx_n);
        lanes.store(dnorm + j, da_r);
        lanes.store(dnorm + H + j, da_z);
        lanes.store(dnorm + 2 * H + j, dhh_n);
        lanes.store(dh + j, dh_direct + dh_kept);
      } else {
        V da_n, dz, dh_direct;
        cells::gru_cho_candidate_backward(z, n, h, grad_h, da_n, dz, dh_direct);
        lanes.store(da + H + j, dz);
        lanes.store(da + 2 * H + j, da_n);
        lanes.store(dnorm + 2 * H + j, da_n);
        lanes.store(dh + j, dh_direct + dh_kept);
      }
    });
    if (a.reset_after) {
      recurrent_backward(dnorm, gamma, r_hat, rstd[0], G, d_rec);
    } else {
      recurrent_backward(dnorm + 2 * H, gamma + 2 * H, r_hat + 2 * H, rstd[1], H,
                         d_rec + 2 * H);
    }
  }, [&](int64_t b) {  // the state passed through: so does its gradient
    std::fill_n(row<S>(a.grad_gates, t, b, B, G), G, S(0));
    std::fill_n(row<S>(a.grad_norm, t, b, B, G), G, S(0));
    std::fill_n(row<S>(a.grad_recurrent, s, b, B, G), G, S(0));
  });
}

// Reset before, the gates' part, given d (r * h_prev) in a.scratch.
template <class S>
void gru_cho_gates_backward_rows(const LayerNormGruBackwardArgs& a, int64_t s, int64_t t) {
  const int64_t B = a.B, H = a.H, G = 3 * H;
  const S* gamma = static_cast<const S*>(a.gamma_hh);
  for_each_row<S>(a, t, [&](int64_t b) {
    S* dh = row<S>(a.dh, 0, b, B, H);
    const S* d_reset_h = row<S>(a.scratch, 0, b, B, H);
    const S* h_prev = row<S>(a.hs, s, b, B, H);
    const S* gate = row<S>(a.gates, t, b, B, G);
    S* da = row<S>(a.grad_gates, t, b, B, G);
    S* dnorm = row<S>(a.grad_norm, t, b, B, G);
    for_each_lane<S>(0, H, [&](auto lanes, int64_t j) {
      using V = typename decltype(lanes)::V;
      V da_r, da_z, dh_from_reset;
      cells::gru_cho_gates_backward(lanes.load(gate + j), lanes.load(gate + H + j),
                                    lanes.load(h_prev + j), lanes.load(d_reset_h + j),
                                    lanes.load(da + H + j), da_r, da_z, dh_from_reset);
      lanes.store(da + j, da_r);
      lanes.store(da + H + j, da_z);
      lanes.store(dnorm + j, da_r);
      lanes.store(dnorm + H + j, da_z);
      lanes.store(dh + j, lanes.load(dh + j) + dh_from_reset);
    });
    recurrent_backward(dnorm, gamma, row<S>(a.recurrent_hat, t, b, B, G),
                       row<S>(a.rstd, t, b, B, 2)[0], 2 * H, row<S>(a.grad_recurrent, s, b, B, G));
  }, [](int64_t) {});
}

template <class S>
void gru_forward_sequence(const LayerNormGruForwardArgs& a) {
  const int64_t H = a.H, G = 3 * H;
  const S* w_hh = static_cast<const S*>(a.w_hh);
  CpuDevice device;
  // the reset-before form multiplies W_hn apart from W_hr and W_hz
  device.prepare<S>(a.T, a.B, {{a.w_hh, G, H, a.reset_after ? 1 : 3}});
  for (int64_t s = 0; s < a.T; ++s) {
    const int64_t t = time_of(s, a.T, a.reverse);
    const S* h_prev = row<S>(a.hs, a.state_at(s), 0, a.B, H);
    if (a.reset_after) {
      device.gemm(false, true, a.B, G, H, h_prev, H, w_hh, H, 0.0, a.recurrent, G, true);
      gru_forward_rows<S>(a, s, t);
      continue;
    }
    device.gemm(false, true, a.B, 2 * H, H, h_prev, H, w_hh, H, 0.0, a.recurrent, G, true);
    gru_cho_gates_rows<S>(a, s, t);
    device.gemm(false, true, a.B, H, H, row<S>(a.reset_h, a.saved_at(s), 0, a.B, H), H, w_hh + 2 * H * H,
                H, 0.0, static_cast<S*>(a.recurrent) + 2 * H, G, true);
    gru_cho_candidate_rows<S>(a, s, t);
  }
}

template <class S>
void gru_backward_sequence(const LayerNormGruBackwardArgs& a) {
  const int64_t H = a.H, G = 3 * H;
  const S* w_hh = static_cast<const S*>(a.w_hh);
  CpuDevice device;
  device.prepare<S>(a.T, a.B, {{a.w_hh, G, H, 1}}, /*transposed_b=*/false);
  for (int64_t s = a.T - 1; s >= 0; --s) {
    const int64_t t = time_of(s, a.T, a.reverse);
    const S* d_rec = row<S>(a.grad_recurrent, s, 0, a.B, G);
    gru_backward_rows<S>(a, s, t);
    if (!a.reset_after) {  // d (r * h_prev) = d_rec_n W_hn, then the gates' part
      device.gemm(false, false, a.B, H, H, d_rec + 2 * H, G, w_hh + 2 * H * H, H, 0.0,
                  a.scratch, H, true);
      gru_cho_gates_backward_rows<S>(a, s, t);
    }
    // dh_prev += d_rec W_hh (the r,z part alone before the reset); finished rows' d_rec is
    // 0, so their dh passes through
    device.gemm(false, false, a.B, H, a.reset_after ? G : 2 * H, d_rec, G, w_hh, H, 1.0, a.dh,
                H, true);
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

void layernorm_gru_forward(const LayerNormGruForwardArgs& args) {
  if (args.float64) {
    layernorm::gru_forward_sequence<double>(args);
  } else {
    layernorm::gru_forward_sequence<float>(args);
  }
}

void layernorm_gru_backward(const LayerNormGruBackwardArgs& args) {
  if (args.float64) {
    layernorm::gru_backward_sequence<double>(args);
  } else {
    layernorm::gru_backward_sequence<float>(args);
  }
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
