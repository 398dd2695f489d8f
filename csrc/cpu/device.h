// The CPU as a Device of the shared sequence templates (../sequence/): GEMMs with the
// columns split over the threads (brgemm, a GEMV for a single row, the BLAS otherwise), and
// each point-wise step as one parallel pass over rows and column blocks, the cell formulas
// (../cells/) on SIMD vectors with a scalar tail.
// Storage type T and accumulation type A: float/float, double/double, or bfloat16/float
// (bf16 inputs, outputs, weights and saved states; float32 gates, cell state, state
// gradients and GEMM accumulation, as torch.nn's oneDNN layers do). Compiled once per SIMD
// level, in that level's namespace (kernels.h).
#pragma once

#include <array>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "steps.h"
#include "blas.h"
#include "brgemm.h"
#include "gemv.h"
#include "simd.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {

// A weight W [rows, cols] (row-major) of a walk. Its forward products multiply W^T whole,
// or (the reset-before GRU) some of its `segments` equal ranges of rows apart: packed
// blocks then never straddle two of them.
struct WeightShape {
  const void* data;
  int64_t rows, cols, segments;
};

struct CpuDevice {
  // The weights as the walk's products read them (W^T forward, W backward), packed by
  // prepare() into column blocks (brgemm.h), float32 or bf16 (VNNI).
  std::vector<PackedWeight<float>> packed_float;
  std::vector<PackedWeight<c10::BFloat16>> packed_bf16;
  // float32 product of a bf16 GEMM whose C is bf16 (the LSTM's projected state).
  mutable std::vector<float> bf16_scratch;

  // W^T of each float32 weight that a backward walk at batch 1 multiplies (prepare()): its
  // single-row products x W become dot products with W^T's rows (gemv.h), which read the
  // weight at 2-3x the rate of the BLAS's GEMV here.
  struct TransposedWeight {
    const float* weight;
    int64_t rows, cols;
    at::Tensor transposed;  // [cols, rows]
  };
  std::vector<TransposedWeight> transposed_float;

  template <class T, class Self>
  static auto& packed(Self& self) {
    if constexpr (std::is_same_v<T, float>) {
      return self.packed_float;
    } else {
      return self.packed_bf16;
    }
  }

  // Called by the entry points before the walk: packs the weights that the walk's `steps`
  // GEMMs of `rows` rows read as their B, W^T in the forward (`transposed_b`), W in the
  // backward, for float32 (when brgemm is there) and bfloat16 (when its micro-kernel runs
  // here; a weight whose K is odd is left to the widened product).
  template <class T>
  void prepare(int64_t steps, int64_t rows, std::initializer_list<WeightShape> weights,
               bool transposed_b = true) {
    constexpr bool bf16 = std::is_same_v<T, c10::BFloat16>;
    if constexpr (std::is_same_v<T, float>) {
      if (steps < kPackMinSteps) return;  // one step: see kPackMinSteps
      if (rows < kBrgemmMinRows && !transposed_b) {  // a single row: see TransposedWeight
        for (const WeightShape& w : weights) {
          if (w.data == nullptr) continue;
          at::Tensor wt = new_buffer({w.cols, w.rows}, at::TensorOptions().dtype(at::kFloat));
          transpose(static_cast<const float*>(w.data), w.rows, w.cols, w.cols,
                    wt.data_ptr<float>());
          transposed_float.push_back({static_cast<const float*>(w.data), w.rows, w.cols, wt});
        }
        return;
      }
    }
    if constexpr (std::is_same_v<T, float> || bf16) {
      // a single row: float32 products go to the GEMV or the BLAS (faster than brgemm
      // there), bf16 forward ones to the GEMV; the bf16 backward still needs its packing
      if ((rows < kBrgemmMinRows && (transposed_b || !bf16)) ||
          (bf16 ? !brgemm_bf16_usable() : !kHaveBrgemm)) {
        return;
      }
      for (const WeightShape& w : weights) {
        if (w.data == nullptr || (bf16 && (transposed_b ? w.cols : w.rows) % 2 != 0)) continue;
        const int64_t segment = transposed_b ? w.rows / w.segments : w.cols;
        const bool streamed = !bf16 && rows <= kNarrowBlockMaxRows &&
                              w.rows * w.cols * int64_t{sizeof(T)} >= kNarrowBlockMinBytes;
        packed<T>(*this).push_back(PackedWeight<T>::pack(static_cast<const T*>(w.data), w.rows,
                                                         w.cols, transposed_b, segment,
                                                         streamed ? kNarrowBlock : 0));
      }
    }
  }

