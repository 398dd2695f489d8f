// What each SIMD level of the CPU kernels provides (kernels.h), and the level chosen when
// the library loads (backend.cpp). Generic code reaches level code only through this.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>
#include <cstring>

#include "backend.h"

namespace fastrnn {
namespace cpu {

struct SimdLevel {
  const char* name;  // "avx512", "avx2" or "portable"
  const Backend* layers;
  // y [N] = W [N, K] x [K] (+ bias [N] where not null), W's rows ldw apart: the product of
  // a single row (batch 1), over the threads.
  void (*gemv)(int64_t N, int64_t K, const float* w, int64_t ldw, const float* x,
               const float* bias, float* y);
  // The same in bfloat16, summed in float32 and rounded once.
  void (*gemv_bf16)(int64_t N, int64_t K, const c10::BFloat16* w, int64_t ldw,
                    const c10::BFloat16* x, const c10::BFloat16* bias, c10::BFloat16* y);
  // dst [n] = src [n] (+ bias [n] where not null), rounded to bfloat16 (nearest even): a
  // bf16 product's float32 accumulator, written out.
  void (*round_to_bf16)(int64_t n, const float* src, const float* bias, c10::BFloat16* dst);
  // dst [cols, rows] = src [rows, cols]^T for 32-bit elements (float, or bf16 pairs), src
  // rows ld apart, dst contiguous; null at the portable level (cpu::transpose's own tiles).
  void (*transpose32)(const uint32_t* src, int64_t rows, int64_t cols, int64_t ld,
                      uint32_t* dst);

  // The layer-normalised LSTM's walks through a sequence, forward and backward (params.h).
  void (*layernorm_lstm_forward)(const LayerNormLstmForwardArgs& args);
  void (*layernorm_lstm_backward)(const LayerNormLstmBackwardArgs& args);
  // The layer-normalised GRU's, both reset forms.
  void (*layernorm_gru_forward)(const LayerNormGruForwardArgs& args);
  void (*layernorm_gru_backward)(const LayerNormGruBackwardArgs& args);

  // AVX-512: oneDNN's brgemm then runs it too, where MKL on an AMD processor stays on AVX2.
  bool avx512() const { return std::strcmp(name, "avx512") == 0; }
};

// The level ATen runs its own CPU kernels at (ATEN_CPU_CAPABILITY honoured), or the
// widest below it that this build holds.
const SimdLevel& simd_level();

}  // namespace cpu
}  // namespace fastrnn
