// The CPU back-end's Elman RNN: the shared walk through the sequence (../sequence/rnn.h) on
// the CPU Device (device.h), for float and double.
#include <ATen/Dispatch.h>

#include "sequence/rnn.h"
#include "device.h"

namespace fastrnn {
namespace cpu {

void rnn_forward(const RnnForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES(args.seq.dtype, "fastrnn_rnn_forward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.B, {{args.w_hh, {args.seq.H, args.seq.H}}});
    rnn_forward_sequence<scalar_t, scalar_t>(device, args);
  });
}

void rnn_backward(const RnnBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES(args.seq.dtype, "fastrnn_rnn_backward_cpu", [&] {
    rnn_backward_sequence<scalar_t, scalar_t>(device, args);
  });
}

}  // namespace cpu
}  // namespace fastrnn
