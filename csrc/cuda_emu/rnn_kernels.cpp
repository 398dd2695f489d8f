// The CUDA back-end's Elman RNN kernels and the output-gradient kernel, as they are,
// compiled for the CPU (emulated.h).
#include "cuda_emu/emulated.h"

#include "cuda/rnn_kernels.cu"
