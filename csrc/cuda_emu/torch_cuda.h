// What cuda/device.h takes from torch's CUDA headers, for the emulation: the current
// cuBLAS handle and stream, and the two checks, with torch's wording.
#pragma once

#include <c10/util/Exception.h>

#include "cuda_emu/cublas.h"

namespace fastrnn {
namespace cuda {
inline namespace emulated {  // cuda/target.h

inline cublasHandle_t current_blas_handle() { return default_handle(); }
inline cudaStream_t current_stream() { return nullptr; }

}  // namespace emulated
}  // namespace cuda
}  // namespace fastrnn

#define TORCH_CUDABLAS_CHECK(EXPR)                                                        \
  do {                                                                                    \
    const ::fastrnn::cuda::emulated::cublasStatus_t fastrnn_status = (EXPR);              \
    TORCH_CHECK(fastrnn_status == ::fastrnn::cuda::emulated::CUBLAS_STATUS_SUCCESS,       \
                "CUDA error: ", ::fastrnn::cuda::emulated::cublasGetStatusName(fastrnn_status), \
                " when calling `" #EXPR "` ", ::fastrnn::cuda::emulated::not_emulated());  \
  } while (0)

#define C10_CUDA_KERNEL_LAUNCH_CHECK()                                                  \
  do {                                                                                  \
    const ::fastrnn::cuda::emulated::cudaError_t fastrnn_error =                        \
        ::fastrnn::cuda::emulated::cudaGetLastError();                                  \
    TORCH_CHECK(fastrnn_error == ::fastrnn::cuda::emulated::cudaSuccess, "CUDA error: ", \
                ::fastrnn::cuda::emulated::cudaGetErrorString(fastrnn_error));          \
  } while (0)
