// Registers one device's back-end: its table of entry points (backend.h) for the drivers to
// find, and the drivers as the operators' kernels for its dispatch key. Used once per device
// (cpu/backend.cpp, cuda/backend.cpp).
#pragma once

#include <torch/library.h>

#include "backend.h"
#include "drivers.h"

#define FASTRNN_REGISTER_BACKEND(DEVICE, BACKEND)                                         \
  namespace {                                                                             \
  [[maybe_unused]] const bool fastrnn_backend_registered =                                \
      fastrnn::register_backend(c10::DeviceType::DEVICE, BACKEND);                        \
  }                                                                                       \
  TORCH_LIBRARY_IMPL(fastrnn, DEVICE, m) {                                                \
    m.impl("lstm_forward", &fastrnn::lstm_forward);                                       \
    m.impl("lstm_backward", &fastrnn::lstm_backward);                                     \
    m.impl("gru_forward", &fastrnn::gru_forward);                                         \
    m.impl("gru_backward", &fastrnn::gru_backward);                                       \
    m.impl("rnn_forward", &fastrnn::rnn_forward);                                         \
    m.impl("rnn_backward", &fastrnn::rnn_backward);                                       \
    m.impl("stack_forward", &fastrnn::stack_forward);                                     \
    m.impl("linear", &fastrnn::linear);                                                   \
    m.impl("linear_weight_grads", &fastrnn::linear_weight_grads);                         \
  }
