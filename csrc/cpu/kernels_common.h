// What the CPU kernels of every SIMD level (kernels.h) share, compiled for the baseline
// processor: included by kernels_<level>.cpp *before* it enables its instructions, so that
// the inline functions of these headers are the same machine code in every level.
#pragma once

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/NumericUtils.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/native/Math.h>
#include <ATen/native/cpu/zmath.h>

#include <array>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend.h"
#include "cpu/blas.h"
#include "cpu/brgemm.h"
#include "cpu/levels.h"
#include "sequence/gru.h"
#include "sequence/lstm.h"
#include "sequence/rnn.h"
#include "steps.h"

// The AVX2 and AVX-512 levels need GCC's target pragma on x86-64 (clang and other
// processors build the portable level alone).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FASTRNN_X86_LEVELS 1
#include <immintrin.h>
#else
#define FASTRNN_X86_LEVELS 0
#endif

// A level this compiler or processor cannot build: null.
#define FASTRNN_CPU_LEVEL_NOT_BUILT                              \
  namespace fastrnn::cpu::FASTRNN_CPU_LEVEL {                    \
  const SimdLevel* level() { return nullptr; }                   \
  }
