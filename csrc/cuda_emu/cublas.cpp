// The emulated cublasGemmEx (cublas.h): the contract's checks, then op(A) and op(B) read
// element by element through their leading dimensions into dense row-major copies in the
// compute type (TF32-rounded where asked), multiplied by torch's CPU matmul, and C written
// back through ldc. Every read and write of the caller's memory is this file's own loop,
// so the sanitizer harness (tests/cpp/test_cuda_emulation.cpp) sees each one.
#include "cuda_emu/cublas.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace fastrnn {
namespace cuda {
inline namespace emulated {  // cuda/target.h

struct BlasContext {};

cublasHandle_t default_handle() {
  static BlasContext context;
  return &context;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

namespace {

thread_local std::string not_emulated_reason;

float round_tf32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) {  // finite: round the 13 dropped bits, ties away
    u = (u + 0x1000u) & 0xffffe000u;
  }
  std::memcpy(&x, &u, sizeof u);
  return x;
}

template <class Acc>
Acc load(const void* p, cudaDataType_t type, int64_t i) {
  switch (type) {
    case CUDA_R_64F: return static_cast<Acc>(static_cast<const double*>(p)[i]);
    case CUDA_R_32F: return static_cast<Acc>(static_cast<const float*>(p)[i]);
    case CUDA_R_16F: return static_cast<Acc>(__half2float(static_cast<const __half*>(p)[i]));
    case CUDA_R_16BF:
      return static_cast<Acc>(__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]));
    default: return Acc(0);  // unreachable: refused by gemm_types
  }
}

template <class Acc>
void store(void* p, cudaDataType_t type, int64_t i, Acc v) {
  switch (type) {
    case CUDA_R_64F: static_cast<double*>(p)[i] = static_cast<double>(v); return;
    case CUDA_R_32F: static_cast<float*>(p)[i] = static_cast<float>(v); return;
    case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half(static_cast<float>(v)); return;
    case CUDA_R_16BF:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(static_cast<float>(v));
      return;
    default: return;
  }
}

// What cublasGemmEx's table of (compute type, A and B type, C type) says of a combination,
// as the emulation computes it; Refused outside the table, and for the combinations in it
// that are not emulated (the reason kept for not_emulated()).
enum class Kind { Refused, Float, Double };

Kind gemm_types(cudaDataType_t a, cudaDataType_t b, cudaDataType_t c,
                cublasComputeType_t compute) {
  auto not_emulated_here = [&](const char* what) {
    not_emulated_reason = std::string("the CUDA emulation does not emulate ") + what;
    return Kind::Refused;
  };
  if (a != b) return Kind::Refused;
  switch (compute) {
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
      if (a == CUDA_R_64F && c == CUDA_R_64F) return Kind::Double;
      if (a == CUDA_C_64F && c == CUDA_C_64F) return not_emulated_here("complex products");
      return Kind::Refused;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      if (a == CUDA_R_32F && c == CUDA_R_32F) return Kind::Float;
      if ((a == CUDA_R_16F || a == CUDA_R_16BF) && (c == a || c == CUDA_R_32F)) {
        return Kind::Float;
      }
      if (a == CUDA_R_8I && c == CUDA_R_32F) return not_emulated_here("8-bit integer inputs");
      if (a == CUDA_C_32F && c == CUDA_C_32F) return not_emulated_here("complex products");
      return Kind::Refused;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      if (a == CUDA_R_32F && c == CUDA_R_32F) return Kind::Float;
      if (a == CUDA_C_32F && c == CUDA_C_32F) return not_emulated_here("complex products");
      return Kind::Refused;
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
      if ((a == CUDA_R_32F && c == CUDA_R_32F) || (a == CUDA_C_32F && c == CUDA_C_32F)) {
        return not_emulated_here("the 16-bit down-conversions of CUBLAS_COMPUTE_32F_FAST_16*");
      }
      return Kind::Refused;
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC:
      if (a == CUDA_R_16F && c == CUDA_R_16F) return not_emulated_here("half-precision sums");
      return Kind::Refused;
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC:
      if (a == CUDA_R_8I && c == CUDA_R_32I) return not_emulated_here("integer products");
      return Kind::Refused;
  }
  return Kind::Refused;
}

// op(X) (rows x cols) into a dense row-major copy: element (r, c) is X[r + c * ld] when X
// is used as stored (column-major), X[c + r * ld] when transposed.
template <class Acc>
std::vector<Acc> dense_copy(const void* x, cudaDataType_t type, bool transposed, int64_t rows,
                            int64_t cols, int64_t ld, bool tf32) {
  std::vector<Acc> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      Acc v = load<Acc>(x, type, transposed ? c + r * ld : r + c * ld);
      if constexpr (std::is_same_v<Acc, float>) {
        if (tf32) v = round_tf32_bits(v);
      }
      out[static_cast<size_t>(r * cols + c)] = v;
    }
  }
  return out;
}

template <class Acc>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, Acc alpha,
          const void* a, cudaDataType_t a_type, int64_t lda, const void* b, int64_t ldb,
          Acc beta, void* c, cudaDataType_t c_type, int64_t ldc, bool tf32) {
  const at::ScalarType acc = std::is_same_v<Acc, double> ? at::kDouble : at::kFloat;
  std::vector<Acc> op_a = dense_copy<Acc>(a, a_type, trans_a, m, k, lda, tf32);
  std::vector<Acc> op_b = dense_copy<Acc>(b, a_type, trans_b, k, n, ldb, tf32);
  at::Tensor product = at::zeros({m, n}, at::TensorOptions().dtype(acc));
  if (k > 0) {
    const auto options = at::TensorOptions().dtype(acc);
    product = at::mm(at::from_blob(op_a.data(), {m, k}, options),
                     at::from_blob(op_b.data(), {k, n}, options));
  }
  const Acc* p = product.data_ptr<Acc>();
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < m; ++i) {
      const int64_t at_c = i + j * ldc;
      Acc v = alpha * p[i * n + j];
      if (beta != Acc(0)) v += beta * load<Acc>(c, c_type, at_c);  // beta 0: C is not read
      store<Acc>(c, c_type, at_c, v);
    }
  }
}

}  // namespace

float round_to_tf32(float x) { return round_tf32_bits(x); }

const char* not_emulated() { return not_emulated_reason.c_str(); }

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C,
                            cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t /*algo: any is allowed; all compute the same*/) {
  not_emulated_reason.clear();
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto is_op = [](cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
  };
  if (!is_op(transa) || !is_op(transb) || m < 0 || n < 0 || k < 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // For real types CUBLAS_OP_C is the transpose.
  const bool trans_a = transa != CUBLAS_OP_N, trans_b = transb != CUBLAS_OP_N;
  if (lda < std::max(1, trans_a ? k : m) || ldb < std::max(1, trans_b ? n : k) ||
      ldc < std::max(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const Kind kind = gemm_types(Atype, Btype, Ctype, computeType);
  if (kind == Kind::Refused) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  counters().gemms += 1;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (kind == Kind::Double) {
    gemm<double>(trans_a, trans_b, m, n, k, *static_cast<const double*>(alpha), A, Atype, lda,
                 B, ldb, *static_cast<const double*>(beta), C, Ctype, ldc, false);
  } else {
    gemm<float>(trans_a, trans_b, m, n, k, *static_cast<const float*>(alpha), A, Atype, lda, B,
                ldb, *static_cast<const float*>(beta), C, Ctype, ldc,
                computeType == CUBLAS_COMPUTE_32F_FAST_TF32);
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace emulated
}  // namespace cuda
}  // namespace fastrnn
