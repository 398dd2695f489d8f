// The CPU buffer cache (buffer_cache.h): free blocks kept in a list, most recently freed
// first, the smallest that fits taken; evicted from the other end.
#include "cpu/buffer_cache.h"

#include <ATen/native/TensorFactories.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/library.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <list>
#include <mutex>
#include <string>

namespace fastrnn {
namespace cpu {
namespace {

constexpr size_t kMinCachedBytes = size_t{1} << 20;  // smaller blocks: torch's allocator
constexpr int64_t kAutomatic = -1;

// A block is the request rounded up to whole pages (untouched pages of a larger block would
// cost no memory, but torch's profiler and the limit count the block's size), and a request
// takes a kept block up to 12.5% larger than itself, the smallest there is: shapes that
// differ a little (another batch's length) still reuse each other's blocks, and a training
// step's [T+1, B, H] state history no longer sits in a block an eighth over a power of two
// (RNN forward+backward peak at T=256, B=64, H=512: 101.5 -> 97.6 MB, torch.nn's 96.1).
constexpr size_t kPage = 4096;
size_t whole_pages(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }
size_t largest_reused_for(size_t bytes) { return bytes + bytes / 8; }

// A quarter of the machine's memory: the most the automatic limit keeps.
int64_t automatic_ceiling() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size / 4
                                    : int64_t{1} << 30;
}

int64_t limit_from_environment() {
  const char* text = std::getenv("FASTRNN_CPU_CACHE_MB");
  if (text == nullptr || *text == '\0') return kAutomatic;
  char* end = nullptr;
  const long long mb = std::strtoll(text, &end, 10);
  TORCH_CHECK(*end == '\0' && mb >= 0, "FASTRNN_CPU_CACHE_MB must be a whole number of MB >= 0 ",
              "(0 turns fastrnn's CPU buffer cache off; unset, the limit is automatic), got '",
              text, "'");
  return static_cast<int64_t>(mb) << 20;
}

struct Block {
  void* data;
  size_t bytes;  // whole pages
};

class BufferCache final : public c10::Allocator {
 public:
  BufferCache() : limit_(limit_from_environment()) {}

  c10::DataPtr allocate(size_t requested) override {
    if (requested < kMinCachedBytes) return c10::GetDefaultCPUAllocator()->allocate(requested);
    const size_t bytes = whole_pages(requested);
    std::list<Block> evicted;
    Block* block = take(bytes, evicted);
    free_blocks(evicted);
    if (block == nullptr) {
      void* data = nullptr;
      try {
        data = c10::alloc_cpu(bytes);
      } catch (const c10::Error&) {  // out of memory: the kept blocks first, then once more
        release_all();
        try {
          data = c10::alloc_cpu(bytes);
        } catch (const c10::Error&) {
          std::lock_guard<std::mutex> lock(mutex_);
          in_use_ -= static_cast<int64_t>(bytes);
          throw;
        }
      }
      block = new Block{data, bytes};
    }
    report(block->data, static_cast<int64_t>(block->bytes));
    return {block->data, block, &give_back, c10::Device(c10::kCPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

  BufferCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {limit(), cached_, in_use_, peak_in_use_, hits_, misses_};
  }

  void set_limit(int64_t bytes) {  // kAutomatic, or a fixed number of bytes
    std::list<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes;
      evict_over(0, evicted);
    }
    free_blocks(evicted);
  }

  void release_all() {
    std::list<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      evicted.splice(evicted.end(), free_);
      cached_ = 0;
    }
    free_blocks(evicted);
  }

 private:
  static void give_back(void* context);

  // The automatic limit: twice the most the buffers handed out ever held at once, at most a
  // quarter of the machine's memory. A training step's forward and backward use different
  // blocks, whose sum passes the peak in use (a 4-layer bidirectional GRU, T=256, B=64,
  // H=512: a limit of 1x the peak still missed a quarter of the allocations, 4.4 s a
  // step; with room for all of them 4.3 s; no cache 6.1 s).
  int64_t limit() const {
    return limit_ == kAutomatic ? std::min(2 * peak_in_use_, ceiling_) : limit_;
  }

