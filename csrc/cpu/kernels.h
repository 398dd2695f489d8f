// The CPU back-end's six entry points (the shared walks of ../sequence/ on the CPU Device,
// device.h, for float, double and bfloat16 with float accumulation), compiled once per SIMD
// level: kernels_portable.cpp, kernels_avx2.cpp and kernels_avx512.cpp include this file
// after switching their instructions on with GCC's target pragma, and backend.cpp picks
// one level's table at load time, the level ATen itself runs at (so ATEN_CPU_CAPABILITY=avx2
// forces the AVX2 code).
//
// Why a pragma and a namespace per level rather than per-file compiler flags: the linker
// keeps one copy of each inline function, and a copy compiled with AVX-512 must not serve
// the AVX2 or portable level. So everything shared is included first, for the baseline
// (kernels_common.h), and everything compiled here (device.h, simd.h, the cell templates)
// lives in fastrnn::cpu::FASTRNN_CPU_LEVEL or takes that level's Vectorized type.
// tests/test_simd_levels.py checks the library for AVX code outside those names.
#pragma once

#ifndef FASTRNN_CPU_LEVEL
#error "include kernels.h from a kernels_<level>.cpp, which names its level"
#endif

#include <ATen/cpu/vec/vec.h>

#include "cpu/device.h"
#include "cpu/levels.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {

void lstm_forward(const LstmForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_lstm_forward_cpu", [&] {
    const SequenceArgs& seq = args.seq;
    device.prepare<scalar_t>(seq.B, {{args.w_hh, 4 * seq.H, seq.P, 4}, {args.w_hr, seq.P, seq.H, 1}});
    lstm_forward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void lstm_backward(const LstmBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_lstm_backward_cpu", [&] {
    const SequenceArgs& seq = args.seq;
    device.prepare<scalar_t>(seq.B, {{args.w_hh, 4 * seq.H, seq.P, 4}, {args.w_hr, seq.P, seq.H, 1}},
                             /*transposed_b=*/false);
    lstm_backward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void gru_forward(const GruForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_gru_forward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.B, {{args.w_hh, 3 * args.seq.H, args.seq.H, 3}});
    gru_forward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void gru_backward(const GruBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_gru_backward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.B, {{args.w_hh, 3 * args.seq.H, args.seq.H, 3}},
                             /*transposed_b=*/false);
    gru_backward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void rnn_forward(const RnnForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_rnn_forward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.B, {{args.w_hh, args.seq.H, args.seq.H, 1}});
    rnn_forward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void rnn_backward(const RnnBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_rnn_backward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.B, {{args.w_hh, args.seq.H, args.seq.H, 1}},
                             /*transposed_b=*/false);
    rnn_backward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void gemv(int64_t N, int64_t K, const float* w, int64_t ldw, const float* x, const float* bias,
          float* y) {
  if (bias != nullptr) std::memcpy(y, bias, sizeof(float) * N);
  gemv_rows<float>(N, K, w, ldw, x, y, /*accumulate=*/bias != nullptr);
}

void gemv_bf16(int64_t N, int64_t K, const c10::BFloat16* w, int64_t ldw,
               const c10::BFloat16* x, const c10::BFloat16* bias, c10::BFloat16* y) {
  std::vector<float> sums(N);
  if (bias != nullptr) std::copy_n(bias, N, sums.begin());
  gemv_rows<float>(N, K, w, ldw, x, sums.data(), /*accumulate=*/bias != nullptr);
  std::copy_n(sums.begin(), N, y);
}

void round_to_bf16(int64_t n, const float* src, const float* bias, c10::BFloat16* dst) {
  for_each_lane<float>(0, n, [&](auto lanes, int64_t j) {
    const auto sum = bias == nullptr ? lanes.load(src + j)
                                     : lanes.load(src + j) + lanes.load(bias + j);
    lanes.store(dst + j, sum);
  });
}

#define FASTRNN_NAME_OF(level) #level
#define FASTRNN_NAME(level) FASTRNN_NAME_OF(level)

// This level, for backend.cpp.
const SimdLevel* level() {
  static const Backend layers{&lstm_forward, &lstm_backward, &gru_forward,
                              &gru_backward, &rnn_forward,   &rnn_backward};
  static const SimdLevel level{FASTRNN_NAME(FASTRNN_CPU_LEVEL), &layers, &gemv, &gemv_bf16,
                               &round_to_bf16};
  return &level;
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