  // C (+)= A op(B) through a packed weight; false when B is none of them.
  template <class T>
  bool multiply_packed(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* b,
                       int64_t ldb, bool trans_b, bool accumulate, float* c,
                       int64_t ldc) const {
    for (const auto& w : packed<T>(*this)) {
      int64_t k0 = 0, n0 = 0;
      if (w.find(b, ldb, trans_b, K, N, &k0, &n0)) {
        w.multiply(M, N, K, a, lda, k0, n0, accumulate, c, ldc);
        return true;
      }
    }
    return false;
  }

  // c (+)= a B for a single row a, B [K, N] (ldb) a piece of a weight transposed by
  // prepare(): rows k0.. and columns n0.. of W are columns k0.. and rows n0.. of W^T.
  // False when B is no such piece.
  bool multiply_transposed(int64_t N, int64_t K, const float* a, const float* b, int64_t ldb,
                           bool accumulate, float* c) const {
    for (const TransposedWeight& w : transposed_float) {
      if (ldb != w.cols || b < w.weight || b >= w.weight + w.rows * w.cols) continue;
      const int64_t k0 = (b - w.weight) / w.cols, n0 = (b - w.weight) % w.cols;
      if (k0 + K > w.rows || n0 + N > w.cols) continue;
      gemv_rows<float>(N, K, w.transposed.data_ptr<float>() + n0 * w.rows + k0, w.rows, a, c,
                       accumulate);
      return true;
    }
    return false;
  }

