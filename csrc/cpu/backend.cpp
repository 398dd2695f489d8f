// The CPU back-end: one of the SIMD levels' kernel tables (kernels.h), chosen when the
// library loads, and the drivers as the operators' CPU kernels. The operator
// fastrnn::cpu_simd_level() names the level chosen.
#include <ATen/Version.h>

#include <string>

#include "backend_registration.h"

namespace fastrnn {
namespace cpu {

namespace avx512 { const Backend* kernels(); }
namespace avx2 { const Backend* kernels(); }
namespace portable { const Backend* kernels(); }

struct SimdLevel {
  const char* name;
  const Backend* kernels;
};

// The level ATen runs its own CPU kernels at: it has checked the processor and honours
// ATEN_CPU_CAPABILITY (avx512, avx2, default). A level this build lacks (a compiler other
// than GCC, a processor other than x86-64) steps down to the next one it has.
const SimdLevel& simd_level() {
  static const SimdLevel level = [] {
    const std::string aten = at::get_cpu_capability();
    if (aten == "AVX512" && avx512::kernels() != nullptr) {
      return SimdLevel{"avx512", avx512::kernels()};
    }
    if ((aten == "AVX512" || aten == "AVX2") && avx2::kernels() != nullptr) {
      return SimdLevel{"avx2", avx2::kernels()};
    }
    return SimdLevel{"portable", portable::kernels()};
  }();
  return level;
}

}  // namespace cpu
}  // namespace fastrnn

FASTRNN_REGISTER_BACKEND(CPU, fastrnn::cpu::simd_level().kernels)

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("cpu_simd_level() -> str", [] { return std::string(fastrnn::cpu::simd_level().name); });
}
