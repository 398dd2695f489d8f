// Large CPU buffers kept between operator calls. glibc hands a freed block over 32 MB (less,
// before its threshold adapts) back to the system, so every call's outputs, saved gates and
// gradients used to be fresh pages, and faulting them in cost up to a third of a layer's
// time (bench/results/README.md). Buffers from this cache go back to it when their last
// tensor dies, already faulted in, and the next call of the same shapes reuses them.
//
// Bounded: by default it keeps at most twice the most its buffers ever held in use at once,
// and at most a quarter of the machine's memory (when it needs new memory it first releases
// kept blocks until kept and in use fit that limit); FASTRNN_CPU_CACHE_MB fixes the limit instead (0 turns
// it off). The least recently freed blocks go first; fastrnn.empty_cache() releases them
// all. Blocks under 1 MB go straight to torch's allocator.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "backend.h"
#include "cpu/levels.h"

namespace fastrnn {
namespace cpu {

struct BufferCacheStats {
  int64_t limit_bytes;        // most bytes of free blocks kept, now
  int64_t cached_bytes;       // free blocks kept now
  int64_t in_use_bytes;       // blocks held by tensors now
  int64_t peak_in_use_bytes;  // the most they ever held at once
  int64_t hits;               // allocations served from a kept block
  int64_t misses;             // allocations of 1 MB or more that needed a new block
};

// The allocator behind new_buffer: a c10::Allocator, so a tensor from it can be resized,
// shared and freed like any other CPU tensor.
c10::Allocator* buffer_cache();
BufferCacheStats buffer_cache_stats();
// Bytes, or none for the automatic limit; releases the free blocks over the new limit.
void set_buffer_cache_limit(c10::optional<int64_t> bytes);
void release_cached_buffers();

// dst [cols, rows] = src [rows, cols]^T (src rows ld apart, dst contiguous) over the
// threads, in tiles of 16 rows x 32 columns read by rows into a local block and written by
// columns, the row tiles of one column strip in turn (so each line of dst fills up while in
// cache). Measured on two cores, 4096 x 1024 float32: 1.0-1.3 ms, where 32 x 32 tiles
// copied directly took 1.7-2.1 ms and ATen's copy_ of the transposed view 5.5 ms (sixteen
// rows ld apart share few enough cache sets when ld is a multiple of 4 KB).
// 32-bit elements go to the SIMD level's register tiles where it has them (transpose32 in
// levels.h: 3-6x faster).
template <class T>
void transpose(const T* src, int64_t rows, int64_t cols, int64_t ld, T* dst) {
  if constexpr (sizeof(T) == 4) {
    if (const auto fast = simd_level().transpose32) {
      fast(reinterpret_cast<const uint32_t*>(src), rows, cols, ld,
           reinterpret_cast<uint32_t*>(dst));
      return;
    }
  }
  constexpr int64_t tile_rows = 16, tile_cols = 32;
  const int64_t row_tiles = (rows + tile_rows - 1) / tile_rows;
  const int64_t col_tiles = (cols + tile_cols - 1) / tile_cols;
  at::parallel_for(0, row_tiles * col_tiles, 16, [&](int64_t lo, int64_t hi) {
    T block[tile_rows][tile_cols];
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t r0 = task % row_tiles * tile_rows, c0 = task / row_tiles * tile_cols;
      const int64_t r_n = std::min(rows - r0, tile_rows), c_n = std::min(cols - c0, tile_cols);
      for (int64_t r = 0; r < r_n; ++r) std::copy_n(src + (r0 + r) * ld + c0, c_n, block[r]);
      for (int64_t c = 0; c < c_n; ++c) {
        T* out = dst + (c0 + c) * rows + r0;
        for (int64_t r = 0; r < r_n; ++r) out[r] = block[r][c];
      }
    }
  });
}

}  // namespace cpu

// A new uninitialised tensor for an operator's output or scratch: on the CPU from the
// buffer cache, elsewhere from at::empty. Like at::empty, it is filled with NaN under
// torch.use_deterministic_algorithms(True) with fill_uninitialized_memory (the default).
at::Tensor new_buffer(at::IntArrayRef shape, const at::TensorOptions& options);

// `t` itself when contiguous, else a contiguous copy in a new_buffer (e.g. the gradient of
// one direction's half of a bidirectional output, or W^T for a product). On the CPU
// back-end a transposed matrix is copied in tiles (cpu::transpose): ATen's copy of W_hh^T,
// 4096 x 1024, took 5.5 ms, a quarter of a 32-step LSTM forward at batch 8.
inline at::Tensor contiguous_buffer(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  at::Tensor copy = new_buffer(t.sizes(), t.options());
  if (on_cpu_backend(t.device()) && t.dim() == 2 && t.stride(0) == 1 && t.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, t.scalar_type(), "fastrnn::contiguous_buffer",
                                   [&] {
                                     cpu::transpose(t.data_ptr<scalar_t>(), t.size(1),
                                                    t.size(0), t.stride(1),
                                                    copy.data_ptr<scalar_t>());
                                   });
    return copy;
  }
  return copy.copy_(t);
}

}  // namespace fastrnn
