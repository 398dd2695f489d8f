// The CUDA back-end's Elman RNN: the shared walk through the sequence (../sequence/rnn.h) on
// the CUDA Device (device.h), for float, double, float16 and bfloat16.
#include <ATen/Dispatch.h>

#include "sequence/rnn.h"
#include "device.h"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h

void rnn_forward(const RnnForwardArgs& args) {
  CudaDevice device = CudaDevice::current();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.seq.dtype,
                                  "fastrnn_rnn_forward_cuda", [&] {
    rnn_forward_sequence<typename Types<scalar_t>::T, typename Types<scalar_t>::A>(device,
                                                                                    args);
  });
}

void rnn_backward(const RnnBackwardArgs& args) {
  CudaDevice device = CudaDevice::current();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.seq.dtype,
                                  "fastrnn_rnn_backward_cuda", [&] {
    rnn_backward_sequence<typename Types<scalar_t>::T, typename Types<scalar_t>::A>(device,
                                                                                     args);
  });
}

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
