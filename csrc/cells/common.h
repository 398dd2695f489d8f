// Shared helpers for the cell headers: the host/device qualifier and scalar activations.
//
// Every cell header is written once and used twice: by CUDA threads on scalars (float,
// double) and by the CPU on SIMD vectors. The CPU adds vector overloads of these
// activations (csrc/cpu/simd.h) *before* it includes the cell headers, so that ordinary
// name lookup inside the cell templates finds them.
#pragma once

#include <cmath>
#include <cstdint>

// The CPU kernels are compiled once per SIMD level (cpu/kernels.h), each level in a namespace
// of its own, the cell templates included: for a float lane they would otherwise be the
// same inline function compiled three ways, of which the linker keeps one. Everything else
// (CUDA, the drivers) compiles the portable level.
#ifndef FASTRNN_CPU_LEVEL
#define FASTRNN_CPU_LEVEL portable
#endif

#if defined(__CUDACC__)
#define FASTRNN_HD __host__ __device__ __forceinline__
#else
#define FASTRNN_HD inline
#endif

namespace fastrnn {

// Gates per hidden unit, in torch.nn's order: LSTM (i, f, g, o), GRU (r, z, n), Elman (one).
constexpr int64_t kLstmGates = 4;
constexpr int64_t kGruGates = 3;
constexpr int64_t kRnnGates = 1;

namespace cells {

FASTRNN_HD float sigmoid(float x) { return 1.f / (1.f + ::expf(-x)); }
FASTRNN_HD double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
FASTRNN_HD float tanh_act(float x) { return ::tanhf(x); }
FASTRNN_HD double tanh_act(double x) { return ::tanh(x); }
// Written so that NaN passes through, as in torch.relu (a NaN compares false).
FASTRNN_HD float relu_act(float x) { return x < 0.f ? 0.f : x; }
FASTRNN_HD double relu_act(double x) { return x < 0.0 ? 0.0 : x; }
// d relu(a) / da expressed through the output y = relu(a), times the incoming gradient;
// like torch's threshold_backward, only y <= 0 stops it (a NaN output lets it through).
FASTRNN_HD float relu_grad(float y, float dy) { return y <= 0.f ? 0.f : dy; }
FASTRNN_HD double relu_grad(double y, double dy) { return y <= 0.0 ? 0.0 : dy; }

}  // namespace cells
}  // namespace fastrnn
