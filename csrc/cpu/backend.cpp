// The CPU back-end: one of the SIMD levels (kernels.h), chosen when the library loads, and
// the drivers as the operators' CPU kernels (which run the emulated CUDA back-end instead
// under FASTRNN_EMULATE_CUDA=1). The operator fastrnn::cpu_simd_level() names
// the level chosen, fastrnn::cpu_bf16_gemm() whether bfloat16 products run natively.
#include <ATen/Version.h>

#include <string>

#include "backend_registration.h"
#include "cpu/brgemm.h"
#include "cpu/levels.h"

namespace fastrnn {
namespace cpu {

namespace avx512 { const SimdLevel* level(); }
namespace avx2 { const SimdLevel* level(); }
namespace portable { const SimdLevel* level(); }

const SimdLevel& simd_level() {
  static const SimdLevel* const chosen = [] {
    // ATen has checked the processor and read ATEN_CPU_CAPABILITY (avx512, avx2, default)
    const std::string aten = at::get_cpu_capability();
    if (aten == "AVX512" && avx512::level() != nullptr) return avx512::level();
    if ((aten == "AVX512" || aten == "AVX2") && avx2::level() != nullptr) return avx2::level();
    return portable::level();
  }();
  return *chosen;
}

}  // namespace cpu
}  // namespace fastrnn

namespace fastrnn {
// CPU tensors' back-end: the CPU's own at its SIMD level, or under FASTRNN_EMULATE_CUDA=1
// the CUDA back-end's code through its emulation (cuda_emu/).
const Backend* cpu_tensor_backend() {
  return cuda_emulated() ? &emulated_cuda_backend() : cpu::simd_level().layers;
}
}  // namespace fastrnn

FASTRNN_REGISTER_BACKEND(CPU, fastrnn::cpu_tensor_backend())

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("cpu_simd_level() -> str", [] { return std::string(fastrnn::cpu::simd_level().name); });
  // whether bfloat16 products run on oneDNN's bf16 micro-kernel here (else the bf16 layers
  // would widen every product to float32, and the Python layers run torch.nn's instead)
  m.def("cpu_bf16_gemm() -> bool", [] { return fastrnn::cpu::brgemm_bf16_usable(); });
}
