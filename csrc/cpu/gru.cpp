// The CPU back-end's GRU: the shared walk through the sequence (../sequence/gru.h) on
// the CPU Device (device.h), for float and double.
#include <ATen/Dispatch.h>

#include "sequence/gru.h"
#include "device.h"

namespace fastrnn {
namespace cpu {

void gru_forward(const GruForwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES(args.seq.dtype, "fastrnn_gru_forward_cpu", [&] {
    device.prepare<scalar_t>(args.seq.B, {{args.w_hh, {3 * args.seq.H, args.seq.H}}});
    gru_forward_sequence<scalar_t, scalar_t>(device, args);
  });
}

void gru_backward(const GruBackwardArgs& args) {
  CpuDevice device;
  AT_DISPATCH_FLOATING_TYPES(args.seq.dtype, "fastrnn_gru_backward_cpu", [&] {
    gru_backward_sequence<scalar_t, scalar_t>(device, args);
  });
}

}  // namespace cpu
}  // namespace fastrnn
