// float32 and bfloat16 GEMMs through oneDNN's batch-reduce micro-kernel as ATen exports it
// (at::native::cpublas::brgemm). On AMD processors torch's BLAS (MKL) runs its AVX2 path;
// brgemm detects AVX-512 and, for the short wide products of a recurrent step (64 x 512 x
// 2048), measured 2.3x faster here (439 vs 194 GFLOP/s on two Zen 5 cores; MKL stays ahead
// for a single row, M = 1, a GEMV). Where oneDNN's float32 micro-kernel is unavailable ATen
// falls back to its BLAS path itself, and a torch without the export compiles without this
// path. The bf16 part is further down.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <vector>

#include "cpu/buffer_cache.h"
#include "cpu/levels.h"

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
// A float32 walk of fewer steps than this packs no weight: its products go to the BLAS,
// which reads each weight once where packing it costs a read and a write of its own (a
// step-by-step decoder calls a layer once per step). Measured on the AMD AVX2 VM, one
// step of inference, layers of I=128, two runs: LSTM B=16 H=512 639-664 -> 401-524 us,
// LSTM B=4 H=256 188-190 -> 128-137 us, GRU B=64 H=256 347-348 -> 325-339 us; at two
// steps the two ways were even (LSTM B=16 H=512 884 -> 715-724 us, GRU B=64 H=256 552 ->
// 556-750), from three on packing won.
constexpr int64_t kPackMinSteps = 2;
// A product outside the time loop (brgemm_matmul) of fewer rows than this goes to the BLAS:
// it reads each element of B fewer times than packing B costs. Measured on the AMD AVX2
// VM, x W^T + b for W 2048 x 512, 16 rows: 608 us through brgemm (W packed), 393 us MKL;
// 384 x 64: 27 vs 15 us.
constexpr int64_t kBrgemmMinProductRows = 32;
constexpr int64_t kBrgemmColumnBlock = 256;
// A step of few rows against a weight larger than the cores' caches streams the weight from
// memory (L3) every step. The micro-kernel reads a 256-wide block 64 columns at a time,
// four runs of 256 bytes a row apart; a 32-wide block is one contiguous run. Measured on two
// Intel Xeon (Sapphire Rapids) cores, LSTM T=64 B=8 H=1024 forward: 38.7-44.1 ms in
// 256-wide blocks, 30.9-32.3 in 32-wide (torch.nn 29-32), 34-37 in 64-wide; forward and
// backward 94 -> 82 ms; B=32 H=1024 82 -> 72 ms. With a weight of 1 MB (H=256) narrow
// blocks gained nothing: the product reads it from L2 and is bound by its arithmetic.
// float32 only: the bf16 micro-kernel (AMX tiles there) lost in narrow blocks, LSTM B=8
// H=1024 bf16 forward 16.0-16.3 ms in 256-wide blocks against 17.3-17.7 in 32-wide.
constexpr int64_t kNarrowBlockMaxRows = 32;
constexpr int64_t kNarrowBlockMinBytes = int64_t{2} << 20;
constexpr int64_t kNarrowBlock = 32;

// One call of oneDNN's micro-kernel: C [m, n] (float32) = A [m, k] B [k, n] (+ C), A row-major;
// float32 B row-major, bf16 B in the VNNI layout (see PackedWeight). A torch without the
// overload compiles, and fails here if ever called (kHaveBrgemm and brgemm_bf16_usable()
// keep the callers away).
inline void micro_kernel(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                         int64_t ldc, bool add_c, const float* A, const float* B, float* C) {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, add_c, A, B, C, /*is_vnni=*/false);
#else
  (void)m, (void)n, (void)k, (void)lda, (void)ldb, (void)ldc, (void)add_c, (void)A, (void)B,
      (void)C;
  TORCH_CHECK(false, "fastrnn: brgemm called on a torch without its float32 micro-kernel");
#endif
}
inline void micro_kernel(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                         int64_t ldc, bool add_c, const c10::BFloat16* A,
                         const c10::BFloat16* B, float* C) {
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
  at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, add_c, A, B, C, /*is_vnni=*/true);
