// The CPU kernels (kernels.h) for processors with AVX-512 (F, BW, VL, DQ) and FMA: the set
// ATen's AVX512 capability requires.
#define FASTRNN_CPU_LEVEL avx512
#include "cpu/kernels_common.h"

#if FASTRNN_X86_LEVELS
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
// In C++ the pragma leaves the ISA macros undefined; SLEEF's header declares the vector
// functions ATen's Vectorized calls only under them.
#define __AVX__ 1
#define __AVX2__ 1
#define __AVX512F__ 1
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "cpu/kernels.h"
static_assert(at::vec::Vectorized<float>::size() == 16, "AVX-512 holds 16 floats");
#else
FASTRNN_CPU_LEVEL_NOT_BUILT
#endif
