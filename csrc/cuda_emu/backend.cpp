// The CUDA back-end's entry points (cuda/{lstm,gru,rnn}.cpp: the shared walks on the CUDA
// Device, cuBLAS and the kernel launches), as they are, compiled for the CPU (emulated.h);
// and whether CPU tensors run them (FASTRNN_EMULATE_CUDA=1 at load time: cpu/backend.cpp).
#include "cuda_emu/emulated.h"

#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <tuple>

#include "cuda/gru.cpp"
#include "cuda/lstm.cpp"
#include "cuda/rnn.cpp"
#include "cuda/entry_points.h"

namespace fastrnn {

bool cuda_emulated() {
  static const bool emulated = [] {
    const char* value = std::getenv("FASTRNN_EMULATE_CUDA");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }();
  return emulated;
}

const Backend& emulated_cuda_backend() { return cuda::emulated::kBackend; }

}  // namespace fastrnn

// The emulation's controls, for the tests: whether it runs, the thread order, its counters.
TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("cuda_emulated() -> bool", [] { return fastrnn::cuda_emulated(); });
  m.def("emulated_cuda_thread_order(str order) -> ()", [](c10::string_view order) {
    using fastrnn::cuda::emulated::ThreadOrder;
    ThreadOrder chosen = ThreadOrder::Forward;
    if (order == "reverse") {
      chosen = ThreadOrder::Reverse;
    } else if (order == "shuffled") {
      chosen = ThreadOrder::Shuffled;
    } else {
      TORCH_CHECK(order == "forward", "fastrnn::emulated_cuda_thread_order: order must be "
                  "'forward', 'reverse' or 'shuffled', got '", order, "'");
    }
    fastrnn::cuda::emulated::set_thread_order(chosen);
  });
  // (launches, threads, cublasGemmEx calls) since the library loaded
  m.def("emulated_cuda_counters() -> (int, int, int)", [] {
    const auto& c = fastrnn::cuda::emulated::counters();
    return std::make_tuple(c.launches, c.threads, c.gemms);
  });
}
