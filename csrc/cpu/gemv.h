// The product of a single row with a weight used transposed, y = W x: every output a dot
// product with one contiguous row of W, four rows at a time so that each load of x serves
// four. At batch 1 (generation, a single sequence) a step is bound by reading the weights;
// measured here (2 Zen 5 cores, W read from L3): 1536x512 20 us, 157 GB/s, against 55 us
// for MKL's GEMV (its AVX2 path on AMD); 2048x512 25 us against 150 us. In bfloat16 it
// reads half the bytes, and needs no packed weight (a generation step is one call per
// layer, which would pack its weights every time). Level code (kernels.h): compiled once
// per SIMD level.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "simd.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {

// Below this many multiply-adds a product runs on one thread: waking the second costs more
// than it saves (batch 1, one thread / two, us per step: LSTM H=64, 16K products, 1.9 / 2.6;
// GRU H=128, 49K, 4.2 / 3.2).
constexpr int64_t kGemvMinParallelProducts = 32768;

// y[n] = W[n, :K] . x (+ y[n] if accumulate) for n < N, summed in T. W and x are stored as
// S (T, or bfloat16 widened to float as it is loaded), y as Y (T, or bfloat16).
template <class T, class S = T, class Y = T>
void gemv_rows(int64_t N, int64_t K, const S* w, int64_t ldw, const S* x, Y* y,
               bool accumulate) {
  using Vec = at::vec::Vectorized<T>;
  using Lanes = VectorLanes<T>;
  constexpr int64_t width = Vec::size(), rows_at_once = 4, rows_per_task = 64;
  auto finish = [&](int64_t n, Vec partial, int64_t k) {  // lanes summed, then the K tail
    T sum = at::vec::vec_reduce_all<T>([](Vec a, Vec b) { return a + b; }, partial);
    for (; k < K; ++k) sum += static_cast<T>(w[n * ldw + k]) * static_cast<T>(x[k]);
    y[n] = static_cast<Y>(accumulate ? static_cast<T>(y[n]) + sum : sum);
  };
  auto dot_rows = [&](int64_t lo, int64_t hi) {
    int64_t n = lo;
    for (; n + rows_at_once <= hi; n += rows_at_once) {
      Vec acc[rows_at_once] = {Vec(T(0)), Vec(T(0)), Vec(T(0)), Vec(T(0))};
      int64_t k = 0;
      for (; k + width <= K; k += width) {
        const Vec xk = Lanes::load(x + k);
        for (int64_t r = 0; r < rows_at_once; ++r) {
          acc[r] = at::vec::fmadd(Lanes::load(w + (n + r) * ldw + k), xk, acc[r]);
        }
      }
      for (int64_t r = 0; r < rows_at_once; ++r) finish(n + r, acc[r], k);
    }
    for (; n < hi; ++n) {
      Vec acc(T(0));
      int64_t k = 0;
      for (; k + width <= K; k += width) {
        acc = at::vec::fmadd(Lanes::load(w + n * ldw + k), Lanes::load(x + k), acc);
      }
      finish(n, acc, k);
    }
  };
  if (N < 2 * rows_per_task || N * K < kGemvMinParallelProducts || at::in_parallel_region()) {
    dot_rows(0, N);
  } else {
    at::parallel_for(0, N, rows_per_task, dot_rows);
  }
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
