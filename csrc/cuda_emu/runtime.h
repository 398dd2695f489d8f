// The CUDA runtime as the CUDA back-end's sources use it, for the CPU: the emulation that
// compiles csrc/cuda/ as host C++ (see emulated.h) and runs every thread of every launch.
//
// It declares only what the kernels use (the storage types __half and __nv_bfloat16 with
// their explicit conversions, thread coordinates, launches, the last error), all inside
// fastrnn::cuda::emulated, the namespace the emulated build of csrc/cuda/ lives in: no
// global name of the real runtime or of cuBLAS is defined, so the GPU build linked into
// the same library is untouched. The real CUDA headers are never included, so a kernel
// that starts using anything not emulated here (shared memory, barriers, warp intrinsics,
// atomics, implicit half conversions) fails to build instead of running wrongly.
//
// The kernels are element-wise (each thread reads its inputs and writes only its own
// outputs), so running a launch's threads one after another computes what the GPU does.
// The order is selectable (forward, reverse, shuffled: set_thread_order), and running the
// same call in each order, compared bit for bit, finds a thread that reads another's write.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

// What the CUDA compiler knows: qualifiers become plain (inline) host C++.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Not emulated: code using these must not build (they would otherwise be undeclared
// identifiers too; these say why).
#define __syncthreads() \
  static_assert(false, "the CUDA emulation runs threads one by one: no barriers")
#define __shared__ static_assert(false, "the CUDA emulation has no shared memory");

namespace fastrnn {
namespace cuda {
inline namespace emulated {  // cuda/target.h

// ---------------------------------------------------------------- types
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// A stream is only passed along: launches run at once, in the calling thread.
struct Stream;
using cudaStream_t = Stream*;

// The runtime's error codes that a launch can leave (values as in driver_types.h).
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
};
const char* cudaGetErrorString(cudaError_t error);
// The last launch's error, reset by reading it (per host thread, as the runtime's).
cudaError_t cudaGetLastError();

// 16-bit storage types: bits only, no arithmetic and no implicit conversion (torch builds
// its CUDA code with __CUDA_NO_HALF_CONVERSIONS__, so the kernels convert explicitly).
struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
// Rounding to nearest even, as the device's __float2half_rn and __float2bfloat16_rn (and
// torch's CPU conversions, which these are).
inline float __half2float(__half h) { return c10::detail::fp16_ieee_to_fp32_value(h.bits); }
inline __half __float2half(float f) { return {c10::detail::fp16_ieee_from_fp32_value(f)}; }
inline float __bfloat162float(__nv_bfloat16 b) { return c10::detail::f32_from_bits(b.bits); }
inline __nv_bfloat16 __float2bfloat16(float f) {
  return {c10::detail::round_to_nearest_even(f)};
}

// ---------------------------------------------------------------- threads and launches
// The coordinates of the thread the emulation is running (the kernels' threadIdx...).
struct ThreadCoordinates {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
extern thread_local ThreadCoordinates current;

enum class ThreadOrder { Forward, Reverse, Shuffled };
// The order launches run their threads in; FASTRNN_EMULATE_CUDA_ORDER (forward, reverse,
// shuffled) sets it at load time, forward otherwise. Shuffled draws a new permutation of
// all (block, thread) pairs for every launch, from a seed that set_thread_order resets.
void set_thread_order(ThreadOrder order);
ThreadOrder thread_order();

// Counts since load, for tests that the emulation ran (and how much of it).
struct Counters {
  int64_t launches = 0;  // kernel launches that ran
  int64_t threads = 0;   // threads they ran
  int64_t gemms = 0;     // cublasGemmEx calls that computed
};
Counters& counters();

// What cudaLaunchKernel refuses (limits of every GPU since compute capability 3.0, sm_80
// and sm_90 among them): an empty or oversized grid or block, too much shared memory.
// Such a launch runs nothing and leaves cudaErrorInvalidConfiguration for cudaGetLastError.
bool launch_is_valid(dim3 grid, dim3 block, size_t shared_bytes);
void record_invalid_launch();

// Which thread (a flat index over blocks, then threads) runs i-th of a launch's n.
class ThreadSchedule {
 public:
  explicit ThreadSchedule(uint64_t n);  // in the current thread_order()
  uint64_t operator[](uint64_t i) const {
    return permutation_ != nullptr ? permutation_[i] : reverse_ ? n_ - 1 - i : i;
  }
  uint64_t size() const { return n_; }

 private:
  uint64_t n_;
  bool reverse_ = false;
  const uint64_t* permutation_ = nullptr;
};

inline void enter_thread(dim3 grid, dim3 block, uint64_t flat) {
  const uint64_t per_block = uint64_t(block.x) * block.y * block.z;
  const uint64_t b = flat / per_block, t = flat % per_block;
  current.grid_dim = grid;
  current.block_dim = block;
  current.block_idx = {unsigned(b % grid.x), unsigned(b / grid.x % grid.y),
                       unsigned(b / (uint64_t(grid.x) * grid.y))};
  current.thread_idx = {unsigned(t % block.x), unsigned(t / block.x % block.y),
                        unsigned(t / (uint64_t(block.x) * block.y))};
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...): every thread of every block, each
// with its own copy of the parameters (by value, as on the GPU). Launches run at once, in
// the calling thread, whatever the stream.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t /*stream*/, Args&&... args) {
  if (!launch_is_valid(grid, block, shared_bytes)) {
    record_invalid_launch();
    return;
  }
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  const uint64_t threads =
      uint64_t(grid.x) * grid.y * grid.z * (uint64_t(block.x) * block.y * block.z);
  const ThreadSchedule schedule(threads);
  for (uint64_t i = 0; i < threads; ++i) {
    enter_thread(grid, block, schedule[i]);
    std::apply(kernel, params);
  }
  counters().launches += 1;
  counters().threads += static_cast<int64_t>(threads);
}

}  // namespace emulated
}  // namespace cuda
}  // namespace fastrnn

#define threadIdx (::fastrnn::cuda::emulated::current.thread_idx)
#define blockIdx (::fastrnn::cuda::emulated::current.block_idx)
#define blockDim (::fastrnn::cuda::emulated::current.block_dim)
#define gridDim (::fastrnn::cuda::emulated::current.grid_dim)
