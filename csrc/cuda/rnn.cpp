// Elman RNN (tanh or relu) on the GPU, one layer in one direction (cells/rnn.h). Same
// operator contract as csrc/cpu/rnn.cpp.
#include <torch/library.h>

#include "launch.h"

namespace fastrnn {
namespace cuda {
namespace {

using at::Tensor;
using c10::optional;

std::tuple<Tensor, Tensor, Tensor> rnn_forward(const Tensor& input_gates_in, const Tensor& h0,
                                               const Tensor& w_hh_in,
                                               const optional<Tensor>& b_hh_in,
                                               const optional<Tensor>& lengths_in, bool reverse,
                                               c10::string_view nonlinearity, bool training) {
  const bool relu = is_relu(nonlinearity);
  check_layer_args("fastrnn::rnn_forward", 1, input_gates_in, h0, nullptr, w_hh_in, b_hh_in,
                   c10::nullopt, lengths_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const c10::cuda::CUDAGuard guard(input_gates_in.device());
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), H = input_gates.size(2);
  const auto opts = input_gates.options();
  Tensor output = at::empty({T, B, H}, opts);
  Tensor hs = at::empty({training ? T + 1 : 2, B, H}, opts);
  Tensor recurrent = at::empty({B, H}, opts.dtype(acc_dtype(input_gates.scalar_type())));
  hs[initial_state_slot(T, reverse, training)].copy_(h0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Blas blas = Blas::current();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input_gates.scalar_type(),
                                  "fastrnn_rnn_forward_cuda", [&] {
    using T_ = typename Types<scalar_t>::T;
    using A_ = typename Types<scalar_t>::A;
    const StateHistory<T_> h_hist{ptr<T_>(hs), B * H, T, reverse, training};
    for (int64_t step = 0; B > 0 && step < T; ++step) {  // a 0-block launch would fail
      const int64_t t = forward_time(step, T, reverse);
      gemm<scalar_t>(blas, false, true, B, H, H, h_hist.prev(step, t), H, ptr<T_>(w_hh), H, 0.0,
                     ptr<A_>(recurrent), H, true);
      RnnForwardStep<T_, A_> args{{lengths_ptr(lengths), t, B, H}, ptr<A_>(recurrent),
                                  ptr<T_>(input_gates) + t * B * H, ptr<T_>(b_hh),
                                  h_hist.prev(step, t), h_hist.next(step, t),
                                  ptr<T_>(output) + t * B * H, relu};
      rnn_forward_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });

  Tensor h_n = hs[final_state_slot(T, reverse, training)].clone();
  if (!training) hs = at::empty({0}, opts);
  return {output, h_n, hs};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& hs_in, const optional<Tensor>& lengths_in, bool reverse,
    c10::string_view nonlinearity) {
  const bool relu = is_relu(nonlinearity);
  check_rnn_backward_args(lengths_in, w_hh_in, hs_in, grad_output_in, grad_h_n);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor hs = hs_in.contiguous();
  const int64_t T = hs.size(0) - 1, B = hs.size(1), H = hs.size(2);
  const c10::cuda::CUDAGuard guard(hs.device());
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> grad_output = contiguous_or_none(grad_output_in);
  const auto opts = hs.options();
  const auto acc_opts = opts.dtype(acc_dtype(hs.scalar_type()));
  Tensor grad_gates = at::empty({T, B, H}, opts);
  Tensor dh_state = state_grad(grad_h_n, {B, H}, acc_opts);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Blas blas = Blas::current();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hs.scalar_type(),
                                  "fastrnn_rnn_backward_cuda", [&] {
    using T_ = typename Types<scalar_t>::T;
    using A_ = typename Types<scalar_t>::A;
    const StateHistory<T_> h_hist{ptr<T_>(hs), B * H, T, reverse, true};
    A_* dh = ptr<A_>(dh_state);
    for (int64_t step = 0; B > 0 && step < T; ++step) {  // a 0-block launch would fail
      const int64_t t = backward_time(step, T, reverse);
      const StepInfo info{lengths_ptr(lengths), t, B, H};
      if (grad_output.has_value()) {
        add_output_grad<T_, A_>(info, H, ptr<T_>(grad_output) + t * B * H, dh, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      T_* dg_t = ptr<T_>(grad_gates) + t * B * H;
      rnn_backward_step(RnnBackwardStep<T_, A_>{info, h_hist.next(step, t), dh, dg_t, relu},
                        stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gemm<scalar_t>(blas, false, false, B, H, H, dg_t, H, ptr<T_>(w_hh), H, 1.0, dh, H, true);
    }
  });

  auto [grad_w_hh, grad_b_hh] = recurrent_weight_grads(grad_gates, hs, reverse);
  return {grad_gates, dh_state.to(opts.dtype()), grad_w_hh, grad_b_hh};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

}  // namespace cuda
}  // namespace fastrnn
