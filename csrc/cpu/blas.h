// The CPU's building blocks for device.h: a row-major GEMM on raw pointers through the BLAS
// torch links (columns split over the threads), the parallel row/column-block driver of the
// point-wise steps, and span copies. Nothing here allocates.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "sequence/common.h"

// The Fortran BLAS that torch links (MKL in the x86 wheels) exports sgemm_/dgemm_; ATen's
// own cpublas::gemm overloads are not exported. Declared weak, so a torch without them still
// loads fastrnn and the GEMM falls back to at::mm on views of the same memory.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc)
    __attribute__((weak));
}

namespace fastrnn {
namespace cpu {

template <class scalar_t>
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                      const scalar_t* alpha, const scalar_t* a, const int* lda,
                      const scalar_t* b, const int* ldb, const scalar_t* beta, scalar_t* c,
                      const int* ldc) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

template <class scalar_t>
inline bool have_blas() {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return sgemm_ != nullptr;
  } else {
    return dgemm_ != nullptr;
  }
}

// Row-major C[M,N] = op(A) op(B) + beta * C, with op(X) = X or X^T, on one thread's BLAS.
// BLAS is column-major, so it computes C^T = op(B)^T op(A)^T.
template <class scalar_t>
inline void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                        scalar_t beta, scalar_t* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (have_blas<scalar_t>()) {
    const int m = int(N), n = int(M), k = int(K), la = int(ldb), lb = int(lda), lc = int(ldc);
    const scalar_t one(1);
    blas_gemm<scalar_t>(trans_b ? "T" : "N", trans_a ? "T" : "N", &m, &n, &k, &one, B, &la, A,
                        &lb, &beta, C, &lc);
    return;
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  auto view = [&](const scalar_t* p, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    at::Tensor t = at::from_blob(const_cast<scalar_t*>(p), {trans ? cols : rows,
                                 trans ? rows : cols}, {ld, 1}, options);
    return trans ? t.t() : t;
  };
  at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, options);
  const at::Tensor a = view(A, M, K, lda, trans_a), b = view(B, K, N, ldb, trans_b);
  if (beta == scalar_t(0)) {
    at::mm_out(c, a, b);
  } else {
    c.addmm_(a, b, beta);
  }
}

// The same product, with the columns of C split over torch's threads. A recurrent step's
// GEMM is short and wide (M = batch, N = gates * hidden): giving each thread its own slice
// of the weights (BLAS runs single-threaded inside a parallel region) measured 15-20%
// faster here than letting the BLAS thread one call (2 cores, 64 x 512 x 2048).
template <class scalar_t>
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                 scalar_t beta, scalar_t* C, int64_t ldc) {
  constexpr int64_t min_columns = 128;
  const int64_t parts = std::min<int64_t>(at::get_num_threads(), N / min_columns);
  if (parts <= 1 || at::in_parallel_region() || !have_blas<scalar_t>()) {
    gemm_serial(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int64_t width = (N + parts - 1) / parts;
  at::parallel_for(0, parts, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t n0 = p * width, n = std::min(N, n0 + width) - n0;
      // Column slice n0.. of op(B): rows of B when it is transposed, columns otherwise.
      const scalar_t* B_part = B + (trans_b ? n0 * ldb : n0);
      gemm_serial(trans_a, trans_b, M, n, K, A, lda, B_part, ldb, beta, C + n0, ldc);
    }
  });
}

// Runs body(b, j0, j1) over rows b < B and column blocks [j0, j1) of width H (at most 256),
// in parallel once there is enough work to pay for waking a thread: chunks of at least
// `elements_per_task` elements (when H < 256 a task is a row's H elements). 4096 by
// default (a step of B=32, H=256, 8192 units, had run on one thread in chunks of 8192: the
// LSTM's cells 6.3 of its 42 us; in two chunks the LSTM layer measured 2-10% faster, the
// GRU 3-8%); an Elman RNN step of 4096 units measured 7-10% slower split in two (T=2048,
// B=16, H=256: 27 -> 29 ms), its cell being cheap.
template <class Body>
inline void parallel_rows(int64_t B, int64_t H, const Body& body,
                          int64_t elements_per_task = 4096) {
  constexpr int64_t block = 256;
  const int64_t blocks_per_row = std::max<int64_t>(1, (H + block - 1) / block);
  const int64_t task = std::clamp<int64_t>(H, 1, block);  // elements per (row, block) task
  const int64_t grain = std::max<int64_t>(1, elements_per_task / task);
  at::parallel_for(0, B * blocks_per_row, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t b = k / blocks_per_row;
      const int64_t j0 = (k % blocks_per_row) * block;
      body(b, j0, std::min(H, j0 + block));
    }
  });
}

template <class scalar_t>
inline void copy_span(scalar_t* dst, const scalar_t* src, int64_t n) {
  std::memcpy(dst, src, sizeof(scalar_t) * n);
}
// Between types (a float32 state gradient into a bfloat16 buffer), converting.
template <class To, class From>
inline void copy_span(To* dst, const From* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<To>(src[i]);
}
template <class scalar_t>
inline void zero_span(scalar_t* dst, int64_t n) {
  std::memset(dst, 0, sizeof(scalar_t) * n);
}

}  // namespace cpu
}  // namespace fastrnn
