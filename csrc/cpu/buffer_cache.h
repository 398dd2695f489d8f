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

#include <cstdint>

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

}  // namespace cpu

// A new uninitialised tensor for an operator's output or scratch: on the CPU from the
// buffer cache, elsewhere from at::empty. Like at::empty, it is filled with NaN under
// torch.use_deterministic_algorithms(True) with fill_uninitialized_memory (the default).
at::Tensor new_buffer(at::IntArrayRef shape, const at::TensorOptions& options);

// `t` itself when contiguous, else a contiguous copy in a new_buffer (e.g. the gradient of
// one direction's half of a bidirectional output, or h^T for a weight gradient).
inline at::Tensor contiguous_buffer(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  return new_buffer(t.sizes(), t.options()).copy_(t);
}

}  // namespace fastrnn