  // C = op(A) op(B) + beta C, with beta 0 or 1. C is of the accumulation type when c_acc
  // (float for bfloat16), else of the storage type; on the CPU float32 and float64 are
  // their own accumulation types.
  // A single row times a weight used transposed (every forward product at batch 1), or
  // times a weight of which prepare() made W^T (the backward's at batch 1), is a row of
  // dot products (gemv.h); other float32 products of two rows or more with a
  // packed weight go through brgemm, the rest through the BLAS. bfloat16: gemm_bf16.
  template <class T>
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* a,
            int64_t lda, const T* b, int64_t ldb, double beta, void* c, int64_t ldc,
            bool c_acc) const {
    if (M == 0 || N == 0) return;  // e.g. no packed sequence still running at this step
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      gemm_bf16(trans_a, trans_b, M, N, K, a, lda, b, ldb, beta != 0.0, c, ldc, c_acc);
      return;
    } else {
      if (M == 1 && !trans_a && trans_b && (beta == 0.0 || beta == 1.0)) {
        gemv_rows<T>(N, K, b, ldb, a, static_cast<T*>(c), beta == 1.0);
        return;
      }
      if constexpr (std::is_same_v<T, float>) {
        if (M == 1 && !trans_a && !trans_b && (beta == 0.0 || beta == 1.0) &&
            multiply_transposed(N, K, a, b, ldb, beta == 1.0, static_cast<float*>(c))) {
          return;
        }
        if (!trans_a && M >= kBrgemmMinRows && (beta == 0.0 || beta == 1.0) &&
            multiply_packed(M, N, K, a, lda, b, ldb, trans_b, beta == 1.0,
                            static_cast<float*>(c), ldc)) {
          return;
        }
      }
      cpu::gemm<T>(trans_a, trans_b, M, N, K, a, lda, b, ldb, T(beta), static_cast<T*>(c),
                   ldc);
    }
  }

  // bfloat16 operands, float32 accumulation: a single row times a weight used transposed
  // as dot products (gemv.h); else oneDNN's bf16 micro-kernel on a packed weight (into a
  // float32 scratch when C is bf16: the LSTM's projected state), or widened to float32
  // where it cannot run (see gemm_bf16_widened).
  void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 const c10::BFloat16* a, int64_t lda, const c10::BFloat16* b, int64_t ldb,
                 bool accumulate, void* c, int64_t ldc, bool c_float) const {
    if (M == 1 && !trans_a && trans_b) {
      if (c_float) {
        gemv_rows<float>(N, K, b, ldb, a, static_cast<float*>(c), accumulate);
      } else {
        gemv_rows<float>(N, K, b, ldb, a, static_cast<c10::BFloat16*>(c), accumulate);
      }
      return;
    }
    if (!trans_a && c_float &&
        multiply_packed(M, N, K, a, lda, b, ldb, trans_b, accumulate, static_cast<float*>(c),
                        ldc)) {
      return;
    }
    if (!trans_a && !c_float && !accumulate) {  // accumulating into bf16: not used by walks
      bf16_scratch.resize(M * N);  // allocated at the first step, reused by the others
      if (multiply_packed(M, N, K, a, lda, b, ldb, trans_b, false, bf16_scratch.data(), N)) {
        for (int64_t i = 0; i < M; ++i) {
          copy_span(static_cast<c10::BFloat16*>(c) + i * ldc, bf16_scratch.data() + i * N, N);
        }
        return;
      }
    }
    gemm_bf16_widened(trans_a, trans_b, M, N, K, a, lda, b, ldb, accumulate, c, ldc, c_float);
  }

  // Zoneout's keep weight at element i (steps.h): the mask's values, or p for every unit.
  template <class Lanes, class T>
  static auto keep_weight(Lanes lanes, const Zoneout<T>& z, int64_t i) {
    using V = typename Lanes::V;
    return z.mask != nullptr ? lanes.load(z.mask + i) : V(z.p);
  }

  // v as memory of type T holds it (bfloat16 rounds; float and double are exact).
  template <class T, class Lanes, class V>
  static V stored_as(Lanes lanes, V v) {
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      T memory[sizeof(V) / sizeof(float)];
      lanes.store(memory, v);
      return lanes.load(static_cast<const T*>(memory));
    } else {
      return v;
    }
  }

  // dh += grad_output[t] on the rows still running at t. [B, width]
  template <class T, class A>
  void add_output_grad(const StepInfo& s, int64_t width, const T* grad_output_t, A* dh) const {
    const LengthMask mask{s.lengths};
    parallel_rows(s.B, width, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, s.t)) return;
      A* d = dh + b * width;
      const T* g = grad_output_t + b * width;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        lanes.store(d + j, lanes.load(d + j) + lanes.load(g + j));
      });
    });
  }

  // ---- LSTM
  // An LSTM cell costs five activations: its steps split over the threads from 2048 units
  // on (T=2048, B=16, H=256, 4096 units: the cells 6.8 us of a 25 us step on one thread;
  // the layer's forward 70 against 74-77 ms in two halves).
  static constexpr int64_t kLstmCellsPerTask = 2048;
  template <class T, class A>
  void lstm_forward_step(const LstmForwardStep<T, A>& a) const {
    const int64_t H = a.step.H, G = 4 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t e = b * H, n = j1 - j0;
      if (!mask.active(b, a.step.t)) {  // finished sequence: keep the state, write zeros
        copy_span(a.c_next + e + j0, a.c_prev + e + j0, n);
        if (a.cells_out != nullptr) zero_span(a.cells_out + e + j0, n);
        if (a.proj_in != nullptr) {
          zero_span(a.proj_in + e + j0, n);
        } else {
          copy_span(a.h_next + e + j0, a.h_prev + e + j0, n);
          zero_span(a.out + e + j0, n);
        }
        return;
      }
      A* g = a.gates + b * G;
      const T* x = a.x + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        auto pre = [&](int64_t gate) {
          const V v = lanes.load(g + gate * H + j) + lanes.load(x + gate * H + j);
          return a.bias == nullptr ? v : v + lanes.load(a.bias + gate * H + j);
        };
        const V c_prev = lanes.load(a.c_prev + e + j);
        V i, f, gg, o, c, h;
        cells::lstm_forward(pre(0), pre(1), pre(2), pre(3), c_prev, i, f, gg, o, c, h);
        if (a.zoneout_c.on()) {
          c = cells::zoneout(keep_weight(lanes, a.zoneout_c, e + j), c_prev, c);
        }
        if (a.zoneout_h.on()) {
          h = cells::zoneout(keep_weight(lanes, a.zoneout_h, e + j), lanes.load(a.h_prev + e + j),
                             h);
        }
        if (a.save) {  // inference skips these stores: a quarter of the step's traffic
          lanes.store(g + j, i);
          lanes.store(g + H + j, f);
          lanes.store(g + 2 * H + j, gg);
          lanes.store(g + 3 * H + j, o);
        }
        lanes.store(a.c_next + e + j, c);
        if (a.cells_out != nullptr) lanes.store(a.cells_out + e + j, c);
        if (a.proj_in != nullptr) {
          lanes.store(a.proj_in + e + j, h);
        } else {
          lanes.store(a.h_next + e + j, h);
          lanes.store(a.out + e + j, h);
        }
      });
    }, kLstmCellsPerTask);
  }

  // After the projection GEMM: finished rows keep h_prev; out = active ? h_next : 0, h_next
  // zoned out first where zoneout is on. [B, P]
  template <class T>
  void mask_projected_state(const StepInfo& s, int64_t P, const T* h_prev, T* h_next,
                            T* out, const Zoneout<T>& zoneout_h) const {
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const LengthMask mask{s.lengths};
    for (int64_t b = 0; b < s.B; ++b) {
      if (mask.active(b, s.t)) {
        if (zoneout_h.on()) {
          for_each_lane<A>(b * P, (b + 1) * P, [&](auto lanes, int64_t e) {
            lanes.store(h_next + e, cells::zoneout(keep_weight(lanes, zoneout_h, e),
                                                   lanes.load(h_prev + e),
                                                   lanes.load(h_next + e)));
          });
        }
        copy_span(out + b * P, h_next + b * P, P);
      } else {
        copy_span(h_next + b * P, h_prev + b * P, P);
        zero_span(out + b * P, P);
      }
    }
  }

  template <class T, class A>
  void lstm_backward_step(const LstmBackwardStep<T, A>& a) const {
    const int64_t H = a.step.H, G = 4 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      T* dg = a.dgates + b * G;
      if (!mask.active(b, a.step.t)) {  // the state passed through: so does its gradient
        for (int64_t gate = 0; gate < 4; ++gate) zero_span(dg + gate * H + j0, j1 - j0);
        return;
      }
      const A* g = a.gates + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const int64_t e = b * H + j;
        const V i = lanes.load(g + j), f = lanes.load(g + H + j);
        const V gg = lanes.load(g + 2 * H + j), o = lanes.load(g + 3 * H + j);
        const V c_prev = lanes.load(a.c_prev + e);
        // zoneout: the cell's own new state, and the shares of the gradients that reach it
        V c = lanes.load(a.c_next + e), dh = lanes.load(a.dh_cell + e);
        V dc = lanes.load(a.dc + e);
        V keep_c(A(0)), keep_h(A(0));
        if (a.zoneout_c.on()) {
          keep_c = keep_weight(lanes, a.zoneout_c, e);
          c = f * c_prev + i * gg;  // as lstm_forward computed it
          dc = (V(A(1)) - keep_c) * dc;
        }
        if (a.zoneout_h.on()) {
          keep_h = keep_weight(lanes, a.zoneout_h, e);
          dh = (V(A(1)) - keep_h) * dh;
        }
        V da_i, da_f, da_g, da_o, dc_prev;
        cells::lstm_backward(i, f, gg, o, c_prev, c, dh, dc, da_i, da_f, da_g, da_o, dc_prev);
        lanes.store(dg + j, da_i);
        lanes.store(dg + H + j, da_f);
        lanes.store(dg + 2 * H + j, da_g);
        lanes.store(dg + 3 * H + j, da_o);
        if (a.zoneout_c.on()) dc_prev = dc_prev + keep_c * lanes.load(a.dc + e);
        lanes.store(a.dc + e, dc_prev);
        // without a projection dh is this step's own: zeroed for the GEMM to add to, but for
        // the share zoneout passes straight to h_prev
        if (a.zero_dh) {
          lanes.store(a.dh + e, a.zoneout_h.on() ? keep_h * lanes.load(a.dh + e) : V(A(0)));
        }
      });
    }, kLstmCellsPerTask);
  }

  // With a projection: dproj = active ? dh : 0, then dh = active ? 0 : dh; with zoneout of
  // h, dproj = (1 - keep) dh and dh = keep dh on active rows. [B, P]
  template <class T, class A>
  void split_projection_grad(const StepInfo& s, int64_t P, A* dh, T* dproj,
                             const Zoneout<T>& zoneout_h) const {
    const LengthMask mask{s.lengths};
    for (int64_t b = 0; b < s.B; ++b) {
      if (mask.active(b, s.t) && zoneout_h.on()) {
        for_each_lane<A>(b * P, (b + 1) * P, [&](auto lanes, int64_t e) {
          using V = typename decltype(lanes)::V;
          const V keep = keep_weight(lanes, zoneout_h, e), d = lanes.load(dh + e);
          lanes.store(dproj + e, (V(A(1)) - keep) * d);
          lanes.store(dh + e, keep * d);
        });
      } else if (mask.active(b, s.t)) {
        copy_span(dproj + b * P, dh + b * P, P);
        zero_span(dh + b * P, P);
      } else {
        zero_span(dproj + b * P, P);
      }
    }
  }

  // ---- GRU
  // Rows of a finished sequence keep the state and write zeros (r * h = 0 too, so no stale
  // value reaches the weight-gradient GEMM); the first reset-before phase only zeroes extra.
  template <class T, class A>
  static void gru_finished_row(const GruForwardStep<T, A>& a, int64_t b, int64_t j0,
                               int64_t j1, bool final_phase) {
    const int64_t e = b * a.step.H + j0, n = j1 - j0;
    zero_span(a.extra + e, n);
    if (final_phase) {
      copy_span(a.h_next + e, a.h_prev + e, n);
      zero_span(a.out + e, n);
    }
  }

  template <class T, class A>
  void gru_forward_step(const GruForwardStep<T, A>& a) const {  // reset after
    const int64_t H = a.step.H, G = 3 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, a.step.t)) return gru_finished_row(a, b, j0, j1, true);
      A* g = a.gates + b * G;
      const T* x = a.x + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        auto with_bias = [&](V v, int64_t gate) {
          return a.bias == nullptr ? v : v + lanes.load(a.bias + gate * H + j);
        };
        const int64_t e = b * H + j;
        const V a_r = with_bias(lanes.load(g + j) + lanes.load(x + j), 0);
        const V a_z = with_bias(lanes.load(g + H + j) + lanes.load(x + H + j), 1);
        const V hh_n = with_bias(lanes.load(g + 2 * H + j), 2);
        const V h_prev = lanes.load(a.h_prev + e);
        V r, z, n, h;
        cells::gru_forward(a_r, a_z, lanes.load(x + 2 * H + j), hh_n, h_prev, r, z, n, h);
        if (a.zoneout_h.on()) h = cells::zoneout(keep_weight(lanes, a.zoneout_h, e), h_prev, h);
        if (a.save) {
          lanes.store(g + j, r);
          lanes.store(g + H + j, z);
          lanes.store(g + 2 * H + j, n);
          lanes.store(a.extra + e, hh_n);
        }
        lanes.store(a.h_next + e, h);
        lanes.store(a.out + e, h);
      });
    });
  }

  template <class T, class A>
  void gru_cho_gates_step(const GruForwardStep<T, A>& a) const {  // reset before, phase 1
    const int64_t H = a.step.H, G = 3 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, a.step.t)) return gru_finished_row(a, b, j0, j1, false);
      A* g = a.gates + b * G;
      const T* x = a.x + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V a_r = lanes.load(g + j) + lanes.load(x + j);
        V a_z = lanes.load(g + H + j) + lanes.load(x + H + j);
        if (a.bias != nullptr) {
          a_r = a_r + lanes.load(a.bias + j);
          a_z = a_z + lanes.load(a.bias + H + j);
        }
        V r, z, reset_h;
        cells::gru_cho_gates(a_r, a_z, lanes.load(a.h_prev + b * H + j), r, z, reset_h);
        lanes.store(g + j, r);
        lanes.store(g + H + j, z);
        lanes.store(a.extra + b * H + j, reset_h);
      });
    });
  }

  template <class T, class A>
  void gru_cho_candidate_step(const GruForwardStep<T, A>& a) const {  // reset before, phase 2
    const int64_t H = a.step.H, G = 3 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, a.step.t)) return gru_finished_row(a, b, j0, j1, true);
      A* g = a.gates + b * G;
      const T* x = a.x + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const int64_t e = b * H + j;
        V a_n = lanes.load(g + 2 * H + j) + lanes.load(x + 2 * H + j);
        if (a.bias != nullptr) a_n = a_n + lanes.load(a.bias + 2 * H + j);
        const V h_prev = lanes.load(a.h_prev + e);
        V n, h;
        cells::gru_cho_candidate(a_n, lanes.load(g + H + j), h_prev, n, h);
        if (a.zoneout_h.on()) h = cells::zoneout(keep_weight(lanes, a.zoneout_h, e), h_prev, h);
        lanes.store(g + 2 * H + j, n);
        lanes.store(a.h_next + e, h);
        lanes.store(a.out + e, h);
      });
    });
  }

  // Finished rows: zero gate gradients; dh passes through unchanged.
  template <class T, class A>
  static void gru_finished_backward_row(const GruBackwardStep<T, A>& a, int64_t b, int64_t j0,
                                        int64_t j1) {
    const int64_t H = a.step.H, G = 3 * H;
    for (int64_t gate = 0; gate < 3; ++gate) {
      zero_span(a.dgates + b * G + gate * H + j0, j1 - j0);
    }
    if (a.dhh_n != nullptr) zero_span(a.dhh_n + b * H + j0, j1 - j0);
  }

  template <class T, class A>
  void gru_backward_step(const GruBackwardStep<T, A>& a) const {  // reset after
    const int64_t H = a.step.H, G = 3 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, a.step.t)) return gru_finished_backward_row(a, b, j0, j1);
      const A* g = a.gates + b * G;
      T* dg = a.dgates + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const int64_t e = b * H + j;
        // zoneout: (1 - keep) of dh reaches the cell, keep goes straight to h_prev
        const V dh = lanes.load(a.dh + e);
        const V keep = a.zoneout_h.on() ? keep_weight(lanes, a.zoneout_h, e) : V(A(0));
        V da_r, da_z, dx_n, dhh_n, dh_direct;
        cells::gru_backward(lanes.load(g + j), lanes.load(g + H + j),
                            lanes.load(g + 2 * H + j), lanes.load(a.extra + e),
                            lanes.load(a.h_prev + e), (V(A(1)) - keep) * dh,
                            da_r, da_z, dx_n, dhh_n, dh_direct);
        if (a.zoneout_h.on()) dh_direct = dh_direct + keep * dh;
        lanes.store(dg + j, da_r);
        lanes.store(dg + H + j, da_z);
        lanes.store(dg + 2 * H + j, dx_n);
        lanes.store(a.dhh_n + e, dhh_n);
        lanes.store(a.dh + e, dh_direct);
      });
    });
  }

  template <class T, class A>
  void gru_cho_candidate_backward_step(const GruBackwardStep<T, A>& a) const {
    const int64_t H = a.step.H, G = 3 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, a.step.t)) return gru_finished_backward_row(a, b, j0, j1);
      const A* g = a.gates + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const int64_t e = b * H + j;
        const V dh = lanes.load(a.dh + e);
        const V keep = a.zoneout_h.on() ? keep_weight(lanes, a.zoneout_h, e) : V(A(0));
        V da_n, dz, dh_direct;
        cells::gru_cho_candidate_backward(lanes.load(g + H + j), lanes.load(g + 2 * H + j),
                                          lanes.load(a.h_prev + e), (V(A(1)) - keep) * dh,
                                          da_n, dz, dh_direct);
        if (a.zoneout_h.on()) dh_direct = dh_direct + keep * dh;
        lanes.store(a.dgates + b * G + 2 * H + j, da_n);
        lanes.store(a.dz + e, dz);
        lanes.store(a.dh + e, dh_direct);
      });
    });
  }

  template <class T, class A>
  void gru_cho_gates_backward_step(const GruBackwardStep<T, A>& a) const {
    const int64_t H = a.step.H, G = 3 * H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      if (!mask.active(b, a.step.t)) return;
      const A* g = a.gates + b * G;
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const int64_t e = b * H + j;
        V da_r, da_z, dh_from_reset;
        cells::gru_cho_gates_backward(lanes.load(g + j), lanes.load(g + H + j),
                                      lanes.load(a.h_prev + e), lanes.load(a.d_reset_h + e),
                                      lanes.load(a.dz + e), da_r, da_z, dh_from_reset);
        lanes.store(a.dgates + b * G + j, da_r);
        lanes.store(a.dgates + b * G + H + j, da_z);
        lanes.store(a.dh + e, lanes.load(a.dh + e) + dh_from_reset);
      });
    });
  }

  // ---- Elman RNN
  template <class T, class A>
  void rnn_forward_step(const RnnForwardStep<T, A>& a) const {
    a.relu ? rnn_forward_with<true>(a) : rnn_forward_with<false>(a);
  }
  template <bool Relu, class T, class A>
  void rnn_forward_with(const RnnForwardStep<T, A>& a) const {
    const int64_t H = a.step.H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t e = b * H;
      if (!mask.active(b, a.step.t)) {
        copy_span(a.h_next + e + j0, a.h_prev + e + j0, j1 - j0);
        zero_span(a.out + e + j0, j1 - j0);
        return;
      }
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        V pre = lanes.load(a.recurrent + e + j) + lanes.load(a.x + e + j);
        if (a.bias != nullptr) pre = pre + lanes.load(a.bias + j);
        V h = cells::rnn_forward<Relu>(pre);
        if (a.zoneout_h.on()) {
          h = cells::zoneout(keep_weight(lanes, a.zoneout_h, e + j), lanes.load(a.h_prev + e + j),
                             h);
        }
        lanes.store(a.h_next + e + j, h);
        lanes.store(a.out + e + j, h);
      });
    });
  }

  template <class T, class A>
  void rnn_backward_step(const RnnBackwardStep<T, A>& a) const {
    a.relu ? rnn_backward_with<true>(a) : rnn_backward_with<false>(a);
  }
  template <bool Relu, class T, class A>
  void rnn_backward_with(const RnnBackwardStep<T, A>& a) const {
    const int64_t H = a.step.H;
    const LengthMask mask{a.step.lengths};
    parallel_rows(a.step.B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t e = b * H;
      if (!mask.active(b, a.step.t)) return zero_span(a.dgates + e + j0, j1 - j0);
      for_each_lane<A>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        const V h = lanes.load(a.h_new + e + j), dh = lanes.load(a.dh + e + j);
        if (!a.zoneout_h.on()) {
          lanes.store(a.dgates + e + j, cells::rnn_backward<Relu>(h, dh));
          lanes.store(a.dh + e + j, V(A(0)));
          return;
        }
        const V keep = keep_weight(lanes, a.zoneout_h, e + j);
        const V h_prev = lanes.load(a.h_prev + e + j);
        const V zeroed = stored_as<T>(lanes, cells::zoneout(keep, h_prev, V(A(0))));
        lanes.store(a.dgates + e + j, cells::rnn_backward_under_zoneout<Relu>(
                                          a.zoneout_h.mask != nullptr, keep, h_prev, h, zeroed,
                                          dh));
        lanes.store(a.dh + e + j, keep * dh);
      });
    });
  }
};

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
