// Registers one device's back-end: its six entry points (namespace NS, one per operator,
// running the layer's whole sequence) for the drivers to find, and the drivers as the
// operators' kernels for its dispatch key. Used once per device (cpu/backend.cpp,
// cuda/backend.cpp).
#pragma once

#include <torch/library.h>

#include "backend.h"
#include "drivers.h"

#define FASTRNN_REGISTER_BACKEND(NS, DEVICE)                                               \
  namespace fastrnn {                                                                      \
  namespace NS {                                                                           \
  void lstm_forward(const LstmForwardArgs&);                                               \
  void lstm_backward(const LstmBackwardArgs&);                                             \
  void gru_forward(const GruForwardArgs&);                                                 \
  void gru_backward(const GruBackwardArgs&);                                               \
  void rnn_forward(const RnnForwardArgs&);                                                 \
  void rnn_backward(const RnnBackwardArgs&);                                               \
  namespace {                                                                              \
  const Backend kBackend{&lstm_forward, &lstm_backward, &gru_forward,                      \
                         &gru_backward, &rnn_forward,   &rnn_backward};                    \
  [[maybe_unused]] const bool registered = register_backend(c10::DeviceType::DEVICE,       \
                                                            &kBackend);                    \
  }                                                                                        \
  }                                                                                        \
  TORCH_LIBRARY_IMPL(fastrnn, DEVICE, m) {                                                 \
    m.impl("lstm_forward", &fastrnn::lstm_forward);                                        \
    m.impl("lstm_backward", &fastrnn::lstm_backward);                                      \
    m.impl("gru_forward", &fastrnn::gru_forward);                                          \
    m.impl("gru_backward", &fastrnn::gru_backward);                                        \
    m.impl("rnn_forward", &fastrnn::rnn_forward);                                          \
    m.impl("rnn_backward", &fastrnn::rnn_backward);                                        \
    m.impl("linear", &fastrnn::linear);                                                    \
  }                                                                                        \
  }
