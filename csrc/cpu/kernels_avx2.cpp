// The CPU kernels (kernels.h) for processors with AVX2 and FMA: the set ATen's AVX2
// capability requires.
#define FASTRNN_CPU_LEVEL avx2
#include "cpu/kernels_common.h"

#if FASTRNN_X86_LEVELS
#pragma GCC target("avx2,fma")
// In C++ the pragma leaves the ISA macros undefined; SLEEF's header declares the vector
// functions ATen's Vectorized calls only under them.
#define __AVX__ 1
#define __AVX2__ 1
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "cpu/kernels.h"
static_assert(at::vec::Vectorized<float>::size() == 8, "AVX2 holds 8 floats");
#else
FASTRNN_CPU_LEVEL_NOT_BUILT
#endif
