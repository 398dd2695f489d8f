// The CUDA back-end (cuda/{lstm,gru,rnn}.cpp), and the drivers as the operators' CUDA
// kernels. Compiled only when fastrnn is built with CUDA.
#include "backend_registration.h"

FASTRNN_REGISTER_BACKEND(cuda, CUDA)
