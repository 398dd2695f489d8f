// Elman RNN point-wise kernels (cells/rnn.h), and the output-gradient accumulation that
// every cell's backward starts its step with.
#include "cells/rnn.h"
#include "kernel_utils.cuh"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h
namespace {

template <bool Relu, class T, class A>
__global__ void rnn_forward_kernel(RnnForwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (!LengthMask{a.step.lengths}.active(b, a.step.t)) {
    a.h_next[e] = a.h_prev[e];
    a.out[e] = zero<T>();
    return;
  }
  const A pre = a.recurrent[e] + A(load(a.x, e)) + load_or_zero<T, A>(a.bias, j);
  A state = cells::rnn_forward<Relu>(pre);
  if (a.zoneout_h.on()) {
    state = cells::zoneout(keep_weight<A>(a.zoneout_h, e), A(load(a.h_prev, e)), state);
  }
  const T h = from_acc<T>(state);
  a.h_next[e] = h;
  a.out[e] = h;
}

template <bool Relu, class T, class A>
__global__ void rnn_backward_kernel(RnnBackwardStep<T, A> a) {
  int64_t b, j;
  const int64_t H = a.step.H;
  if (!element(a.step.B, H, b, j)) return;
  const int64_t e = b * H + j;
  if (!LengthMask{a.step.lengths}.active(b, a.step.t)) {
    a.dgates[e] = zero<T>();
    return;
  }
  if (!a.zoneout_h.on()) {
    a.dgates[e] = from_acc<T>(cells::rnn_backward<Relu>(A(load(a.h_new, e)), a.dh[e]));
    a.dh[e] = A(0);
    return;
  }
  const A keep = keep_weight<A>(a.zoneout_h, e), dh = a.dh[e], h_prev = A(load(a.h_prev, e));
  const A zeroed = to_acc(from_acc<T>(cells::zoneout(keep, h_prev, A(0))));  // as stored
  a.dgates[e] = from_acc<T>(cells::rnn_backward_under_zoneout<Relu>(
      a.zoneout_h.mask != nullptr, keep, h_prev, A(load(a.h_new, e)), zeroed, dh));
  a.dh[e] = keep * dh;
}

template <class T, class A>
__global__ void add_output_grad_kernel(StepInfo step, int64_t width, const T* go, A* dh) {
  int64_t b, j;
  if (!element(step.B, width, b, j)) return;
  if (LengthMask{step.lengths}.active(b, step.t)) dh[b * width + j] += A(load(go, b * width + j));
}

}  // namespace

template <class T, class A>
void rnn_forward_step(const RnnForwardStep<T, A>& a, cudaStream_t stream) {
  launch_per_element(a.relu ? rnn_forward_kernel<true, T, A> : rnn_forward_kernel<false, T, A>,
                     a.step.B * a.step.H, stream, a);
}

template <class T, class A>
void rnn_backward_step(const RnnBackwardStep<T, A>& a, cudaStream_t stream) {
  launch_per_element(a.relu ? rnn_backward_kernel<true, T, A> : rnn_backward_kernel<false, T, A>,
                     a.step.B * a.step.H, stream, a);
}

template <class T, class A>
void add_output_grad(StepInfo step, int64_t width, const T* grad_output_t, A* dh,
                     cudaStream_t stream) {
  launch_per_element(add_output_grad_kernel<T, A>, step.B * width, stream, step, width,
                     grad_output_t, dh);
}

#define FASTRNN_INSTANTIATE_RNN(T, A)                                                   \
  template void rnn_forward_step<T, A>(const RnnForwardStep<T, A>&, cudaStream_t);     \
  template void rnn_backward_step<T, A>(const RnnBackwardStep<T, A>&, cudaStream_t);   \
  template void add_output_grad<T, A>(StepInfo, int64_t, const T*, A*, cudaStream_t);
FASTRNN_FOR_EACH_TYPE_PAIR(FASTRNN_INSTANTIATE_RNN)

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