#else
  (void)m, (void)n, (void)k, (void)lda, (void)ldb, (void)ldc, (void)add_c, (void)A, (void)B,
      (void)C;
  TORCH_CHECK(false, "fastrnn: brgemm called on a torch without its bf16 micro-kernel");
#endif
}
// After a thread's last call (AMX keeps a tile configuration per thread).
template <class T>
inline void release_micro_kernel() {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  at::native::cpublas::brgemm_release(/*is_vnni=*/std::is_same_v<T, c10::BFloat16>);
#endif
}

// The blocks of a large product C [M, N] = A [M, K] B [K, N] that go to the threads: about
// 128 rows x 256 columns, each accumulating over K in depth slices of 512 so that its slice
// of B stays in cache.
struct ProductBlocks {
  static constexpr int64_t kRows = 128, kColumns = 256, kDepth = 512;
  int64_t M, N, row_blocks, column_blocks, column_width;
  // K = T*B steps' rows against M = the state's width: a weight gradient, whose B (the
  // gates' gradient over all steps) is the largest tensor of a backward
  bool long_product;

  ProductBlocks(int64_t M_, int64_t N_, int64_t K) : M(M_), N(N_), long_product(K >= 4 * M_) {
    const int64_t threads = at::get_num_threads();
    column_blocks = (N + kColumns - 1) / kColumns;
    // Rows split evenly: a thin last block would read all of B again for a few rows (a
    // weight gradient with its bias row, 129 x 16384 x 2048, took twice the time of 128).
    row_blocks = std::max<int64_t>(1, M / kRows);
    if (long_product) {
      // A long product (a weight gradient: K = T*B steps' rows, M = the state's width)
      // reads and writes its C block again for every depth slice: fewer, taller row blocks
      // (at most 1024 rows), as long as every thread still gets two tasks. Measured, 513 x
      // 16384 x 2048: 109 ms in blocks of 128 rows, 89 ms in one of 513.
      const int64_t for_threads = (2 * threads + column_blocks - 1) / column_blocks;
      row_blocks = std::min(row_blocks, std::max<int64_t>(for_threads, (M + 1023) / 1024));
    }
    // Few tasks that the threads cannot share evenly: as many narrower column blocks as
    // they can (a weight gradient of an LSTM of H=100, 101 x 3200 x 400, had one 256-wide
    // and one 144-wide block on two threads).
    if (row_blocks * column_blocks < 4 * threads && row_blocks * column_blocks % threads != 0) {
      const int64_t even = (column_blocks + threads - 1) / threads * threads;
      column_width = std::max<int64_t>(16, ((N + even - 1) / even + 15) / 16 * 16);
    } else {
      column_width = kColumns;
    }
    column_blocks = (N + column_width - 1) / column_width;
  }

  // Column blocks per task: more than one where each task prepares its A tiles itself
  // (ProductRows' transposed tiles), which then serve all of the task's column blocks.
  int64_t group = 1;

  // As few tasks as keep every thread busy, one row block and `group` column blocks each.
  void group_columns() {
    const int64_t threads = at::get_num_threads();
    const int64_t per_row = std::min(column_blocks, (threads + row_blocks - 1) / row_blocks);
    group = (column_blocks + per_row - 1) / per_row;
  }

