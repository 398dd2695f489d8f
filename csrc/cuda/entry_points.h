// The CUDA back-end's entry points (cuda/{lstm,gru,rnn}.cpp) as the drivers' Backend table:
// registered for CUDA tensors by cuda/backend.cpp, and in its emulated build
// (cuda_emu/backend.cpp) for CPU tensors under FASTRNN_EMULATE_CUDA=1.
#pragma once

#include "backend.h"
#include "target.h"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h

void lstm_forward(const LstmForwardArgs&);
void lstm_backward(const LstmBackwardArgs&);
void gru_forward(const GruForwardArgs&);
void gru_backward(const GruBackwardArgs&);
void rnn_forward(const RnnForwardArgs&);
void rnn_backward(const RnnBackwardArgs&);

inline const Backend kBackend{&lstm_forward, &lstm_backward, &gru_forward,
                              &gru_backward, &rnn_forward,   &rnn_backward};

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
