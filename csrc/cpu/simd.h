// SIMD overloads of the cell activations, and a row loop that runs a cell formula on full
// vectors and then on the scalar tail. Include this (not the cell headers directly) from CPU
// code: the overloads must be declared before the cell templates that call them. Compiled
// once per SIMD level (kernels.h): the overloads take that level's Vectorized type, the rest
// lives in the level's namespace.
#pragma once

#include <ATen/cpu/vec/vec.h>

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
#include "cells/lstm.h"
#include "cells/rnn.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {

// Loads and stores for a whole SIMD vector of scalar_t...
template <class scalar_t>
struct VectorLanes {
  using V = at::vec::Vectorized<scalar_t>;
  static V load(const scalar_t* p) { return V::loadu(p); }
  static void store(scalar_t* p, V v) { v.store(p); }
};
// ...and for the one element of the tail.
template <class scalar_t>
struct ScalarLane {
  using V = scalar_t;
  static V load(const scalar_t* p) { return *p; }
  static void store(scalar_t* p, V v) { *p = v; }
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
