// The CUDA point-wise kernels, one launch per time step, on raw pointers: the step structs
// of ../steps.h, launched on a stream. No torch headers (the back-end in cuda/backend.cpp
// calls these from the shared sequence templates).
#pragma once

#include "target.h"

#include <cstdint>

#include "steps.h"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {

// ---- LSTM
template <class T, class A>
void lstm_forward_step(const LstmForwardStep<T, A>& a, cudaStream_t stream);

// After the projection GEMM: finished rows keep h_prev; out = active ? h_next : 0, h_next
// zoned out first where zoneout is on. [B, P]
template <class T>
void mask_projected_state(StepInfo step, int64_t P, const T* h_prev, T* h_next, T* out,
                          Zoneout<T> zoneout_h, cudaStream_t stream);

template <class T, class A>
void lstm_backward_step(const LstmBackwardStep<T, A>& a, cudaStream_t stream);

// With a projection: dproj = active ? dh : 0, then dh = active ? 0 : dh; with zoneout of
// h, dproj = (1 - keep) dh and dh = keep dh on active rows. [B, P]
template <class T, class A>
void split_projection_grad(StepInfo step, int64_t P, A* dh, T* dproj, Zoneout<T> zoneout_h,
                           cudaStream_t stream);

template <class T, class A>
void gru_forward_step(const GruForwardStep<T, A>& a, cudaStream_t stream);       // reset after
template <class T, class A>
void gru_cho_gates_step(const GruForwardStep<T, A>& a, cudaStream_t stream);     // phase 1
template <class T, class A>
void gru_cho_candidate_step(const GruForwardStep<T, A>& a, cudaStream_t stream); // phase 2

template <class T, class A>
void gru_backward_step(const GruBackwardStep<T, A>& a, cudaStream_t stream);
template <class T, class A>
void gru_cho_candidate_backward_step(const GruBackwardStep<T, A>& a, cudaStream_t stream);
template <class T, class A>
void gru_cho_gates_backward_step(const GruBackwardStep<T, A>& a, cudaStream_t stream);

template <class T, class A>
void rnn_forward_step(const RnnForwardStep<T, A>& a, cudaStream_t stream);

template <class T, class A>
void rnn_backward_step(const RnnBackwardStep<T, A>& a, cudaStream_t stream);

// ---------------------------------------------------------------- shared
// dh += grad_output[t] on the rows still running at t. [B, width]
template <class T, class A>
void add_output_grad(StepInfo step, int64_t width, const T* grad_output_t, A* dh,
                     cudaStream_t stream);

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
