// The CUDA back-end (cuda/{lstm,gru,rnn}.cpp), and the drivers as the operators' CUDA
// kernels. Compiled only when fastrnn is built with CUDA.
#include "backend_registration.h"

namespace fastrnn {
namespace cuda {

void lstm_forward(const LstmForwardArgs&);
void lstm_backward(const LstmBackwardArgs&);
void gru_forward(const GruForwardArgs&);
void gru_backward(const GruBackwardArgs&);
void rnn_forward(const RnnForwardArgs&);
void rnn_backward(const RnnBackwardArgs&);

const Backend kBackend{&lstm_forward, &lstm_backward, &gru_forward,
                       &gru_backward, &rnn_forward,   &rnn_backward};

}  // namespace cuda
}  // namespace fastrnn

FASTRNN_REGISTER_BACKEND(CUDA, &fastrnn::cuda::kBackend)
