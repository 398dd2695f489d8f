// GRU point-wise kernels, both reset forms: the formulas are cells/gru.h.
#include "cells/gru.h"
#include "kernel_utils.cuh"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h
namespace {

// Finished rows keep the state and write zeros (r * h = 0 too, so nothing stale reaches a
// weight-gradient GEMM).
template <class T, class A>
__device__ __forceinline__ bool finished(const GruForwardStep<T, A>& a, int64_t b, int64_t e,
                                         bool final_phase) {
  if (LengthMask{a.step.lengths}.active(b, a.step.t)) return false;
  a.extra[e] = zero<T>();
  if (final_phase) {
    a.h_next[e] = a.h_prev[e];
    a.out[e] = zero<T>();
  }
  return true;
}

// Pre-activations of the reset and update gates: h W_h{r,z}^T (in gates) + x W_i{r,z}^T + b.
template <class T, class A>
__device__ __forceinline__ void reset_update_preacts(const GruForwardStep<T, A>& a,
                                                     const A* g, const T* x, int64_t j,
                                                     A& a_r, A& a_z) {
  const int64_t H = a.step.H;
  a_r = g[j] + A(load(x, j)) + load_or_zero<T, A>(a.bias, j);
  a_z = g[H + j] + A(load(x, H + j)) + load_or_zero<T, A>(a.bias, H + j);
}

template <class T, class A>
__global__ void gru_forward_kernel(GruForwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 3 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (finished(a, b, e, true)) return;
  A* g = a.gates + b * G;
  const T* x = a.x + b * G;
  A a_r, a_z;
  reset_update_preacts(a, g, x, j, a_r, a_z);
  const A hh_n = g[2 * H + j] + load_or_zero<T, A>(a.bias, 2 * H + j);
  const A h_prev = A(load(a.h_prev, e));
  A r, z, n, h;
  cells::gru_forward(a_r, a_z, A(load(x, 2 * H + j)), hh_n, h_prev, r, z, n, h);
  if (a.zoneout_h.on()) h = cells::zoneout(keep_weight<A>(a.zoneout_h, e), h_prev, h);
  g[j] = r;
  g[H + j] = z;
  g[2 * H + j] = n;
  a.extra[e] = from_acc<T>(hh_n);
  a.h_next[e] = from_acc<T>(h);
  a.out[e] = from_acc<T>(h);
}

template <class T, class A>
__global__ void gru_cho_gates_kernel(GruForwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 3 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (finished(a, b, e, false)) return;
  A* g = a.gates + b * G;
  const T* x = a.x + b * G;
  A a_r, a_z;
  reset_update_preacts(a, g, x, j, a_r, a_z);
  A r, z, reset_h;
  cells::gru_cho_gates(a_r, a_z, A(load(a.h_prev, e)), r, z, reset_h);
  g[j] = r;
  g[H + j] = z;
  a.extra[e] = from_acc<T>(reset_h);
}

template <class T, class A>
__global__ void gru_cho_candidate_kernel(GruForwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 3 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (finished(a, b, e, true)) return;
  A* g = a.gates + b * G;
  const A a_n = g[2 * H + j] + A(load(a.x + b * G, 2 * H + j)) +
                load_or_zero<T, A>(a.bias, 2 * H + j);
  const A h_prev = A(load(a.h_prev, e));
  A n, h;
  cells::gru_cho_candidate(a_n, g[H + j], h_prev, n, h);
  if (a.zoneout_h.on()) h = cells::zoneout(keep_weight<A>(a.zoneout_h, e), h_prev, h);
  g[2 * H + j] = n;
  a.h_next[e] = from_acc<T>(h);
  a.out[e] = from_acc<T>(h);
}

// Finished rows: zero gate gradients; dh passes through unchanged.
template <class T, class A>
__device__ __forceinline__ bool finished_backward(const GruBackwardStep<T, A>& a, int64_t b,
                                                  int64_t j) {
  if (LengthMask{a.step.lengths}.active(b, a.step.t)) return false;
  const int64_t H = a.step.H, G = 3 * H;
  for (int gate = 0; gate < 3; ++gate) a.dgates[b * G + gate * H + j] = zero<T>();
  if (a.dhh_n != nullptr) a.dhh_n[b * H + j] = zero<T>();
  return true;
}

template <class T, class A>
__global__ void gru_backward_kernel(GruBackwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 3 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (finished_backward(a, b, j)) return;
  const A* g = a.gates + b * G;
  // zoneout: (1 - keep) of dh reaches the cell, keep goes straight to h_prev
  const A keep = a.zoneout_h.on() ? keep_weight<A>(a.zoneout_h, e) : A(0), dh = a.dh[e];
  A da_r, da_z, dx_n, dhh_n, dh_direct;
  cells::gru_backward(g[j], g[H + j], g[2 * H + j], A(load(a.extra, e)), A(load(a.h_prev, e)),
                      (A(1) - keep) * dh, da_r, da_z, dx_n, dhh_n, dh_direct);
  if (a.zoneout_h.on()) dh_direct += keep * dh;
  T* dg = a.dgates + b * G;
  dg[j] = from_acc<T>(da_r);
  dg[H + j] = from_acc<T>(da_z);
  dg[2 * H + j] = from_acc<T>(dx_n);
  a.dhh_n[e] = from_acc<T>(dhh_n);
  a.dh[e] = dh_direct;
}

template <class T, class A>
__global__ void gru_cho_candidate_backward_kernel(GruBackwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 3 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (finished_backward(a, b, j)) return;
  const A* g = a.gates + b * G;
  const A keep = a.zoneout_h.on() ? keep_weight<A>(a.zoneout_h, e) : A(0), dh = a.dh[e];
  A da_n, dz, dh_direct;
  cells::gru_cho_candidate_backward(g[H + j], g[2 * H + j], A(load(a.h_prev, e)),
                                    (A(1) - keep) * dh, da_n, dz, dh_direct);
  if (a.zoneout_h.on()) dh_direct += keep * dh;
  a.dgates[b * G + 2 * H + j] = from_acc<T>(da_n);
  a.dz[e] = dz;
  a.dh[e] = dh_direct;
}

template <class T, class A>
__global__ void gru_cho_gates_backward_kernel(GruBackwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 3 * H;
  if (!element(a.step.B, H, b, j)) return;
  if (!LengthMask{a.step.lengths}.active(b, a.step.t)) return;
  const int64_t e = b * H + j;
  const A* g = a.gates + b * G;
  A da_r, da_z, dh_from_reset;
  cells::gru_cho_gates_backward(g[j], g[H + j], A(load(a.h_prev, e)), a.d_reset_h[e], a.dz[e],
                                da_r, da_z, dh_from_reset);
  a.dgates[b * G + j] = from_acc<T>(da_r);
  a.dgates[b * G + H + j] = from_acc<T>(da_z);
  a.dh[e] += dh_from_reset;
}

}  // namespace

