// The CUDA back-end's GRU kernels, as they are, compiled for the CPU (emulated.h).
#include "cuda_emu/emulated.h"

#include "cuda/gru_kernels.cu"
