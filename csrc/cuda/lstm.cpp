// The CUDA back-end's LSTM: the shared walk through the sequence (../sequence/lstm.h) on
// the CUDA Device (device.h), for float, double, float16 and bfloat16.
#include <ATen/Dispatch.h>

#include "sequence/lstm.h"
#include "device.h"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h

void lstm_forward(const LstmForwardArgs& args) {
  CudaDevice device = CudaDevice::current();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.seq.dtype,
                                  "fastrnn_lstm_forward_cuda", [&] {
    lstm_forward_sequence<typename Types<scalar_t>::T, typename Types<scalar_t>::A>(device,
                                                                                    args);
  });
}

void lstm_backward(const LstmBackwardArgs& args) {
  CudaDevice device = CudaDevice::current();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.seq.dtype,
                                  "fastrnn_lstm_backward_cuda", [&] {
    lstm_backward_sequence<typename Types<scalar_t>::T, typename Types<scalar_t>::A>(device,
                                                                                     args);
  });
}

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
