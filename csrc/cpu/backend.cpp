// The CPU back-end (cpu/{lstm,gru,rnn}.cpp), and the drivers as the operators' CPU kernels.
#include "backend_registration.h"

FASTRNN_REGISTER_BACKEND(cpu, CPU)
