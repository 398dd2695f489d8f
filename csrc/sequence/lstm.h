// The LSTM's walk through a sequence, written once for every device that runs it step by
// step: per step one recurrent GEMM into the gates buffer, one point-wise step
// (cells/lstm.h) and, with a projection, a GEMM to the projected state. `Device` supplies
// the GEMM and the point-wise steps (cpu/device.h, cuda/device.h); T is the storage type,
// A the accumulation type.
#pragma once

#include "params.h"
#include "sequence/common.h"
#include "steps.h"

namespace fastrnn {

template <class T, class A, class Device>
void lstm_forward_sequence(Device& dev, const LstmForwardArgs& a) {
  const SequenceArgs& s = a.seq;
  const int64_t B = s.B, H = s.H, P = s.P, G = 4 * H;
  const bool has_proj = a.w_hr != nullptr;
  const StateHistory<T> hs{static_cast<T*>(a.hs), B * P, s.T, s.reverse, s.keep_all};
  const StateHistory<A> cs{static_cast<A*>(a.cs), B * H, s.T, s.reverse, s.keep_all};
  const T* w_hh = static_cast<const T*>(a.w_hh);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = forward_time(step, s.T, s.reverse);
    const StepInfo info{s.lengths, t, B, H};
    A* gates = static_cast<A*>(a.gates) + (s.keep_all ? t * B * G : 0);
    T* proj_in = has_proj ? static_cast<T*>(a.proj_in) + (s.keep_all ? t * B * H : 0)
                          : nullptr;
    T* out = static_cast<T*>(a.output) + t * B * P;
    const int64_t rows = s.rows_running(t);  // finished rows: no GEMM (see SequenceArgs)
    const Zoneout<T> zoneout_h = zoneout_at<T>(a.zoneout_h, a.zoneout_p, t, B, P);
    dev.gemm(false, true, rows, G, P, hs.prev(step, t), P, w_hh, P, 0.0, gates, G, true);
    dev.lstm_forward_step(LstmForwardStep<T, A>{
        info, gates, static_cast<const T*>(a.input_gates) + t * B * G,
        static_cast<const T*>(a.b_hh), cs.prev(step, t), cs.next(step, t), hs.prev(step, t),
        hs.next(step, t), out, proj_in, s.keep_all,
        zoneout_at<T>(a.zoneout_c, a.zoneout_p, t, B, H),
        has_proj ? Zoneout<T>{} : zoneout_h,
        a.cells == nullptr ? nullptr : static_cast<T*>(a.cells) + t * B * H});
    if (has_proj) {  // h = proj_in W_hr^T, then finished rows keep h_prev and write zeros
      dev.gemm(false, true, rows, P, H, proj_in, H, static_cast<const T*>(a.w_hr), H, 0.0,
               hs.next(step, t), P, false);
      dev.mask_projected_state(info, P, hs.prev(step, t), hs.next(step, t), out, zoneout_h);
    }
  }
}

template <class T, class A, class Device>
void lstm_backward_sequence(Device& dev, const LstmBackwardArgs& a) {
  const SequenceArgs& s = a.seq;
  const int64_t B = s.B, H = s.H, P = s.P, G = 4 * H;
  const bool has_proj = a.w_hr != nullptr;
  const StateHistory<const A> cs{static_cast<const A*>(a.cs), B * H, s.T, s.reverse, true};
  A* dh = static_cast<A*>(a.dh);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = backward_time(step, s.T, s.reverse);
    const StepInfo info{s.lengths, t, B, H};
    const int64_t rows = s.rows_running(t);  // finished rows: no GEMM (see SequenceArgs)
    if (a.grad_output != nullptr) {
      const T* grad_output_t = static_cast<const T*>(a.grad_output) + t * a.grad_output_step;
      dev.add_output_grad(info, P, grad_output_t, dh);
    }
    if (a.grad_cells != nullptr) {  // the cell-state outputs' gradient joins that of c_t
      const T* grad_cells_t = static_cast<const T*>(a.grad_cells) + t * a.grad_cells_step;
      dev.add_output_grad(info, H, grad_cells_t, static_cast<A*>(a.dc));
    }
    // dh_cell: the gradient reaching o * tanh(c). Without a projection it is dh itself,
    // which each active row then hands over to the recurrent GEMM (dh := 0 first).
    const A* dh_cell = dh;
    const Zoneout<T> zoneout_h = zoneout_at<T>(a.zoneout_h, a.zoneout_p, t, B, P);
    if (has_proj) {
      T* dproj = static_cast<T*>(a.grad_proj_out) + t * B * P;
      dev.split_projection_grad(info, P, dh, dproj, zoneout_h);
      dev.gemm(false, false, rows, H, P, static_cast<const T*>(dproj), P,
               static_cast<const T*>(a.w_hr), H, 0.0, a.grad_proj_in, H, true);
      dh_cell = static_cast<const A*>(a.grad_proj_in);
    }
    T* grad_gates = static_cast<T*>(a.grad_gates) + t * B * G;
    dev.lstm_backward_step(LstmBackwardStep<T, A>{
        info, static_cast<const A*>(a.gates) + t * B * G, cs.prev(step, t), cs.next(step, t),
        dh_cell, static_cast<A*>(a.dc), dh, grad_gates, !has_proj,
        zoneout_at<T>(a.zoneout_c, a.zoneout_p, t, B, H), has_proj ? Zoneout<T>{} : zoneout_h});
    // dh_prev = (pass-through of finished sequences) + grad_gates_t W_hh
    dev.gemm(false, false, rows, P, G, static_cast<const T*>(grad_gates), G,
             static_cast<const T*>(a.w_hh), P, 1.0, dh, P, true);
  }
}

}  // namespace fastrnn
