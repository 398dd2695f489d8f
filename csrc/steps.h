// The point-wise part of one time step, as the per-step sequence templates (sequence/)
// hand it to a device: raw pointers and sizes, no torch or CUDA headers. The CPU runs each
// on SIMD vectors (cpu/device.h), CUDA as one kernel launch (cuda/*_kernels.cu).
//
// T is the storage type (float, double, and on CUDA __half, __nv_bfloat16) and A the
// accumulation type (double for double, float otherwise). Buffers the recurrent GEMM writes
// (gates, the cell state, the state gradients) are in A; what feeds a GEMM as an operand is
// in T. Shapes are per time step; H hidden units, P = projected size (LSTM) or H.
#pragma once

#include <cstdint>

#include "cells/common.h"  // FASTRNN_HD

namespace fastrnn {

struct StepInfo {
  const int64_t* lengths;  // [B] on the device, or null
  int64_t t, B, H;
};

// Zoneout (Krueger et al. 2016) of one state at one step: each unit keeps its previous
// value with weight keep (cells::zoneout): the step's mask (0 or 1 per unit, drawn for
// training) or, without one, the probability p (its expected value, for evaluation).
// Neither: no zoneout.
template <class T>
struct Zoneout {
  const T* mask = nullptr;  // [B, width] of the step, in the storage type, or null
  double p = 0;  // double: float64 layers apply it exactly
  FASTRNN_HD bool on() const { return mask != nullptr || p != 0; }
};

// ---- LSTM
template <class T, class A>
struct LstmForwardStep {
  StepInfo step;
  A* gates;             // [B, 4H] in: h W_hh^T; out: post-activation i, f, g, o
  const T* x;           // [B, 4H] input gates at t
  const T* bias;        // [4H] or null
  const A* c_prev;      // [B, H]
  A* c_next;            // [B, H]
  const T* h_prev;      // [B, H]   (without projection)
  T* h_next;            // [B, H]   (without projection)
  T* out;               // [B, H]   (without projection)
  T* proj_in;           // [B, H] or null: with a projection o * tanh(c) goes here
  bool save;            // store the post-activation gates (backward needs them)
  Zoneout<T> zoneout_c; // of the cell state
  Zoneout<T> zoneout_h; // of h (without projection; with one, mask_projected_state's)
  T* cells_out = nullptr;  // [B, H] or null: the new cell state, zeros on finished rows
};

template <class T, class A>
struct LstmBackwardStep {
  StepInfo step;
  const A* gates;       // [B, 4H] saved post-activation gates
  const A* c_prev;      // [B, H]
  const A* c_next;      // [B, H]
  const A* dh_cell;     // [B, H] gradient reaching o * tanh(c)
  A* dc;                // [B, H] in: from step t+1; out: to step t-1
  A* dh;                // [B, H] zeroed on active rows when dh_cell == dh (no projection)
  T* dgates;            // [B, 4H] out: pre-activation gradients
  bool zero_dh;         // (with zoneout of h: dh keeps the part that skips the cell)
  Zoneout<T> zoneout_c;
  Zoneout<T> zoneout_h; // without projection (with one: split_projection_grad's)
};

// ---- GRU
template <class T, class A>
struct GruForwardStep {
  StepInfo step;
  A* gates;             // [B, 3H] in: h W_hh^T (reset before: [r, z] slots, then n slot)
  const T* x;           // [B, 3H]
  const T* bias;        // [3H] or null
  const T* h_prev;      // [B, H]
  T* h_next;            // [B, H]
  T* out;               // [B, H]
  T* extra;             // [B, H] W_hn h + b_hn (reset after) or r * h (reset before)
  bool save;            // reset after: store r, z, n and extra (backward needs them);
                        // the reset-before phases always store (the next phase reads them)
  Zoneout<T> zoneout_h;
};

template <class T, class A>
struct GruBackwardStep {
  StepInfo step;
  const A* gates;       // [B, 3H] saved r, z, n
  const T* extra;       // [B, H]
  const T* h_prev;      // [B, H]
  A* dh;                // [B, H] in: gradient of h_t; out: the part skipping the GEMMs
  T* dgates;            // [B, 3H] gradient of the input gates
  T* dhh_n;             // [B, H] gradient of W_hn h + b_hn (reset after only)
  A* dz;                // [B, H] reset before: dz from phase 2 for phase 1
  const A* d_reset_h;   // [B, H] reset before: d(r * h) from the W_hn GEMM
  Zoneout<T> zoneout_h;
};

// ---- Elman RNN
template <class T, class A>
struct RnnForwardStep {
  StepInfo step;
  const A* recurrent;   // [B, H] h W_hh^T
  const T* x;           // [B, H]
  const T* bias;        // [H] or null
  const T* h_prev;      // [B, H]
  T* h_next;            // [B, H]
  T* out;               // [B, H]
  bool relu;
  Zoneout<T> zoneout_h;
};

template <class T, class A>
struct RnnBackwardStep {
  StepInfo step;
  const T* h_new;       // [B, H]
  A* dh;                // [B, H]
  T* dgates;            // [B, H]
  bool relu;
  Zoneout<T> zoneout_h;
  const T* h_prev;      // [B, H] (read with zoneout only: the candidate is rebuilt from it)
};

}  // namespace fastrnn
