// Elman RNN cell, point-wise part of one time step: h' = act(a), act = tanh or relu.
// Backward is written through the output h' (tanh' = 1 - h'^2, relu' = [h' > 0]).
#pragma once

#include "common.h"

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

}  // namespace FASTRNN_CPU_LEVEL
}  // namespace cells
}  // namespace fastrnn
