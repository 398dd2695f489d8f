// SIMD overloads of the cell activations, and a row loop that runs a cell formula on full
// vectors and then on the scalar tail. Include this (not the cell headers directly) from CPU
// code: the overloads must be declared before the cell templates that call them. Compiled
// once per SIMD level (kernels.h): the overloads take that level's Vectorized type, the rest
// lives in the level's namespace.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

#include "cells/common.h"

namespace fastrnn {
namespace cells {

template <class T>
inline at::vec::Vectorized<T> sigmoid(at::vec::Vectorized<T> x) {
  const at::vec::Vectorized<T> one(T(1));
  return one / (one + x.neg().exp());
}
template <class T>
inline at::vec::Vectorized<T> tanh_act(at::vec::Vectorized<T> x) {
  return x.tanh();
}
// float32 (and the bf16 layers, which compute in float): tanh as a rational function
// fitted for fastrnn, x P(x^2) / Q(x^2) on [-9, 9] (beyond, tanh rounds to +-1), at most
// 8.3e-7 relative error (about 7 ulp; Sleef's tanhf, 1 ulp, took three times as long), and
// the sigmoid through it, 1/2 + tanh(x/2)/2 (absolute error at most 5e-7). The LSTM
// forward's five activations per unit measured 15 of its 101 ms with Sleef's functions.
// float64 keeps the exact ones above. NaN propagates: clamp keeps a NaN operand.
inline at::vec::Vectorized<float> tanh_act(at::vec::Vectorized<float> x) {
  using V = at::vec::Vectorized<float>;
  const V limit(9.0f);
  const V c = at::vec::clamp(x, V(-9.0f), limit);
  const V t = c * c;
  V p = at::vec::fmadd(V(-5.047785606e-09f), t, V(6.514938040e-06f));
  p = at::vec::fmadd(p, t, V(2.606728880e-03f));
  p = at::vec::fmadd(p, t, V(1.262290594e-01f));
  p = at::vec::fmadd(p, t, V(9.999994411e-01f));
  V q = at::vec::fmadd(V(1.854130185e-04f), t, V(2.246467205e-02f));
  q = at::vec::fmadd(q, t, V(4.595582537e-01f));
  q = at::vec::fmadd(q, t, V(1.0f));
  // saturated lanes are exactly +-1 (c * (1/9) rounds to it), so that the sigmoid of
  // +-inf is exactly 1 and 0 as torch's (0 * inf then stays NaN, as in torch.nn); below
  // -18 the sigmoid is 0 where torch's is under 1.6e-8
  return V::blendv(c * p / q, c * V(1.0f / 9.0f), c.abs() == limit);
}
inline at::vec::Vectorized<float> sigmoid(at::vec::Vectorized<float> x) {
  const at::vec::Vectorized<float> half(0.5f);
  return at::vec::fmadd(half, tanh_act(half * x), half);
}
template <class T>
inline at::vec::Vectorized<T> relu_act(at::vec::Vectorized<T> x) {
  return at::vec::maximum(x, at::vec::Vectorized<T>(T(0)));
}
template <class T>
inline at::vec::Vectorized<T> relu_grad(at::vec::Vectorized<T> y, at::vec::Vectorized<T> dy) {
  const at::vec::Vectorized<T> zero(T(0));
  return at::vec::Vectorized<T>::blendv(dy, zero, y <= zero);  // as the scalar relu_grad
}

}  // namespace cells
}  // namespace fastrnn

#include "cells/gru.h"
#include "cells/layernorm_lstm.h"
#include "cells/lstm.h"
#include "cells/rnn.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {

// Loads and stores for a whole SIMD vector of scalar_t, the arithmetic type; bfloat16
// memory (the storage of the bf16 layers) is widened on load and rounded to nearest even
// on store, so the cell formulas run in scalar_t (float) whatever the storage...
template <class scalar_t>
struct VectorLanes {
  using V = at::vec::Vectorized<scalar_t>;
  static V load(const scalar_t* p) { return V::loadu(p); }
  static void store(scalar_t* p, V v) { v.store(p); }
  static V load(const c10::BFloat16* p) {
    static_assert(std::is_same_v<scalar_t, float>, "bfloat16 memory is read as float");
    V v;
    at::vec::load_to_float(p, v);
    return v;
  }
  static void store(c10::BFloat16* p, V v) {
    static_assert(std::is_same_v<scalar_t, float>, "bfloat16 memory is written from float");
    at::vec::convert_from_float<c10::BFloat16>(v, v).store(p, V::size());
  }
};
// ...and for the one element of the tail.
template <class scalar_t>
struct ScalarLane {
  using V = scalar_t;
  static V load(const scalar_t* p) { return *p; }
  static void store(scalar_t* p, V v) { *p = v; }
  static V load(const c10::BFloat16* p) { return static_cast<scalar_t>(*p); }
  static void store(c10::BFloat16* p, V v) { *p = c10::BFloat16(static_cast<float>(v)); }
};

// Calls body(lanes, j) for j in [begin, end): with VectorLanes on full vectors, then with
// ScalarLane on what is left. `body` is a generic lambda, so the same formula serves both.
template <class scalar_t, class Body>
inline void for_each_lane(int64_t begin, int64_t end, const Body& body) {
  constexpr int64_t width = at::vec::Vectorized<scalar_t>::size();
  int64_t j = begin;
  for (; j + width <= end; j += width) body(VectorLanes<scalar_t>{}, j);
  for (; j < end; ++j) body(ScalarLane<scalar_t>{}, j);
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
