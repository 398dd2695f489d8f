// Helpers for the point-wise kernels: conversions between storage and accumulation types,
// one thread per (row, unit) element, launch and instantiation boilerplate.
#pragma once

#include "sequence/common.h"
#include "kernels.h"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h

// Storage <-> accumulation. torch builds with __CUDA_NO_HALF_CONVERSIONS__, hence the
// explicit intrinsics.
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_acc(float v);
template <class T>
__device__ __forceinline__ T from_acc(double v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

template <class T>
using acc_of = decltype(to_acc(T{}));

template <class T>
__device__ __forceinline__ T zero() {
  return from_acc<T>(acc_of<T>(0));
}

template <class T>
__device__ __forceinline__ auto load(const T* p, int64_t i) {
  return to_acc(p[i]);
}
// An optional bias reads as zero.
template <class T, class A>
__device__ __forceinline__ A load_or_zero(const T* p, int64_t i) {
  return p == nullptr ? A(0) : A(to_acc(p[i]));
}

// Zoneout's keep weight at element e (steps.h): the mask's value, or p for every unit.
template <class A, class T>
__device__ __forceinline__ A keep_weight(const Zoneout<T>& z, int64_t e) {
  return z.mask != nullptr ? A(load(z.mask, e)) : A(z.p);
}

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

// kernel<<<blocks, threads, 0, stream>>>(args...) on the GPU; under the emulation, every
// thread run on the CPU (cuda_emu/runtime.h). The only launch in the sources.
template <class... Params, class... Args>
inline void launch(void (*kernel)(Params...), unsigned blocks, unsigned threads,
                   cudaStream_t stream, const Args&... args) {
#ifdef FASTRNN_CUDA_EMULATED
  emulated::launch_kernel(kernel, dim3(blocks), dim3(threads), 0, stream, args...);
#else
  kernel<<<blocks, threads, 0, stream>>>(args...);
#endif
}

// One thread per element of a step's `elements`, in whole blocks of kThreads.
template <class... Params, class... Args>
inline void launch_per_element(void (*kernel)(Params...), int64_t elements,
                               cudaStream_t stream, const Args&... args) {
  launch(kernel, blocks_for(elements), kThreads, stream, args...);
}

// Element (b, j) of a [B, width] step, one per thread; returns false past the end.
__device__ __forceinline__ bool element(int64_t B, int64_t width, int64_t& b, int64_t& j) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= B * width) return false;
  b = e / width;
  j = e - b * width;
  return true;
}

// Explicit instantiation for every (storage, accumulation) pair fastrnn supports.
#define FASTRNN_FOR_EACH_TYPE_PAIR(MACRO) \
  MACRO(float, float)                     \
  MACRO(double, double)                   \
  MACRO(__half, float)                    \
  MACRO(__nv_bfloat16, float)

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
