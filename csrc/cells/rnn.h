// Elman RNN cell, point-wise part of one time step: h' = act(a), act = tanh or relu.
// Backward is written through the output h' (tanh' = 1 - h'^2, relu' = [h' > 0]).
#pragma once

#include "common.h"
#include "zoneout.h"

namespace fastrnn {
namespace cells {
inline namespace FASTRNN_CPU_LEVEL {  // see common.h

template <bool Relu, class V>
FASTRNN_HD V rnn_forward(V a) {
  if constexpr (Relu) {
    return relu_act(a);
  } else {
    return tanh_act(a);
  }
}

template <bool Relu, class V>
FASTRNN_HD V rnn_backward(V h, V dh) {
  if constexpr (Relu) {
    return relu_grad(h, dh);
  } else {
    return dh * (V(1) - h * h);
  }
}

// The same when zoneout left h = zoneout(keep, h_prev, h_new) (zoneout.h): the cell's share
// of dh is (1 - keep) dh, its slope that of its own new state h_new. With a mask (training)
// keep is 0 or 1: where 0, h is h_new itself; where 1 the share is zero. Without one
// (evaluation) keep is the probability: tanh's slope from h_new rebuilt from h, relu's
// from whether h lies above `zeroed`, the state a zero h_new would have left as the forward
// stored it (zoneout(keep, h_prev, 0) rounded to the storage type), so that a unit the relu
// zeroed passes no gradient.
template <bool Relu, class V>
FASTRNN_HD V rnn_backward_under_zoneout(bool masked, V keep, V h_prev, V h, V zeroed, V dh) {
  const V cell_share = (V(1) - keep) * dh;
  if (masked) return rnn_backward<Relu>(h, cell_share);
  if constexpr (Relu) {
    return relu_grad(h - zeroed, cell_share);
  } else {
    return rnn_backward<false>((h - keep * h_prev) / (V(1) - keep), cell_share);
  }
}

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
