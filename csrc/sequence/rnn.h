// The Elman RNN's walk through a sequence, written once for every device that runs it step
// by step (see sequence/lstm.h for the Device policy): per step one GEMM h W_hh^T and one
// point-wise step act(x + h W_hh^T + b), act = tanh or relu.
#pragma once

#include "params.h"
#include "sequence/common.h"
#include "steps.h"

namespace fastrnn {

template <class T, class A, class Device>
void rnn_forward_sequence(Device& dev, const RnnForwardArgs& a) {
  const SequenceArgs& s = a.seq;
  const int64_t B = s.B, H = s.H;
  const StateHistory<T> hs{static_cast<T*>(a.hs), B * H, s.T, s.reverse, s.keep_all};
  A* recurrent = static_cast<A*>(a.recurrent);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = forward_time(step, s.T, s.reverse);
    const int64_t rows = s.rows_running(t);  // finished rows: no GEMM (see SequenceArgs)
    dev.gemm(false, true, rows, H, H, hs.prev(step, t), H, static_cast<const T*>(a.w_hh), H,
             0.0, recurrent, H, true);
    dev.rnn_forward_step(RnnForwardStep<T, A>{
        {s.lengths, t, B, H}, recurrent, static_cast<const T*>(a.input_gates) + t * B * H,
        static_cast<const T*>(a.b_hh), hs.prev(step, t), hs.next(step, t),
        static_cast<T*>(a.output) + t * B * H, a.relu,
        zoneout_at<T>(a.zoneout_h, a.zoneout_p, t, B, H)});
  }
}

template <class T, class A, class Device>
void rnn_backward_sequence(Device& dev, const RnnBackwardArgs& a) {
  const SequenceArgs& s = a.seq;
  const int64_t B = s.B, H = s.H;
  const StateHistory<const T> hs{static_cast<const T*>(a.hs), B * H, s.T, s.reverse, true};
  A* dh = static_cast<A*>(a.dh);
  for (int64_t step = 0; step < s.T; ++step) {
    const int64_t t = backward_time(step, s.T, s.reverse);
    const StepInfo info{s.lengths, t, B, H};
    if (a.grad_output != nullptr) {
      const T* grad_output_t = static_cast<const T*>(a.grad_output) + t * a.grad_output_step;
      dev.add_output_grad(info, H, grad_output_t, dh);
    }
    T* grad_gates = static_cast<T*>(a.grad_gates) + t * B * H;
    dev.rnn_backward_step(RnnBackwardStep<T, A>{
        info, hs.next(step, t), dh, grad_gates, a.relu,
        zoneout_at<T>(a.zoneout_h, a.zoneout_p, t, B, H), hs.prev(step, t)});
    const int64_t rows = s.rows_running(t);  // finished rows: no GEMM (see SequenceArgs)
    dev.gemm(false, false, rows, H, H, static_cast<const T*>(grad_gates), H,
             static_cast<const T*>(a.w_hh), H, 1.0, dh, H, true);
  }
}

}  // namespace fastrnn