  // The smallest kept block of `bytes` to an eighth more (the most recently freed of equal
  // ones), or null (a miss: `bytes` counted in use, and the least recently freed blocks go
  // to `evicted` until the blocks in use and kept fit the limit again).
  Block* take(size_t bytes, std::list<Block>& evicted) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->bytes >= bytes && it->bytes <= largest_reused_for(bytes) &&
          (best == free_.end() || it->bytes < best->bytes)) {
        best = it;
      }
    }
    if (best != free_.end()) {
      Block* block = new Block(*best);
      cached_ -= static_cast<int64_t>(block->bytes);
      free_.erase(best);
      count_in_use(block->bytes);
      ++hits_;
      return block;
    }
    count_in_use(bytes);
    ++misses_;
    evict_over(in_use_, evicted);
    return nullptr;
  }

  void count_in_use(size_t bytes) {  // with mutex_ held
    in_use_ += static_cast<int64_t>(bytes);
    peak_in_use_ = std::max(peak_in_use_, in_use_);
  }

  // torch's profiler (profile_memory=True) sees these buffers as it sees its own allocator's.
  void report(void* data, int64_t change) {
    if (!c10::memoryProfilingEnabled()) return;
    int64_t in_use, cached;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use = in_use_, cached = cached_;
    }
    c10::reportMemoryUsageToProfiler(data, change, in_use, in_use + cached,
                                     c10::Device(c10::kCPU));
  }

  void keep(Block block) {
    report(block.data, -static_cast<int64_t>(block.bytes));
    std::list<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= static_cast<int64_t>(block.bytes);
      if (static_cast<int64_t>(block.bytes) > limit()) {
        evicted.push_back(block);
      } else {
        evict_over(static_cast<int64_t>(block.bytes), evicted);
        free_.push_front(block);
        cached_ += static_cast<int64_t>(block.bytes);
      }
    }
    free_blocks(evicted);  // outside the lock: unmapping a large block takes a while
  }

  // Moves the least recently freed blocks to `evicted` until `incoming` more bytes fit.
  void evict_over(int64_t incoming, std::list<Block>& evicted) {
    while (!free_.empty() && cached_ + incoming > limit()) {
      cached_ -= static_cast<int64_t>(free_.back().bytes);
      evicted.splice(evicted.begin(), free_, std::prev(free_.end()));
    }
  }

  static void free_blocks(const std::list<Block>& blocks) {
    for (const Block& block : blocks) c10::free_cpu(block.data);
  }

  std::mutex mutex_;
  std::list<Block> free_;  // most recently freed first
  int64_t limit_;          // kAutomatic or bytes
  const int64_t ceiling_ = automatic_ceiling();
  int64_t cached_ = 0;  // bytes of the blocks in free_
  int64_t in_use_ = 0;  // bytes of the blocks handed out
  int64_t peak_in_use_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

// Never destroyed: tensors freed while the process exits still give their blocks back.
BufferCache& the_cache() {
  static BufferCache* const cache = new BufferCache();
  return *cache;
}

void BufferCache::give_back(void* context) {
  Block* block = static_cast<Block*>(context);
  the_cache().keep(*block);
  delete block;
}

}  // namespace

c10::Allocator* buffer_cache() { return &the_cache(); }
BufferCacheStats buffer_cache_stats() { return the_cache().stats(); }
void set_buffer_cache_limit(c10::optional<int64_t> bytes) {
  TORCH_CHECK(!bytes.has_value() || *bytes >= 0,
              "fastrnn: the CPU buffer cache's limit must be >= 0 bytes, got ", *bytes);
  the_cache().set_limit(bytes.has_value() ? *bytes : kAutomatic);
}
void release_cached_buffers() { the_cache().release_all(); }

}  // namespace cpu

at::Tensor new_buffer(at::IntArrayRef shape, const at::TensorOptions& options) {
  if (!options.device().is_cpu()) return at::empty(shape, options);
  at::Tensor buffer = at::detail::empty_generic(shape, cpu::buffer_cache(),
                                                c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                options.dtype().toScalarType(), c10::nullopt);
  const at::Context& context = at::globalContext();
  if (context.deterministicAlgorithms() && context.deterministicFillUninitializedMemory()) {
    at::native::fill_empty_deterministic_(buffer);
  }
  return buffer;
}

}  // namespace fastrnn

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  // [limit_bytes, cached_bytes, in_use_bytes, peak_in_use_bytes, hits, misses]
  m.def("cpu_cache_stats() -> int[]", [] {
    const fastrnn::cpu::BufferCacheStats s = fastrnn::cpu::buffer_cache_stats();
    return std::vector<int64_t>{s.limit_bytes, s.cached_bytes, s.in_use_bytes,
                                s.peak_in_use_bytes, s.hits, s.misses};
  });
  // None: the automatic limit
  m.def("cpu_cache_set_limit(int? limit_bytes) -> ()", &fastrnn::cpu::set_buffer_cache_limit);
  m.def("cpu_cache_release() -> ()", &fastrnn::cpu::release_cached_buffers);
  // an uninitialised CPU tensor from the cache: buffers the Python layers fill (inference)
  m.def("cpu_empty(int[] size, ScalarType dtype) -> Tensor",
        [](std::vector<int64_t> size, c10::ScalarType dtype) {
          return fastrnn::new_buffer(size, at::TensorOptions().dtype(dtype));
        });
}
