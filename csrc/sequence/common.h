// How a layer walks its sequence, shared by the CPU loops and the CUDA kernels: the order of
// time steps, the state history and the length mask. Host and device code alike.
#pragma once

#include <cstdint>

#include "cells/common.h"
#include "steps.h"

namespace fastrnn {

// Time index of the step-th step of a direction's forward pass; backward walks it backwards.
FASTRNN_HD int64_t forward_time(int64_t step, int64_t T, bool reverse) {
  return reverse ? T - 1 - step : step;
}
FASTRNN_HD int64_t backward_time(int64_t step, int64_t T, bool reverse) {
  return reverse ? step : T - 1 - step;
}

// The slots of the state history that hold the initial and the final state (see
// StateHistory); free functions so that host code can use them before it has pointers.
FASTRNN_HD int64_t initial_state_slot(int64_t T, bool reverse, bool keep_all) {
  return keep_all ? (reverse ? T : 0) : T % 2;
}
FASTRNN_HD int64_t final_state_slot(int64_t T, bool reverse, bool keep_all) {
  return keep_all ? (reverse ? 0 : T) : 0;
}

// One buffer per time step. With the whole history kept (saving for backward), slot t + prev_offset
// holds the state entering time step t, so the weight gradient after the loop reads one
// contiguous [T, B, width] slice whatever the direction. Without it (inference), two slots
// alternate, counted so that the final state lands in slot 0: the driver returns it as a
// view at the buffer's start, as a fresh tensor's metadata reads (torch.compile's fake
// tensors check the storage offset).
template <class scalar_t>
struct StateHistory {
  scalar_t* base;
  int64_t stride;  // B * width
  int64_t steps;   // T
  bool reverse;
  bool keep_all;

  FASTRNN_HD int64_t prev_slot(int64_t step, int64_t t) const {
    return keep_all ? t + (reverse ? 1 : 0) : (steps - step) % 2;
  }
  FASTRNN_HD int64_t next_slot(int64_t step, int64_t t) const {
    return keep_all ? t + (reverse ? 0 : 1) : (steps - step - 1) % 2;
  }
  FASTRNN_HD scalar_t* prev(int64_t step, int64_t t) const {
    return base + stride * prev_slot(step, t);
  }
  FASTRNN_HD scalar_t* next(int64_t step, int64_t t) const {
    return base + stride * next_slot(step, t);
  }
  FASTRNN_HD int64_t initial_slot() const {
    return initial_state_slot(steps, reverse, keep_all);
  }
  FASTRNN_HD int64_t final_slot() const { return final_state_slot(steps, reverse, keep_all); }
  FASTRNN_HD scalar_t* initial() const { return base + stride * initial_slot(); }
  FASTRNN_HD scalar_t* final() const { return base + stride * final_slot(); }
};

// The zoneout of one state at step t (steps.h): its mask's step [B, width], or p alone.
template <class T>
Zoneout<T> zoneout_at(const void* masks, double p, int64_t t, int64_t B, int64_t width) {
  const T* mask = static_cast<const T*>(masks);
  return {mask == nullptr ? nullptr : mask + t * B * width, p};
}

// A sequence b takes part in time step t while t < lengths[b]; after its end it keeps its
// state and writes zeros, so forward and reverse both see exactly its own steps.
struct LengthMask {
  const int64_t* lengths;  // null: every sequence is T long (device memory on a GPU)
  FASTRNN_HD bool active(int64_t b, int64_t t) const {
    return lengths == nullptr || t < lengths[b];
  }
};

}  // namespace fastrnn
