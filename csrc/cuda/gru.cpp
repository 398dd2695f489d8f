// The CUDA back-end's GRU: the shared walk through the sequence (../sequence/gru.h) on
// the CUDA Device (device.h), for float, double, float16 and bfloat16.
#include <ATen/Dispatch.h>

#include "sequence/gru.h"
#include "device.h"

namespace fastrnn {
namespace cuda {
inline namespace FASTRNN_CUDA_TARGET {  // target.h

void gru_forward(const GruForwardArgs& args) {
  CudaDevice device = CudaDevice::current();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.seq.dtype,
                                  "fastrnn_gru_forward_cuda", [&] {
    gru_forward_sequence<typename Types<scalar_t>::T, typename Types<scalar_t>::A>(device,
                                                                                    args);
  });
}

void gru_backward(const GruBackwardArgs& args) {
  CudaDevice device = CudaDevice::current();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.seq.dtype,
                                  "fastrnn_gru_backward_cuda", [&] {
    gru_backward_sequence<typename Types<scalar_t>::T, typename Types<scalar_t>::A>(device,
                                                                                     args);
  });
}

}  // namespace FASTRNN_CUDA_TARGET
}  // namespace cuda
}  // namespace fastrnn
