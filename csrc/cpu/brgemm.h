// float32 GEMMs through oneDNN's batch-reduce micro-kernel as ATen exports it
// (at::native::cpublas::brgemm). On AMD processors torch's BLAS (MKL) runs its AVX2 path;
// brgemm detects AVX-512 and, for the short wide products of a recurrent step (64 x 512 x
// 2048), measured 2.3x faster here (439 vs 194 GFLOP/s on two Zen 5 cores; MKL stays ahead
// for a single row, M = 1, a GEMV). Where oneDNN's micro-kernel is unavailable ATen falls
// back to its BLAS path itself, and a torch without the export compiles without this path.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <vector>

#include "cpu/buffer_cache.h"

namespace fastrnn {
namespace cpu {

#ifdef CPUBLAS_BRGEMM_F32F32F32
constexpr bool kHaveBrgemm = true;
#else
constexpr bool kHaveBrgemm = false;
#endif

// Rows below this go to the BLAS (a GEMV there beats brgemm); columns are split over the
// threads in blocks of this width (256 measured best of 128, 256, 512).
constexpr int64_t kBrgemmMinRows = 2;
constexpr int64_t kBrgemmColumnBlock = 256;

// A weight the forward multiplies transposed (h W^T), copied once per call as W^T [K, N]
// row-major, the layout brgemm reads. Rows r0.. of W are columns r0.. of W^T, so a GEMM
// with a slice of W's rows (the GRU's W_hn) finds its slice here too.
struct TransposedWeight {
  const float* weight;  // W [rows, cols], row-major, as the template passes it
  int64_t rows, cols;
  at::Tensor transposed;  // W^T [cols, rows]

  // W^T's columns for B = W + r0 * cols (rows r0..r0+n of W), or null if B is not in W.
  const float* find(const float* b, int64_t ldb, int64_t n) const {
    if (ldb != cols || b < weight || b >= weight + rows * cols) return nullptr;
    const int64_t r0 = (b - weight) / cols;
    if ((b - weight) % cols != 0 || r0 + n > rows) return nullptr;
    return transposed.data_ptr<float>() + r0;
  }
};

// C[M,N] = A[M,K] B[K,N] (+ C if accumulate) in column blocks over the threads; A, B, C
// row-major with leading dimensions lda, ldb, ldc.
inline void brgemm_columns(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const float* B, int64_t ldb, bool accumulate, float* C,
                           int64_t ldc) {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  const int64_t blocks = (N + kBrgemmColumnBlock - 1) / kBrgemmColumnBlock;
  auto run = [&](int64_t lo, int64_t hi) {
    for (int64_t block = lo; block < hi; ++block) {
      const int64_t n0 = block * kBrgemmColumnBlock;
      const int64_t n = std::min(N, n0 + kBrgemmColumnBlock) - n0;
      at::native::cpublas::brgemm(M, n, K, lda, ldb, ldc, accumulate, A, B + n0, C + n0,
                                  /*is_vnni=*/false);
    }
    at::native::cpublas::brgemm_release(/*is_vnni=*/false);
  };
  if (at::in_parallel_region()) {
    run(0, blocks);
  } else {
    at::parallel_for(0, blocks, 1, run);
  }
#else
  (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)accumulate,
      (void)C, (void)ldc;
  TORCH_CHECK(false, "fastrnn: brgemm_columns called on a torch without brgemm");
#endif
}

// C = A B (+ bias on every row) for float32 CPU tensors A [M, K] and B [K, N] whose rows
// are contiguous (any row stride), as a new contiguous [M, N] tensor: the large products
// outside the time loop (input projection, weight gradients). Blocks of about 128 rows x
// 256 columns go to the threads, each accumulating over K in slices of 512 so that its slice
// of B stays in cache (measured here against MKL's at::mm: 16384x2048x128 21 vs 49 ms,
// 512x16384x2048 96 vs 183 ms, 16384x128x2048 53 vs 79 ms).
inline at::Tensor brgemm_matmul(const at::Tensor& a_in, const at::Tensor& b_in,
                                const c10::optional<at::Tensor>& bias = c10::nullopt) {
  // a transposed operand (h^T for a weight gradient, 33 MB in the benchmark's LSTM) is
  // copied into a cached buffer: fresh memory costs more in page faults than the copy
  const at::Tensor a = a_in.stride(1) == 1 ? a_in : contiguous_buffer(a_in);
  const at::Tensor b = b_in.stride(1) == 1 ? b_in : contiguous_buffer(b_in);
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  at::Tensor c = new_buffer({M, N}, a.options());
  if (M == 0 || N == 0) return c;
  if (K == 0) return bias.has_value() ? c.copy_(bias->expand({M, N})) : c.zero_();
#ifdef CPUBLAS_BRGEMM_F32F32F32
  constexpr int64_t row_block = 128, column_block = 256, depth_block = 512;
  const float* A = a.data_ptr<float>();
  const float* B = b.data_ptr<float>();
  const float* bias_data = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  float* C = c.data_ptr<float>();
  const int64_t lda = a.stride(0), ldb = b.stride(0);
  // Rows split evenly into blocks of about row_block: a thin last block would read all of
  // B again for a few rows (a weight gradient with its bias row, 129 x 16384 x 2048, took
  // twice the time of 128 rows).
  const int64_t row_blocks = std::max<int64_t>(1, M / row_block);
  const int64_t column_blocks = (N + column_block - 1) / column_block;
  at::parallel_for(0, row_blocks * column_blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t row_task = task / column_blocks, n0 = task % column_blocks * column_block;
      const int64_t m0 = row_task * M / row_blocks, m = (row_task + 1) * M / row_blocks - m0;
      const int64_t n = std::min(N, n0 + column_block) - n0;
      float* c_block = C + m0 * N + n0;
      if (bias_data != nullptr) {
        for (int64_t i = 0; i < m; ++i) std::copy_n(bias_data + n0, n, c_block + i * N);
      }
      for (int64_t k0 = 0; k0 < K; k0 += depth_block) {
        const int64_t k = std::min(K, k0 + depth_block) - k0;
        at::native::cpublas::brgemm(m, n, k, lda, ldb, N, k0 > 0 || bias_data != nullptr,
                                    A + m0 * lda + k0, B + k0 * ldb + n0, c_block, false);
      }
    }
    at::native::cpublas::brgemm_release(/*is_vnni=*/false);
  });
#else
  at::mm_out(c, a, b);
  if (bias.has_value()) c.add_(*bias);
#endif
  return c;
}

}  // namespace cpu
}  // namespace fastrnn