  // body(m0, m, n0, n) for every task (a row block and `group` column blocks: columns [n0,
  // n0 + n)), in parallel; `done` once per thread after its last.
  template <class Body, class Done>
  void for_each(const Body& body, const Done& done) const {
    const int64_t groups = (column_blocks + group - 1) / group, width = group * column_width;
    at::parallel_for(0, row_blocks * groups, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t row_task = task / groups;
        const int64_t n0 = task % groups * width;
        const int64_t m0 = row_task * M / row_blocks;
        body(m0, (row_task + 1) * M / row_blocks - m0, n0, std::min(N, n0 + width) - n0);
      }
      done();
    });
  }

  // Whether the product packs its B [K, N] in column blocks first (see brgemm_matmul):
  // a transposed one always, else one that several row blocks read, unless it is long.
  bool packs(const at::Tensor& b) const {
    return b.stride(1) != 1 || (row_blocks > 1 && !long_product);
  }

  // body(c, width) for each column block of a task's columns [n0, n0 + n)
  template <class Body>
  void for_each_column_block(int64_t n0, int64_t n, const Body& body) const {
    for (int64_t c = n0; c < n0 + n; c += column_width) {
      body(c, std::min(n0 + n, c + column_width) - c);
    }
  }
};

// ---- bfloat16: products of bf16 operands accumulated in float32 (the CPU's bf16 layers).
// oneDNN's bf16 micro-kernel reads B in its VNNI layout: pairs of consecutive K rows
// interleaved, [K/2][N][2], so that one instruction multiplies two K terms at a time
// (AVX512_BF16 or AMX). Measured on two Zen 5 cores, 64 x 512 x 2048: 889 GFLOP/s, twice
// the float32 product's 462 in the same run; torch.mm in bf16 (oneDNN's matmul) 719, and it
// returns bf16, not the float32 gates the cells need.

