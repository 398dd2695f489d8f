// cuBLAS's cublasGemmEx for the CUDA emulation (see runtime.h), written from cuBLAS's
// documented contract rather than from fastrnn's use of it, so that a wrong transpose,
// size or leading dimension in CudaDevice::gemm computes something else or is refused:
//   C = alpha op(A) op(B) + beta C, column-major; op(A) is m x k, op(B) k x n, C m x n;
//   lda >= max(1, transa == N ? m : k), ldb >= max(1, transb == N ? k : n),
//   ldc >= max(1, m), m, n, k >= 0, else CUBLAS_STATUS_INVALID_VALUE;
//   the (A, B, C, compute) types of cublasGemmEx's table, else CUBLAS_STATUS_NOT_SUPPORTED;
//   alpha and beta in host memory, double for CUBLAS_COMPUTE_64F, float for the 32F
//   compute types; beta == 0 never reads C (it may hold NaN);
//   CUBLAS_COMPUTE_32F_FAST_TF32 rounds A and B to TF32 (10 mantissa bits) first.
// Products accumulate in the compute type (float for every 16-bit input). Combinations the
// table allows but fastrnn never asks for (8-bit integers, complex, 16F compute) are not
// emulated: they fail with CUBLAS_STATUS_NOT_SUPPORTED and say so in not_emulated().
// The names and values are cuBLAS's (cublas_api.h, library_types.h), in the emulation's
// namespace.
#pragma once

#include "cuda_emu/runtime.h"

namespace fastrnn {
namespace cuda {
inline namespace emulated {  // cuda/target.h

struct BlasContext;
using cublasHandle_t = BlasContext*;

enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};

enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };

enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_8I = 3,
  CUDA_C_32F = 4,
  CUDA_C_64F = 5,
  CUDA_R_32I = 10,
  CUDA_R_16BF = 14,
};
using cudaDataType = cudaDataType_t;

enum cublasComputeType_t {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_64F_PEDANTIC = 71,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32I_PEDANTIC = 73,
};

enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C,
                            cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo);

const char* cublasGetStatusName(cublasStatus_t status);
// Why the last NOT_SUPPORTED of this host thread was returned, if the combination is one
// cuBLAS supports and the emulation does not; empty otherwise.
const char* not_emulated();

// The handle the emulated back-end's calls use (torch's, on a GPU).
cublasHandle_t default_handle();

// x rounded to TF32, to nearest with ties away from zero (the tensor cores' cvt.rna).
float round_to_tf32(float x);

}  // namespace emulated
}  // namespace cuda
}  // namespace fastrnn