#define FASTRNN_GRU_LAUNCHER(NAME, KERNEL, ARGS)                                     \
  template <class T, class A>                                                        \
  void NAME(const ARGS<T, A>& a, cudaStream_t stream) {                              \
    launch_per_element(KERNEL<T, A>, a.step.B * a.step.H, stream, a);                \
  }
FASTRNN_GRU_LAUNCHER(gru_forward_step, gru_forward_kernel, GruForwardStep)
FASTRNN_GRU_LAUNCHER(gru_cho_gates_step, gru_cho_gates_kernel, GruForwardStep)
FASTRNN_GRU_LAUNCHER(gru_cho_candidate_step, gru_cho_candidate_kernel, GruForwardStep)
FASTRNN_GRU_LAUNCHER(gru_backward_step, gru_backward_kernel, GruBackwardStep)
FASTRNN_GRU_LAUNCHER(gru_cho_candidate_backward_step, gru_cho_candidate_backward_kernel,
                     GruBackwardStep)
FASTRNN_GRU_LAUNCHER(gru_cho_gates_backward_step, gru_cho_gates_backward_kernel,
                     GruBackwardStep)

#define FASTRNN_INSTANTIATE_GRU(T, A)                                                        \
  template void gru_forward_step<T, A>(const GruForwardStep<T, A>&, cudaStream_t);          \
  template void gru_cho_gates_step<T, A>(const GruForwardStep<T, A>&, cudaStream_t);        \
  template void gru_cho_candidate_step<T, A>(const GruForwardStep<T, A>&, cudaStream_t);    \
  template void gru_backward_step<T, A>(const GruBackwardStep<T, A>&, cudaStream_t);        \
  template void gru_cho_candidate_backward_step<T, A>(const GruBackwardStep<T, A>&,         \
                                                      cudaStream_t);                        \
  template void gru_cho_gates_backward_step<T, A>(const GruBackwardStep<T, A>&, cudaStream_t);
FASTRNN_FOR_EACH_TYPE_PAIR(FASTRNN_INSTANTIATE_GRU)

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
