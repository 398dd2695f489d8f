// Large CPU buffers kept between operator calls. glibc hands a freed block over 32 MB (less,
// before its threshold adapts) back to the system, so every call's outputs, saved gates and
// gradients used to be fresh pages, and faulting them in cost up to a third of a layer's
// time (bench/results/README.md). Buffers from this cache go back to it when their last
// tensor dies, already faulted in, and the next call of the same shapes reuses them.
//
// Bounded: it keeps at most `limit` bytes of free blocks (FASTRNN_CPU_CACHE_MB, default
// 1024; 0 turns it off), releasing the least recently freed first; fastrnn.empty_cache()
// releases them all. Blocks under 1 MB go straight to torch's allocator.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fastrnn {
namespace cpu {

struct BufferCacheStats {
  int64_t limit_bytes;   // most bytes of free blocks kept
  int64_t cached_bytes;  // free blocks kept now
  int64_t hits;          // allocations served from a kept block
  int64_t misses;        // allocations of 1 MB or more that needed a new block
};

// The allocator behind new_buffer: a c10::Allocator, so a tensor from it can be resized,
// shared and freed like any other CPU tensor.
c10::Allocator* buffer_cache();
BufferCacheStats buffer_cache_stats();
void set_buffer_cache_limit(int64_t bytes);  // releases free blocks over the new limit
void release_cached_buffers();

}  // namespace cpu

// A new uninitialised tensor for an operator's output or scratch: on the CPU from the
// buffer cache, elsewhere from at::empty. Like at::empty, it is filled with NaN under
// torch.use_deterministic_algorithms(True) with fill_uninitialized_memory (the default).
at::Tensor new_buffer(at::IntArrayRef shape, const at::TensorOptions& options);

}  // namespace fastrnn
