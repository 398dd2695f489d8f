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
#include "cpu/layernorm_rows.h"
#include "cpu/levels.h"

namespace fastrnn {
namespace cpu {
namespace FASTRNN_CPU_LEVEL {

void lstm_forward(const LstmForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_lstm_forward_cpu", [&] {
    const SequenceArgs& seq = args.seq;
    device.prepare<scalar_t>(seq.T, seq.B,
                             {{args.w_hh, 4 * seq.H, seq.P, 1}, {args.w_hr, seq.P, seq.H, 1}});
    lstm_forward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void lstm_backward(const LstmBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_lstm_backward_cpu", [&] {
    const SequenceArgs& seq = args.seq;
    device.prepare<scalar_t>(seq.T, seq.B,
                             {{args.w_hh, 4 * seq.H, seq.P, 1}, {args.w_hr, seq.P, seq.H, 1}},
                             /*transposed_b=*/false);
    lstm_backward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void gru_forward(const GruForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_gru_forward_cpu", [&] {
    // the reset-before GRU multiplies W_hn apart from W_hr and W_hz
    const int64_t segments = args.reset_after ? 1 : 3;
    device.prepare<scalar_t>(args.seq.T, args.seq.B,
                             {{args.w_hh, 3 * args.seq.H, args.seq.H, segments}});
    gru_forward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void gru_backward(const GruBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_gru_backward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.T, args.seq.B, {{args.w_hh, 3 * args.seq.H, args.seq.H, 1}},
                             /*transposed_b=*/false);
    gru_backward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void rnn_forward(const RnnForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_rnn_forward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.T, args.seq.B, {{args.w_hh, args.seq.H, args.seq.H, 1}});
    rnn_forward_sequence<scalar_t, at::opmath_type<scalar_t>>(device, args);
  });
}

void rnn_backward(const RnnBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, args.seq.dtype, "fastrnn_rnn_backward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.T, args.seq.B, {{args.w_hh, args.seq.H, args.seq.H, 1}},
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

// transpose32 (levels.h) in register tiles of kTile x kTile (at::vec::transpose_mxn: 8 x 8
// on AVX2, 16 x 16 on AVX-512) within blocks of 64 x 64, the blocks over the threads from
// 1 M elements up (a small weight is transposed faster than the threads wake). A weight is
// transposed for every call that packs it. Measured on one core of the AMD AVX2 VM, float32:
// 384 x 128 26 -> 8 us, 2048 x 512 (in L3) 2.6 -> 0.4 ms, 4096 x 1024 (from memory) 9.3 ->
// 3.8 ms, against cpu::transpose's scalar tiles.
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
void transpose32(const uint32_t* src_words, int64_t rows, int64_t cols, int64_t ld,
                 uint32_t* dst_words) {
  // the tiles move floats' bits with loads, shuffles and stores only: any 32-bit pattern
  const float* src = reinterpret_cast<const float*>(src_words);
  float* dst = reinterpret_cast<float*>(dst_words);
  constexpr int kTile = at::vec::Vectorized<float>::size();
  constexpr int64_t kBlock = 64;
  const int64_t col_blocks = (cols + kBlock - 1) / kBlock;
  const int64_t blocks = (rows + kBlock - 1) / kBlock * col_blocks;
  auto transpose_blocks = [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t r0 = task / col_blocks * kBlock, c0 = task % col_blocks * kBlock;
      const int64_t r1 = std::min(rows, r0 + kBlock), c1 = std::min(cols, c0 + kBlock);
      int64_t c = c0;
      for (; c + kTile <= c1; c += kTile) {
        int64_t r = r0;
        for (; r + kTile <= r1; r += kTile) {
          at::vec::transpose_mxn<float, kTile, kTile>(src + r * ld + c, ld, dst + c * rows + r,
                                                      rows);
        }
        for (; r < r1; ++r) {  // rows left below the last tile
          for (int64_t j = c; j < c + kTile; ++j) {
            dst_words[j * rows + r] = src_words[r * ld + j];
          }
        }
      }
      for (; c < c1; ++c) {  // columns left right of the last tile
        for (int64_t r = r0; r < r1; ++r) dst_words[c * rows + r] = src_words[r * ld + c];
      }
    }
  };
  if (rows * cols >= (int64_t{1} << 20) && !at::in_parallel_region()) {
    at::parallel_for(0, blocks, 1, transpose_blocks);
  } else {
    transpose_blocks(0, blocks);
  }
}
constexpr auto kTranspose32 = &transpose32;
#else
constexpr decltype(SimdLevel::transpose32) kTranspose32 = nullptr;
#endif

#define FASTRNN_NAME_OF(level) #level
#define FASTRNN_NAME(level) FASTRNN_NAME_OF(level)

// This level, for backend.cpp.
const SimdLevel* level() {
  static const Backend layers{&lstm_forward, &lstm_backward, &gru_forward,
                              &gru_backward, &rnn_forward,   &rnn_backward};
  static const SimdLevel level{FASTRNN_NAME(FASTRNN_CPU_LEVEL), &layers, &gemv, &gemv_bf16,
                               &round_to_bf16, kTranspose32, &layernorm_lstm_forward,
                               &layernorm_lstm_backward, &layernorm_gru_forward,
                               &layernorm_gru_backward};
  return &level;
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cpu
}  // namespace fastrnn
