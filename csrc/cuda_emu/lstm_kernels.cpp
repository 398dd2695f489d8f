// The CUDA back-end's LSTM kernels, as they are, compiled for the CPU (emulated.h).
#include "cuda_emu/emulated.h"

#include "cuda/lstm_kernels.cu"
