// LSTM point-wise kernels: the formulas are cells/lstm.h, evaluated in the accumulation type.
#include "cells/lstm.h"
#include "kernel_utils.cuh"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h
namespace {

template <class T, class A>
__global__ void lstm_forward_kernel(LstmForwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 4 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (!LengthMask{a.step.lengths}.active(b, a.step.t)) {  // keep the state, write zeros
    a.c_next[e] = a.c_prev[e];
    if (a.cells_out != nullptr) a.cells_out[e] = zero<T>();
    if (a.proj_in != nullptr) {
      a.proj_in[e] = zero<T>();
    } else {
      a.h_next[e] = a.h_prev[e];
      a.out[e] = zero<T>();
    }
    return;
  }
  A* g = a.gates + b * G;
  const T* x = a.x + b * G;
  auto pre = [&](int gate) {
    const int64_t k = gate * H + j;
    return g[k] + A(load(x, k)) + load_or_zero<T, A>(a.bias, k);
  };
  A i, f, gg, o, c, h;
  cells::lstm_forward(pre(0), pre(1), pre(2), pre(3), a.c_prev[e], i, f, gg, o, c, h);
  if (a.zoneout_c.on()) c = cells::zoneout(keep_weight<A>(a.zoneout_c, e), a.c_prev[e], c);
  if (a.zoneout_h.on()) {
    h = cells::zoneout(keep_weight<A>(a.zoneout_h, e), A(load(a.h_prev, e)), h);
  }
  g[j] = i;
  g[H + j] = f;
  g[2 * H + j] = gg;
  g[3 * H + j] = o;
  a.c_next[e] = c;
  if (a.cells_out != nullptr) a.cells_out[e] = from_acc<T>(c);
  if (a.proj_in != nullptr) {
    a.proj_in[e] = from_acc<T>(h);
  } else {
    a.h_next[e] = from_acc<T>(h);
    a.out[e] = from_acc<T>(h);
  }
}

template <class T>
__global__ void mask_projected_kernel(StepInfo step, int64_t P, const T* h_prev, T* h_next,
                                      T* out, Zoneout<T> zoneout_h) {
  int64_t b, j;
  if (!element(step.B, P, b, j)) return;
  const int64_t e = b * P + j;
  if (LengthMask{step.lengths}.active(b, step.t)) {
    if (zoneout_h.on()) {
      using A = acc_of<T>;
      h_next[e] = from_acc<T>(
          cells::zoneout(keep_weight<A>(zoneout_h, e), A(load(h_prev, e)), A(load(h_next, e))));
    }
    out[e] = h_next[e];
  } else {
    h_next[e] = h_prev[e];
    out[e] = zero<T>();
  }
}

template <class T, class A>
__global__ void lstm_backward_kernel(LstmBackwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H, G = 4 * H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  T* dg = a.dgates + b * G;
  if (!LengthMask{a.step.lengths}.active(b, a.step.t)) {  // the gradient passes through
    for (int gate = 0; gate < 4; ++gate) dg[gate * H + j] = zero<T>();
    return;
  }
  const A* g = a.gates + b * G;
  const A i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
  // zoneout: the cell's own new state, and the shares of the gradients that reach it
  A c = a.c_next[e], dh = a.dh_cell[e], dc = a.dc[e], keep_c = A(0), keep_h = A(0);
  if (a.zoneout_c.on()) {
    keep_c = keep_weight<A>(a.zoneout_c, e);
    c = f * a.c_prev[e] + i * gg;  // as lstm_forward computed it
    dc = (A(1) - keep_c) * dc;
  }
  if (a.zoneout_h.on()) {
    keep_h = keep_weight<A>(a.zoneout_h, e);
    dh = (A(1) - keep_h) * dh;
  }
  A da_i, da_f, da_g, da_o, dc_prev;
  cells::lstm_backward(i, f, gg, o, a.c_prev[e], c, dh, dc, da_i, da_f, da_g, da_o, dc_prev);
  dg[j] = from_acc<T>(da_i);
  dg[H + j] = from_acc<T>(da_f);
  dg[2 * H + j] = from_acc<T>(da_g);
  dg[3 * H + j] = from_acc<T>(da_o);
  if (a.zoneout_c.on()) dc_prev += keep_c * a.dc[e];
  a.dc[e] = dc_prev;
  // without a projection dh is this step's own: zeroed for the GEMM to add to, but for the
  // share zoneout passes straight to h_prev
  if (a.zero_dh) a.dh[e] = a.zoneout_h.on() ? keep_h * a.dh[e] : A(0);
}

template <class T, class A>
__global__ void split_projection_grad_kernel(StepInfo step, int64_t P, A* dh, T* dproj,
                                             Zoneout<T> zoneout_h) {
  int64_t b, j;
  if (!element(step.B, P, b, j)) return;
  const int64_t e = b * P + j;
  if (LengthMask{step.lengths}.active(b, step.t)) {
    const A keep = zoneout_h.on() ? keep_weight<A>(zoneout_h, e) : A(0);
    dproj[e] = from_acc<T>(zoneout_h.on() ? (A(1) - keep) * dh[e] : dh[e]);
    dh[e] = zoneout_h.on() ? keep * dh[e] : A(0);
  } else {
    dproj[e] = zero<T>();
  }
}

}  // namespace

template <class T, class A>
void lstm_forward_step(const LstmForwardStep<T, A>& a, cudaStream_t stream) {
  launch_per_element(lstm_forward_kernel<T, A>, a.step.B * a.step.H, stream, a);
}

template <class T>
void mask_projected_state(StepInfo step, int64_t P, const T* h_prev, T* h_next, T* out,
                          Zoneout<T> zoneout_h, cudaStream_t stream) {
  launch_per_element(mask_projected_kernel<T>, step.B * P, stream, step, P, h_prev, h_next,
                     out, zoneout_h);
}

template <class T, class A>
void lstm_backward_step(const LstmBackwardStep<T, A>& a, cudaStream_t stream) {
  launch_per_element(lstm_backward_kernel<T, A>, a.step.B * a.step.H, stream, a);
}

template <class T, class A>
void split_projection_grad(StepInfo step, int64_t P, A* dh, T* dproj, Zoneout<T> zoneout_h,
                           cudaStream_t stream) {
  launch_per_element(split_projection_grad_kernel<T, A>, step.B * P, stream, step, P, dh,
                     dproj, zoneout_h);
}

#define FASTRNN_INSTANTIATE_LSTM(T, A)                                                    \
  template void lstm_forward_step<T, A>(const LstmForwardStep<T, A>&, cudaStream_t);     \
  template void mask_projected_state<T>(StepInfo, int64_t, const T*, T*, T*, Zoneout<T>,   \
                                        cudaStream_t);                                      \
  template void lstm_backward_step<T, A>(const LstmBackwardStep<T, A>&, cudaStream_t);   \
  template void split_projection_grad<T, A>(StepInfo, int64_t, A*, T*, Zoneout<T>,         \
                                            cudaStream_t);
FASTRNN_FOR_EACH_TYPE_PAIR(FASTRNN_INSTANTIATE_LSTM)

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
