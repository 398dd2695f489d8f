// Which build of the CUDA back-end this is. The same sources build twice: for the GPU, by
// nvcc against the CUDA toolkit, and for the CPU as the CUDA emulation (csrc/cuda_emu/,
// whose emulated.h defines FASTRNN_CUDA_EMULATED first), against its own runtime. Each
// build's code lives in an inline namespace of its own, fastrnn::cuda::gpu or
// fastrnn::cuda::emulated, so that one library holds both without sharing a symbol.
#pragma once

#ifdef FASTRNN_CUDA_EMULATED
#include "cuda_emu/runtime.h"
#define FASTRNN_CUDA_TARGET emulated
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define FASTRNN_CUDA_TARGET gpu
#endif
