// CUDA as a Device of the shared sequence templates (../sequence/): GEMMs through cuBLAS on
// torch's handle and current stream, each point-wise step one kernel launch (kernels.h).
// The handle, stream and TF32 setting are fetched once per operator call, not per step.
#pragma once

#include <ATen/ATen.h>

#include <type_traits>

#include "kernels.h"

#ifdef FASTRNN_CUDA_EMULATED  // see kernels.h
#include "cuda_emu/torch_cuda.h"
#else
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#endif

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h

// scalar_t (ATen) -> T (CUDA storage type) and A (accumulation type).
template <class scalar_t>
struct Types {
  using T = scalar_t;
  using A = scalar_t;
};
template <>
struct Types<at::Half> {
  using T = __half;
  using A = float;
};
template <>
struct Types<at::BFloat16> {
  using T = __nv_bfloat16;
  using A = float;
};

#ifndef FASTRNN_CUDA_EMULATED
inline cublasHandle_t current_blas_handle() { return at::cuda::getCurrentCUDABlasHandle(); }
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }
#endif

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, double>) return CUDA_R_64F;
  if constexpr (std::is_same_v<T, __half>) return CUDA_R_16F;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return CUDA_R_16BF;
  return CUDA_R_32F;
}

struct CudaDevice {
  cublasHandle_t handle;  // bound to `stream`
  cudaStream_t stream;
  bool allow_tf32;        // torch.backends.cuda.matmul.allow_tf32

  static CudaDevice current() {
    return {current_blas_handle(), current_stream(), at::globalContext().allowTF32CuBLAS()};
  }

  // Row-major C[M,N] = op(A) op(B) + beta * C with op(X) = X or X^T; A and B hold the
  // storage type, C the storage or the accumulation type (c_acc). cuBLAS is column-major,
  // so this computes C^T = op(B)^T op(A)^T.
  template <class T>
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* a,
            int64_t lda, const T* b, int64_t ldb, double beta, void* c, int64_t ldc,
            bool c_acc) const {
    if (M == 0 || N == 0) return;
    constexpr bool is_double = std::is_same_v<T, double>;
    const cudaDataType_t c_type = c_acc ? (is_double ? CUDA_R_64F : CUDA_R_32F) : cuda_type<T>();
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    if (is_double) {
      compute = CUBLAS_COMPUTE_64F;
    } else if (std::is_same_v<T, float> && allow_tf32) {
      compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    }
    const double one_d = 1.0;
    const float one_f = 1.f, beta_f = static_cast<float>(beta);
    const void* alpha_p = is_double ? static_cast<const void*>(&one_d) : &one_f;
    const void* beta_p = is_double ? static_cast<const void*>(&beta) : &beta_f;
    TORCH_CUDABLAS_CHECK(cublasGemmEx(
        handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), alpha_p, b,
        cuda_type<T>(), static_cast<int>(ldb), a, cuda_type<T>(), static_cast<int>(lda),
        beta_p, c, c_type, static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
  }

  template <class T, class A>
  void add_output_grad(const StepInfo& s, int64_t width, const T* grad_output_t, A* dh) const {
    cuda::add_output_grad(s, width, grad_output_t, dh, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

// Each point-wise step: launch its kernel on the stream, check the launch.
#define FASTRNN_CUDA_STEP(NAME, ARGS)                  \
  template <class T, class A>                          \
  void NAME(const ARGS<T, A>& args) const {            \
    cuda::NAME(args, stream);                          \
    C10_CUDA_KERNEL_LAUNCH_CHECK();                    \
  }
  FASTRNN_CUDA_STEP(lstm_forward_step, LstmForwardStep)
  FASTRNN_CUDA_STEP(lstm_backward_step, LstmBackwardStep)
  FASTRNN_CUDA_STEP(gru_forward_step, GruForwardStep)
  FASTRNN_CUDA_STEP(gru_cho_gates_step, GruForwardStep)
  FASTRNN_CUDA_STEP(gru_cho_candidate_step, GruForwardStep)
  FASTRNN_CUDA_STEP(gru_backward_step, GruBackwardStep)
  FASTRNN_CUDA_STEP(gru_cho_candidate_backward_step, GruBackwardStep)
  FASTRNN_CUDA_STEP(gru_cho_gates_backward_step, GruBackwardStep)
  FASTRNN_CUDA_STEP(rnn_forward_step, RnnForwardStep)
  FASTRNN_CUDA_STEP(rnn_backward_step, RnnBackwardStep)
#undef FASTRNN_CUDA_STEP

  template <class T>
  void mask_projected_state(const StepInfo& s, int64_t P, const T* h_prev, T* h_next,
                            T* out, const Zoneout<T>& zoneout_h) const {
    cuda::mask_projected_state(s, P, h_prev, h_next, out, zoneout_h, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class T, class A>
  void split_projection_grad(const StepInfo& s, int64_t P, A* dh, T* dproj,
                             const Zoneout<T>& zoneout_h) const {
    cuda::split_projection_grad(s, P, dh, dproj, zoneout_h, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
