// The CPU back-end's LSTM: the shared walk through the sequence (../sequence/lstm.h) on
// the CPU Device (device.h), for float and double.
#include <ATen/Dispatch.h>

#include "sequence/lstm.h"
#include "device.h"

namespace fastrnn {
namespace cpu {

void lstm_forward(const LstmForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES(args.seq.dtype, "fastrnn_lstm_forward_cpu", [&] {
    const SequenceArgs& seq = args.seq;
    device.prepare<scalar_t>(seq.B, {{args.w_hh, {4 * seq.H, seq.P}}, {args.w_hr, {seq.P, seq.H}}});
    lstm_forward_sequence<scalar_t, scalar_t>(device, args);
  });
}

void lstm_backward(const LstmBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES(args.seq.dtype, "fastrnn_lstm_backward_cpu", [&] {
    lstm_backward_sequence<scalar_t, scalar_t>(device, args);
  });
}

}  // namespace cpu
}  // namespace fastrnn
