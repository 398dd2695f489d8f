// A device back-end: "run this layer's sequence", forward and backward, for each cell. The
// drivers (csrc/{lstm,gru,rnn}.cpp) find the back-end of their data's device here; each
// back-end registers itself when the extension loads (cpu/backend.cpp, cuda/backend.cpp).
// A back-end is free to run a whole sequence in one call (a persistent kernel, one parallel
// region); today's two run it step by step through the shared templates in sequence/.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>

#include <array>

#include "params.h"

namespace fastrnn {

struct Backend {
  void (*lstm_forward)(const LstmForwardArgs&);
  void (*lstm_backward)(const LstmBackwardArgs&);
  void (*gru_forward)(const GruForwardArgs&);
  void (*gru_backward)(const GruBackwardArgs&);
  void (*rnn_forward)(const RnnForwardArgs&);
  void (*rnn_backward)(const RnnBackwardArgs&);
};

constexpr size_t kDeviceTypes =
    static_cast<size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES);

inline std::array<const Backend*, kDeviceTypes>& backends() {
  static std::array<const Backend*, kDeviceTypes> table{};
  return table;
}

// Called once per back-end at load time; returns true so it can initialise a static.
inline bool register_backend(c10::DeviceType device, const Backend* backend) {
  backends()[static_cast<size_t>(device)] = backend;
  return true;
}

// Whether CPU tensors run the CUDA back-end's code through its emulation (cuda_emu/):
// FASTRNN_EMULATE_CUDA=1 in the environment when the library loaded. The drivers then take
// the CUDA paths around the back-end too (no host-side lengths, at::mm products), so that
// every call has the shapes it has on a GPU.
bool cuda_emulated();
const Backend& emulated_cuda_backend();

// Whether data on `device` runs the CPU back-end's own code (brgemm, host-side lengths).
inline bool on_cpu_backend(c10::Device device) { return device.is_cpu() && !cuda_emulated(); }

inline const Backend& backend_for(c10::DeviceType device) {
  const Backend* backend = backends()[static_cast<size_t>(device)];
  TORCH_CHECK(backend != nullptr, "fastrnn: this build has no kernels for ", device);
  return *backend;
}

}  // namespace fastrnn
