// The GRU's walk through a sequence, in both reset forms, written once for every device
// that runs it step by step (see sequence/lstm.h for the Device policy).
//  * reset after (torch.nn): one GEMM h W_hh^T per step, one point-wise step.
//  * reset before (Cho et al.): GEMM for r and z, point-wise, GEMM (r*h) W_hn^T, point-wise.
// Saved for backward: post-activation gates and, per step, the n-part that backward cannot
// rebuild: W_hn h + b_hn (reset after) or r * h (reset before).
#pragma once

#include "params.h"
#include "sequence/common.h"
#include "steps.h"

namespace fastrnn {

template <class T, class A, class Device>
void gru_forward_sequence(Device& dev, const GruForwardArgs& a) {
  const SequenceArgs& s = a.seq;
  const int64_t B = s.B, H = s.H, G = 3 * H;
  const StateHistory<T> hs{static_cast<T*>(a.hs), B * H, s.T, s.reverse, s.keep_all};
  const T* w_hh = static_cast<const T*>(a.w_hh);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = forward_time(step, s.T, s.reverse);
    A* gates = static_cast<A*>(a.gates) + (s.keep_all ? t * B * G : 0);
    T* extra = static_cast<T*>(a.extra) + (s.keep_all ? t * B * H : 0);
    const T* h_prev = hs.prev(step, t);
    const GruForwardStep<T, A> args{{s.lengths, t, B, H}, gates,
                                    static_cast<const T*>(a.input_gates) + t * B * G,
                                    static_cast<const T*>(a.b_hh), h_prev, hs.next(step, t),
                                    static_cast<T*>(a.output) + t * B * H, extra,
                                    s.keep_all,
                                    zoneout_at<T>(a.zoneout_h, a.zoneout_p, t, B, H)};
    const int64_t rows = s.rows_running(t);  // finished rows: no GEMM (see SequenceArgs)
    if (a.reset_after) {
      dev.gemm(false, true, rows, G, H, h_prev, H, w_hh, H, 0.0, gates, G, true);
      dev.gru_forward_step(args);
      continue;
    }
    dev.gemm(false, true, rows, 2 * H, H, h_prev, H, w_hh, H, 0.0, gates, G, true);
    dev.gru_cho_gates_step(args);
    dev.gemm(false, true, rows, H, H, static_cast<const T*>(extra), H, w_hh + 2 * H * H, H,
             0.0, gates + 2 * H, G, true);
    dev.gru_cho_candidate_step(args);
  }
}

template <class T, class A, class Device>
void gru_backward_sequence(Device& dev, const GruBackwardArgs& a) {
  const SequenceArgs& s = a.seq;
  const int64_t B = s.B, H = s.H, G = 3 * H;
  const StateHistory<const T> hs{static_cast<const T*>(a.hs), B * H, s.T, s.reverse, true};
  const T* w_hh = static_cast<const T*>(a.w_hh);
  A* dh = static_cast<A*>(a.dh);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = backward_time(step, s.T, s.reverse);
    const StepInfo info{s.lengths, t, B, H};
    const int64_t rows = s.rows_running(t);  // finished rows: no GEMM (see SequenceArgs)
    if (a.grad_output != nullptr) {
      const T* grad_output_t = static_cast<const T*>(a.grad_output) + t * a.grad_output_step;
      dev.add_output_grad(info, H, grad_output_t, dh);
    }
    T* grad_gates = static_cast<T*>(a.grad_gates) + t * B * G;
    T* grad_hh_n = a.reset_after ? static_cast<T*>(a.grad_hh_n) + t * B * H : nullptr;
    const GruBackwardStep<T, A> args{info, static_cast<const A*>(a.gates) + t * B * G,
                                     static_cast<const T*>(a.extra) + t * B * H,
                                     hs.prev(step, t), dh, grad_gates, grad_hh_n,
                                     static_cast<A*>(a.dz), static_cast<const A*>(a.d_reset_h),
                                     zoneout_at<T>(a.zoneout_h, a.zoneout_p, t, B, H)};
    if (a.reset_after) {
      // dh_prev += (dr, dz) W_hr,hz + dhh_n W_hn: the r and z parts of the recurrent
      // pre-activations' gradient are the input gates', so only its n-part is kept apart
      // ([T, B, H], not a second [T, B, 3H])
      dev.gru_backward_step(args);
      dev.gemm(false, false, rows, H, 2 * H, static_cast<const T*>(grad_gates), G, w_hh, H,
               1.0, dh, H, true);
      dev.gemm(false, false, rows, H, H, static_cast<const T*>(grad_hh_n), H, w_hh + 2 * H * H,
               H, 1.0, dh, H, true);
      continue;
    }
    // reset before: the candidate's backward, d(r*h) through W_hn, then the gates' backward
    dev.gru_cho_candidate_backward_step(args);
    dev.gemm(false, false, rows, H, H, static_cast<const T*>(grad_gates + 2 * H), G,
             w_hh + 2 * H * H, H, 0.0, a.d_reset_h, H, true);
    dev.gru_cho_gates_backward_step(args);
    dev.gemm(false, false, rows, H, 2 * H, static_cast<const T*>(grad_gates), G, w_hh, H,
             1.0, dh, H, true);
  }
}

}  // namespace fastrnn
