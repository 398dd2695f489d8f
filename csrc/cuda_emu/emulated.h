// Included first by every translation unit of the emulated CUDA back-end (this folder),
// each of which then includes a source of csrc/cuda/ as it is: the CUDA back-end compiled
// as host C++ against runtime.h and cublas.h instead of the CUDA toolkit, into namespaces
// of its own (fastrnn::cuda::emulated, the cells' fastrnn::cells::emulated_cuda), so that
// it links beside the GPU build and the CPU back-end without sharing a symbol with either.
#pragma once

#define FASTRNN_CUDA_EMULATED 1
#define FASTRNN_CPU_LEVEL emulated_cuda  // see cells/common.h
