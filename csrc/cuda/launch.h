// Shared by the CUDA launchers: storage/accumulation types per ATen dtype, raw pointers,
// and row-major GEMMs through cuBLAS on torch's handle and current stream.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>

#include "../checks.h"
#include "../weight_grads.h"
#include "../sequence_common.h"
#include "kernels.h"

namespace fastrnn {
namespace cuda {

// scalar_t (ATen) -> T (CUDA storage type) and A (accumulation type).
template <class scalar_t>
struct Types {
  using T = scalar_t;
  using A = scalar_t;
  static constexpr cudaDataType_t cuda_type = std::is_same_v<scalar_t, double> ? CUDA_R_64F
                                                                               : CUDA_R_32F;
};
template <>
struct Types<at::Half> {
  using T = __half;
  using A = float;
  static constexpr cudaDataType_t cuda_type = CUDA_R_16F;
};
template <>
struct Types<at::BFloat16> {
  using T = __nv_bfloat16;
  using A = float;
  static constexpr cudaDataType_t cuda_type = CUDA_R_16BF;
};

inline at::ScalarType acc_dtype(at::ScalarType t) { return accumulation_dtype(t); }

template <class P>
inline P* ptr(const at::Tensor& t) {
  return reinterpret_cast<P*>(t.data_ptr());
}
template <class P>
inline P* ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? ptr<P>(*t) : nullptr;
}
inline const int64_t* lengths_ptr(const c10::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr;
}

// What the GEMMs of one operator call need from torch, fetched once per call rather than
// once per step: the cuBLAS handle (bound to the current stream) and the TF32 setting
// (torch.backends.cuda.matmul.allow_tf32).
struct Blas {
  cublasHandle_t handle;
  bool allow_tf32;
  static Blas current() {
    return {at::cuda::getCurrentCUDABlasHandle(), at::globalContext().allowTF32CuBLAS()};
  }
};

// Row-major C[M,N] = op(A) op(B) + beta * C with op(X) = X or X^T; A and B hold the storage
// type, C the storage or the accumulation type (c_acc). cuBLAS is column-major, so this
// computes C^T = op(B)^T op(A)^T.
template <class scalar_t>
inline void gemm(const Blas& blas, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 const void* A, int64_t lda, const void* B, int64_t ldb, double beta, void* C,
                 int64_t ldc, bool c_acc) {
  if (M == 0 || N == 0) return;
  using Ty = Types<scalar_t>;
  const bool is_double = std::is_same_v<scalar_t, double>;
  const cudaDataType_t ab_type = Ty::cuda_type;
  const cudaDataType_t c_type = c_acc ? (is_double ? CUDA_R_64F : CUDA_R_32F) : ab_type;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if (is_double) {
    compute = CUBLAS_COMPUTE_64F;
  } else if (std::is_same_v<scalar_t, float> && blas.allow_tf32) {
    compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  }
  const double one_d = 1.0;
  const float one_f = 1.f, beta_f = static_cast<float>(beta);
  const void* alpha_p = is_double ? static_cast<const void*>(&one_d) : &one_f;
  const void* beta_p = is_double ? static_cast<const void*>(&beta) : &beta_f;
  TORCH_CUDABLAS_CHECK(cublasGemmEx(
      blas.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), alpha_p, B, ab_type,
      static_cast<int>(ldb), A, ab_type, static_cast<int>(lda), beta_p, C, c_type,
      static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
}

// Note: lengths on the GPU are not range-checked (reading them would synchronise); the
// layers derive them from a PackedSequence. A value outside [0, T] cannot index out of
// bounds: the kernels only compare t < lengths[b], so it acts as clamped.

// The gradient reaching a final state, as a fresh contiguous buffer in the accumulation
// type (the backward loop accumulates into it); zeros when autograd passed none.
inline at::Tensor state_grad(const c10::optional<at::Tensor>& grad, at::IntArrayRef shape,
                             const at::TensorOptions& acc_options) {
  if (!grad.has_value()) return at::zeros(shape, acc_options);
  return grad->to(acc_options.dtype().toScalarType(), /*non_blocking=*/false, /*copy=*/true,
                  at::MemoryFormat::Contiguous);
}

}  // namespace cuda
}  // namespace fastrnn