// Whether this torch has the bf16 micro-kernel and this processor runs it: ATen refuses a
// VNNI-layout call it cannot run (an error, not a fault), so one tiny call tells, once.
inline bool brgemm_bf16_usable() {
#ifdef CPUBLAS_BRGEMM_BF16BF16F32
  static const bool usable = [] {
    try {
      const c10::BFloat16 a[2 * 2] = {1.0f, 2.0f, 3.0f, 4.0f};
      c10::BFloat16 b[2 * 16];  // [K/2 = 1][N = 16][2]: B = [[1, ..., 1], [2, ..., 2]]
      for (int n = 0; n < 16; ++n) b[2 * n] = 1.0f, b[2 * n + 1] = 2.0f;
      float c[2 * 16] = {};
      at::native::cpublas::brgemm(2, 16, 2, 2, 16, 16, false, a, b, c, /*is_vnni=*/true);
      at::native::cpublas::brgemm_release(/*is_vnni=*/true);
      return c[0] == 5.0f && c[16 + 15] == 11.0f;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return usable;
#else
  return false;
#endif
}

// Two consecutive bf16 rows (`row`, and the one `ld` elements after it), `width` columns,
// as `width` VNNI pairs at `pairs`: the layout of one K pair of the bf16 micro-kernel's B.
inline void interleave_pair(const c10::BFloat16* row, int64_t ld, int64_t width,
                            c10::BFloat16* pairs) {
  const auto* even = reinterpret_cast<const uint16_t*>(row);
  const auto* odd = even + ld;
  auto* words = reinterpret_cast<uint32_t*>(pairs);
  for (int64_t j = 0; j < width; ++j) words[j] = uint32_t(even[j]) | uint32_t(odd[j]) << 16;
}

// op(W) for a weight W [rows, cols] (row-major; op(W) = W^T when `transposed`) as the B
// [K, N] of the walks' per-step GEMMs, copied once per call into column blocks: the block of
// columns [n0, n0 + w) holds all K rows of those w columns contiguously at element offset
// n0 * K, read with ldb = w (bf16 in the VNNI layout: K/2 rows of w pairs, the same size).
// In W's own layout a 256-column block of W^T is K rows a whole row of W^T apart, and the
// hardware prefetchers stop at every page: measured for one step's product, 8 x 1024 x
// 4096: 559 us read in place, 364 us blocked; 64 x 512 x 2048: 577 vs 521 us. Blocks are at
// most kBrgemmColumnBlock wide and never cross a multiple of `segment` (a gate's width in
// the forward), so a product of some gates (the reset-before GRU's W_hn) starts at a block.
template <class T>
struct PackedWeight {
  const T* weight;
  int64_t rows, cols;
  bool transposed;
  int64_t segment;
  int64_t block;  // columns per block
  at::Tensor packed;

  int64_t K() const { return transposed ? cols : rows; }
  int64_t N() const { return transposed ? rows : cols; }

  // The column blocks of columns [n0, n0 + n), n0 and n whole segments (or up to N):
  // body(task, column, width) for each, `task` counting from 0.
  template <class Body>
  void for_each_block(int64_t n0, int64_t n, const Body& body) const {
    int64_t task = 0;
    for (int64_t s0 = n0; s0 < n0 + n; s0 += segment) {
      const int64_t s1 = std::min(n0 + n, s0 + segment);
      for (int64_t c = s0; c < s1; c += block) body(task++, c, std::min(s1, c + block) - c);
    }
  }

  // `block`: the columns of a block; by default at most kBrgemmColumnBlock, in a number of
  // blocks that the threads share evenly in a product of all N columns (GRU H=256, N=768:
  // four blocks of 192, two per thread, not three of 256, two and one).
  static PackedWeight pack(const T* weight, int64_t rows, int64_t cols, bool transposed,
                           int64_t segment, int64_t block = 0) {
    PackedWeight w{weight, rows, cols, transposed, segment, block, at::Tensor()};
    const int64_t K = w.K(), N = w.N();
    if (block == 0) {
      const int64_t threads = at::get_num_threads();
      const int64_t fewest = (N + kBrgemmColumnBlock - 1) / kBrgemmColumnBlock;
      const int64_t count = (fewest + threads - 1) / threads * threads;
      w.block = std::clamp<int64_t>(((N + count - 1) / count + 15) / 16 * 16, 64,
                                    kBrgemmColumnBlock);
    }
    w.packed = new_buffer({K * N}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
    T* out = w.packed.template data_ptr<T>();
    std::vector<std::pair<int64_t, int64_t>> blocks;  // (column, width)
    w.for_each_block(0, N, [&](int64_t, int64_t c, int64_t width) {
      blocks.emplace_back(c, width);
    });
    if constexpr (std::is_same_v<T, float>) {
      if (transposed) {  // block [K][w] = (rows c.. of W)^T, in cache-friendly tiles
        for (const auto& [c, width] : blocks) {
          transpose(weight + c * cols, width, cols, cols, out + c * K);
        }
        return w;
      }
    } else if (transposed) {  // VNNI pairs of W^T are adjacent in W: a transpose of words
      const auto* words = reinterpret_cast<const uint32_t*>(weight);
      for (const auto& [c, width] : blocks) {
        transpose(words + c * cols / 2, width, cols / 2, cols / 2,
                  reinterpret_cast<uint32_t*>(out + c * K));
      }
      return w;
    }
    // op(W) = W: each block's rows are pieces of W's rows (VNNI: two rows interleaved)
    constexpr int64_t per_row = std::is_same_v<T, float> ? 1 : 2;
    at::parallel_for(0, static_cast<int64_t>(blocks.size()) * (K / per_row), 64,
                     [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; ++task) {
        const auto [c, width] = blocks[task / (K / per_row)];
        const int64_t k = task % (K / per_row) * per_row;
        T* dst = out + c * K + k * width;
        const T* src = weight + k * cols + c;
        if constexpr (per_row == 1) {
          std::copy_n(src, width, dst);
        } else {
          interleave_pair(src, cols, width, dst);
        }
      }
    });
    return w;
  }

  // The B [K, N] of a large product (brgemm_matmul), any layout, in the column blocks of
  // its ProductBlocks: W^T of a whole W is packed from W, anything else from its rows
  // (copied contiguous first when they are not).
  static PackedWeight for_product(const at::Tensor& b, const ProductBlocks& blocks) {
    const int64_t K = b.size(0), N = b.size(1);
    if (b.stride(0) == 1 && b.stride(1) == K) {
      return pack(b.template data_ptr<T>(), N, K, true, N, blocks.column_width);
    }
    const at::Tensor rows = contiguous_buffer(b);
    return pack(rows.template data_ptr<T>(), K, N, false, N, blocks.column_width);
  }

  // Where the B of a GEMM lies (`b` with leading dimension ldb, transposed as `trans_b`,
  // k x n): the first K row and column of op(W), or false when it is not a packed slice
  // (then the GEMM goes another way).
  bool find(const T* b, int64_t ldb, bool trans_b, int64_t k, int64_t n, int64_t* k0,
            int64_t* n0) const {
    if (trans_b != transposed || ldb != cols || b < weight || b >= weight + rows * cols) {
      return false;
    }
    const int64_t row = (b - weight) / cols, col = (b - weight) % cols;
    *k0 = transposed ? col : row;
    *n0 = transposed ? row : col;
    const bool whole_segments = *n0 % segment == 0 && (n % segment == 0 || *n0 + n == N());
    return whole_segments && *k0 + k <= K() && *n0 + n <= N() &&
           (std::is_same_v<T, float> || *k0 % 2 == 0);
  }

  // One block's product: C [M, width] (float32, + C if accumulate) = A [M, k] times the
  // rows k0.. of op(W)'s block at column c, in depth slices of ProductBlocks::kDepth rows:
  // the micro-kernel reads its B once per few rows of A, and a slice (512 KB at 256
  // columns) stays in the core's cache between them where a whole block of a backward
  // product (K = 4H = 2048: 2 MB) came from L3 each time.
  void multiply_block(int64_t M, int64_t k, const T* A, int64_t lda, int64_t k0, int64_t c,
                      int64_t width, bool accumulate, float* C, int64_t ldc) const {
    const T* block = packed.template data_ptr<T>() + c * K();
    for (int64_t d0 = 0; d0 < k; d0 += ProductBlocks::kDepth) {  // slices stay even (VNNI)
      const int64_t depth = std::min(k, d0 + ProductBlocks::kDepth) - d0;
      micro_kernel(M, width, depth, lda, width, ldc, accumulate || d0 > 0, A + d0,
                   block + (k0 + d0) * width, C);
    }
  }

  // C [M, n] (float32, + C if accumulate) = A [M, k] times op(W)'s rows k0.. and columns
  // n0.. (a slice find() accepted), the column blocks over the threads.
  void multiply(int64_t M, int64_t n, int64_t k, const T* A, int64_t lda, int64_t k0,
                int64_t n0, bool accumulate, float* C, int64_t ldc) const {
    auto run = [&](int64_t lo, int64_t hi) {
      for_each_block(n0, n, [&](int64_t task, int64_t c, int64_t width) {
        if (task >= lo && task < hi) {
          multiply_block(M, k, A, lda, k0, c, width, accumulate, C + (c - n0), ldc);
        }
      });
      release_micro_kernel<T>();
    };
    int64_t blocks = 0;
    for_each_block(n0, n, [&](int64_t, int64_t, int64_t) { ++blocks; });
    if (at::in_parallel_region()) {
      run(0, blocks);
    } else {
      at::parallel_for(0, blocks, 1, run);
    }
  }
};

// The A [M, K] of a large product as the micro-kernel reads it, a tile of rows [m0, m0 + m)
// and depth [k0, k0 + k) at a time: a matrix's rows in place, or [x^T; 1] for the states x
// [K, M - 1] of a weight gradient (the bias's row of ones last), each tile transposed into
// the thread's scratch when it is needed. A whole transposed copy was as large as x (33.5
// MB for the benchmark's H=512 float32 layer) and added all of it to the backward's peak.
template <class T>
struct ProductRows {
  const T* data;
  int64_t ld;                 // between rows of the matrix, or of x
  bool transposed_with_ones;  // data is x

  static ProductRows rows_of(const at::Tensor& a) {  // rows contiguous
    return {a.template data_ptr<T>(), a.stride(0), false};
  }
  static ProductRows transposed_with_ones_of(const at::Tensor& x) {  // x's rows contiguous
    return {x.template data_ptr<T>(), x.stride(0), true};
  }

  // The tile's first element; its rows lie *lda apart. M: all of A's rows.
  const T* tile(int64_t M, int64_t m0, int64_t m, int64_t k0, int64_t k, int64_t* lda) const {
    if (!transposed_with_ones) {
      *lda = ld;
      return data + m0 * ld + k0;
    }
    thread_local std::vector<T> scratch;
    scratch.resize(m * k);
    const int64_t of_x = std::max<int64_t>(0, std::min(m0 + m, M - 1) - m0);
    if (of_x > 0) transpose(data + k0 * ld + m0, k, of_x, ld, scratch.data());
    std::fill(scratch.begin() + of_x * k, scratch.begin() + m * k, T(1.0f));
    *lda = k;
    return scratch.data();
  }
};

// C = A B (+ bias on every row) for float32 CPU tensors A [M, K] and B [K, N] (transposed
// views too), as a new contiguous [M, N] tensor: the large products
// outside the time loop (input projection, weight gradients), in ProductBlocks (measured
// here against MKL's at::mm: 16384x2048x128 21 vs 49 ms,
// 512x16384x2048 96 vs 183 ms, 16384x128x2048 53 vs 79 ms).
// The product of A [M, K] given as ProductRows (M, K > 0), C a new [M, N] buffer.
inline at::Tensor brgemm_matmul(const ProductRows<float>& a, int64_t M, int64_t K,
                                const at::Tensor& b, const c10::optional<at::Tensor>& bias) {
  const int64_t N = b.size(1);
  at::Tensor c = new_buffer({M, N}, b.options());
  if (N == 0) return c;
  ProductBlocks blocks(M, N, K);
  if (a.transposed_with_ones) blocks.group_columns();
  // A B that several row blocks read (a weight: the input projection, the input's
  // gradient) is packed in column blocks first, as the steps' weights are: rows of a
  // column block in W's layout are a page apart. Measured, the input projection of a
  // second layer, 16384x512x2048: 84 -> 71 ms; 16384x1024x2048: 156 -> 139 ms.
  // A transposed B (a weight W^T) is packed even for one row block: packing is then its
  // one copy, where a contiguous W^T and the slices below were two. The B of a long
  // product (a weight gradient's dpre) is not, though two row blocks read it: each task
  // copies its slices (below), reading B once per row block, where a packed copy added
  // all of B to the backward's peak. Measured on two Zen 4 cores (AVX-512), training
  // T=256 B=64 I=128 H=512: RNN peak 161.6 -> 130.6 MB, GRU 387.8 -> 358.8 MB, the
  // reset-before GRU 420.0 -> 359.0 MB; 513 x 16384 x 512 47-48 against 49-50 ms.
  const bool pack_b = blocks.packs(b);
  const PackedWeight<float> packed_b =
      pack_b ? PackedWeight<float>::for_product(b, blocks) : PackedWeight<float>{};
  const float* bias_data = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  float* C = c.data_ptr<float>();
  blocks.for_each(
      [&](int64_t m0, int64_t m, int64_t n0_task, int64_t n_task) {
        if (bias_data != nullptr) {
          for (int64_t i = 0; i < m; ++i) {
            std::copy_n(bias_data + n0_task, n_task, C + (m0 + i) * N + n0_task);
          }
        }
        for (int64_t k0 = 0; k0 < K; k0 += ProductBlocks::kDepth) {
          const int64_t k = std::min(K, k0 + ProductBlocks::kDepth) - k0;
          const bool accumulate = k0 > 0 || bias_data != nullptr;
          int64_t lda = 0;
          const float* A = a.tile(M, m0, m, k0, k, &lda);
          blocks.for_each_column_block(n0_task, n_task, [&](int64_t n0, int64_t n) {
            float* c_block = C + m0 * N + n0;
            if (pack_b) {
              packed_b.multiply_block(m, k, A, lda, k0, n0, n, accumulate, c_block, N);
            } else if (b.stride(0) == n) {  // the block is all of B's width: one run already
              micro_kernel(m, n, k, lda, n, N, accumulate, A, b.data_ptr<float>() + k0 * n,
                           c_block);
            } else {
              // The slice of B copied into the thread's scratch first: in place, its rows
              // lie a whole row of B apart (8 KB in a weight gradient's dpre [T*B, 4H]) and
              // the prefetchers stop at every page. With B unpacked each slice is read by
              // one task per row block (one, or a long product's few): these copies are B's
              // only reads. Measured on two Sapphire Rapids cores, 513 x 16384 x 2048
              // (W_hh's gradient and its bias row): 197 -> 117 ms (MKL 113); 129 x 16384 x
              // 2048: 57 -> 36 ms (MKL 46).
              thread_local std::vector<float> slice;
              slice.resize(k * n);
              const float* rows = b.data_ptr<float>() + k0 * b.stride(0) + n0;
              for (int64_t r = 0; r < k; ++r) {
                std::copy_n(rows + r * b.stride(0), n, slice.data() + r * n);
              }
              micro_kernel(m, n, k, lda, n, N, accumulate, A, slice.data(), c_block);
            }
          });
        }
      },
      [] { release_micro_kernel<float>(); });
  return c;
}

inline at::Tensor brgemm_matmul(const at::Tensor& a_in, const at::Tensor& b,
                                const c10::optional<at::Tensor>& bias = c10::nullopt) {
  // a transposed operand is copied into a cached buffer: fresh memory costs more in page
  // faults than the copy
  const at::Tensor a = a_in.stride(1) == 1 ? a_in : contiguous_buffer(a_in);
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
#ifdef CPUBLAS_BRGEMM_F32F32F32
  if (M > 0 && K > 0) return brgemm_matmul(ProductRows<float>::rows_of(a), M, K, b, bias);
#endif
  at::Tensor c = new_buffer({M, N}, a.options());
  if (M == 0 || N == 0) return c;
  if (K == 0) return bias.has_value() ? c.copy_(bias->expand({M, N})) : c.zero_();
  at::mm_out(c, a, b);
  if (bias.has_value()) c.add_(*bias);
  return c;
}

// C = A B (+ bias) for bfloat16 CPU tensors A [M, K] (rows contiguous) and B [K, N], K
// even, as a new bf16 [M, N] tensor, through the bf16 micro-kernel: B packed once in VNNI
// column blocks (PackedWeight::for_product), each block accumulated in float32 over the
// depth slices, the bias added there, rounded once. Measured against at::mm in bf16
// (oneDNN's matmul) on two Zen 5 cores: input projection 16384x128x2048 with bias, 14 vs
// 27-32 ms (F.linear); weight gradients 513x16384x512 14 vs 19-20 ms, 513x16384x2048 46 vs
// 60 ms (packing B included).
inline at::Tensor brgemm_matmul_bf16(const ProductRows<c10::BFloat16>& a, int64_t M,
                                     int64_t K, const at::Tensor& b,
                                     const c10::optional<at::Tensor>& bias) {
  const int64_t N = b.size(1);
  at::Tensor c = new_buffer({M, N}, b.options());
  if (M == 0 || N == 0) return c;
  ProductBlocks blocks(M, N, K);
  if (a.transposed_with_ones) blocks.group_columns();
  // Packed as the float32 product decides (see brgemm_matmul); an unpacked B is read in
  // VNNI slices that each task interleaves into its scratch. Measured on two Zen 4 cores
  // (AVX-512 BF16), bf16 training T=256 B=64 I=128 H=512: RNN peak 80.8 -> 65.3 MB, GRU
  // 289.3 -> 227.4 MB, LSTM 338.7 -> 276.7 MB; 16384 x 512 -> 2048 95-108 ms either way.
  const bool pack_b = blocks.packs(b);
  const auto packed = pack_b ? PackedWeight<c10::BFloat16>::for_product(b, blocks)
                             : PackedWeight<c10::BFloat16>{};
  const at::Tensor bias_float = bias.has_value() ? bias->to(at::kFloat) : at::Tensor();
  const float* bias_data = bias.has_value() ? bias_float.data_ptr<float>() : nullptr;
  c10::BFloat16* C = c.data_ptr<c10::BFloat16>();
  blocks.for_each(
      [&](int64_t m0, int64_t m, int64_t n0, int64_t n) {
        // the thread's float32 accumulator of the task's columns, kept between tasks and
        // calls (a fresh one of 525 KB or more per task would be fresh pages); the first
        // slice overwrites it
        thread_local std::vector<float> block;
        block.resize(m * n);
        for (int64_t k0 = 0; k0 < K; k0 += ProductBlocks::kDepth) {  // slices stay even
          const int64_t k = std::min(K, k0 + ProductBlocks::kDepth) - k0;
          int64_t lda = 0;
          const c10::BFloat16* A = a.tile(M, m0, m, k0, k, &lda);
          blocks.for_each_column_block(n0, n, [&](int64_t c, int64_t width) {
            float* sums = block.data() + (c - n0);  // [m, width], rows n apart
            if (pack_b) {
              packed.multiply_block(m, k, A, lda, k0, c, width, k0 > 0, sums, n);
              return;
            }
            thread_local std::vector<c10::BFloat16> slice;
            slice.resize(k * width);
            const c10::BFloat16* rows = b.data_ptr<c10::BFloat16>() + k0 * b.stride(0) + c;
            for (int64_t r = 0; r < k; r += 2) {
              interleave_pair(rows + r * b.stride(0), b.stride(0), width,
                              slice.data() + r * width);
            }
            micro_kernel(m, width, k, lda, width, n, k0 > 0, A, slice.data(), sums);
          });
        }
        // rounded on the SIMD level's vectors: element by element, the rounding took a
        // sixth of a bf16 LSTM forward (16384 x 2048 outputs for its input projection)
        for (int64_t i = 0; i < m; ++i) {
          simd_level().round_to_bf16(n, block.data() + i * n,
                                     bias_data == nullptr ? nullptr : bias_data + n0,
                                     C + (m0 + i) * N + n0);
        }
      },
      [] { release_micro_kernel<c10::BFloat16>(); });
  return c;
}

inline at::Tensor brgemm_matmul_bf16(const at::Tensor& a_in, const at::Tensor& b,
                                     const c10::optional<at::Tensor>& bias = c10::nullopt) {
  const at::Tensor a = a_in.stride(1) == 1 ? a_in : contiguous_buffer(a_in);
  return brgemm_matmul_bf16(ProductRows<c10::BFloat16>::rows_of(a), a.size(0), a.size(1), b,
                            bias);
}

// The bf16 product any other way (no micro-kernel, odd K, a B that was not packed, a
// bf16 C): operands widened to float32 and multiplied by at::mm, C (float32 when c_float,
// else bf16) = product (+ C when accumulate). Correct everywhere, not fast.
inline void gemm_bf16_widened(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                              const c10::BFloat16* A, int64_t lda, const c10::BFloat16* B,
                              int64_t ldb, bool accumulate, void* C, int64_t ldc,
                              bool c_float) {
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16);
  auto view = [&](const c10::BFloat16* p, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    const at::Tensor t = at::from_blob(const_cast<c10::BFloat16*>(p),
                                       {trans ? cols : rows, trans ? rows : cols}, {ld, 1}, bf16);
    return trans ? t.t() : t;
  };
  const at::Tensor product = at::mm(view(A, M, K, lda, trans_a).to(at::kFloat),
                                    view(B, K, N, ldb, trans_b).to(at::kFloat));
  at::Tensor c =
      at::from_blob(C, {M, N}, {ldc, 1}, bf16.dtype(c_float ? at::kFloat : at::kBFloat16));
  if (accumulate) {
    c.copy_(c.to(at::kFloat).add_(product));
  } else {
    c.copy_(product);
  }
}

}  // namespace cpu
}  // namespace fastrnn
