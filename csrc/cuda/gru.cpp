// GRU on the GPU, one layer in one direction, in both reset forms (cells/gru.h). Same
// operator contract as csrc/cpu/gru.cpp; gates and state gradients in the accumulation type.
#include <torch/library.h>

#include "launch.h"

namespace fastrnn {
namespace cuda {
namespace {

using at::Tensor;
using c10::optional;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(
    const Tensor& input_gates_in, const Tensor& h0, const Tensor& w_hh_in,
    const optional<Tensor>& b_hh_in, const optional<Tensor>& lengths_in, bool reverse,
    bool reset_after, bool training) {
  check_layer_args("fastrnn::gru_forward", 3, input_gates_in, h0, nullptr, w_hh_in, b_hh_in,
                   c10::nullopt, lengths_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const c10::cuda::CUDAGuard guard(input_gates_in.device());
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / 3;
  const auto opts = input_gates.options();
  const auto acc_opts = opts.dtype(acc_dtype(input_gates.scalar_type()));

  Tensor output = at::empty({T, B, H}, opts);
  Tensor hs = at::empty({training ? T + 1 : 2, B, H}, opts);
  Tensor gates = at::empty({training ? T : 1, B, G}, acc_opts);
  Tensor extra = at::empty({training ? T : 1, B, H}, opts);
  hs[initial_state_slot(T, reverse, training)].copy_(h0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Blas blas = Blas::current();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input_gates.scalar_type(),
                                  "fastrnn_gru_forward_cuda", [&] {
    using T_ = typename Types<scalar_t>::T;
    using A_ = typename Types<scalar_t>::A;
    const StateHistory<T_> h_hist{ptr<T_>(hs), B * H, T, reverse, training};
    const T_* w = ptr<T_>(w_hh);
    for (int64_t step = 0; B > 0 && step < T; ++step) {  // a 0-block launch would fail
      const int64_t t = forward_time(step, T, reverse);
      A_* g = ptr<A_>(gates) + (training ? t * B * G : 0);
      T_* e = ptr<T_>(extra) + (training ? t * B * H : 0);
      const T_* h_prev = h_hist.prev(step, t);
      GruForwardStep<T_, A_> args{{lengths_ptr(lengths), t, B, H}, g,
                                  ptr<T_>(input_gates) + t * B * G, ptr<T_>(b_hh), h_prev,
                                  h_hist.next(step, t), ptr<T_>(output) + t * B * H, e};
      if (reset_after) {
        gemm<scalar_t>(blas, false, true, B, G, H, h_prev, H, w, H, 0.0, g, G, true);
        gru_forward_step(args, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        continue;
      }
      gemm<scalar_t>(blas, false, true, B, 2 * H, H, h_prev, H, w, H, 0.0, g, G, true);
      gru_cho_gates_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gemm<scalar_t>(blas, false, true, B, H, H, e, H, w + 2 * H * H, H, 0.0, g + 2 * H, G, true);
      gru_cho_candidate_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });

  Tensor h_n = hs[final_state_slot(T, reverse, training)].clone();
  if (!training) {
    hs = at::empty({0}, opts);
    gates = at::empty({0}, acc_opts);
    extra = at::empty({0}, opts);
  }
  return {output, h_n, hs, gates, extra};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& hs_in, const Tensor& gates_in, const Tensor& extra_in,
    const optional<Tensor>& lengths_in, bool reverse, bool reset_after) {
  check_gru_backward_args(lengths_in, w_hh_in, hs_in, gates_in, extra_in, grad_output_in, grad_h_n);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor hs = hs_in.contiguous();
  const Tensor gates = gates_in.contiguous();
  const Tensor extra = extra_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = G / 3;
  const c10::cuda::CUDAGuard guard(hs.device());
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> grad_output = contiguous_or_none(grad_output_in);
  const auto opts = hs.options();
  const auto acc_opts = gates.options();

  Tensor grad_gates = at::empty({T, B, G}, opts);
  Tensor grad_recurrent = reset_after ? at::empty({T, B, G}, opts) : grad_gates;
  Tensor dh_state = state_grad(grad_h_n, {B, H}, acc_opts);
  Tensor dz = reset_after ? at::empty({0}, acc_opts) : at::empty({B, H}, acc_opts);
  Tensor d_reset_h = reset_after ? at::empty({0}, acc_opts) : at::empty({B, H}, acc_opts);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Blas blas = Blas::current();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hs.scalar_type(),
                                  "fastrnn_gru_backward_cuda", [&] {
    using T_ = typename Types<scalar_t>::T;
    using A_ = typename Types<scalar_t>::A;
    const StateHistory<T_> h_hist{ptr<T_>(hs), B * H, T, reverse, true};
    const T_* w = ptr<T_>(w_hh);
    A_* dh = ptr<A_>(dh_state);
    for (int64_t step = 0; B > 0 && step < T; ++step) {  // a 0-block launch would fail
      const int64_t t = backward_time(step, T, reverse);
      const StepInfo info{lengths_ptr(lengths), t, B, H};
      if (grad_output.has_value()) {
        add_output_grad<T_, A_>(info, H, ptr<T_>(grad_output) + t * B * H, dh, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      T_* dg_t = ptr<T_>(grad_gates) + t * B * G;
      T_* dgr_t = ptr<T_>(grad_recurrent) + t * B * G;
      GruBackwardStep<T_, A_> args{info, ptr<A_>(gates) + t * B * G,
                                   ptr<T_>(extra) + t * B * H, h_hist.prev(step, t), dh, dg_t,
                                   reset_after ? dgr_t : nullptr, ptr<A_>(dz),
                                   ptr<A_>(d_reset_h)};
      if (reset_after) {
        gru_backward_step(args, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        gemm<scalar_t>(blas, false, false, B, H, G, dgr_t, G, w, H, 1.0, dh, H, true);
        continue;
      }
      gru_cho_candidate_backward_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gemm<scalar_t>(blas, false, false, B, H, H, dg_t + 2 * H, G, w + 2 * H * H, H, 0.0,
                     ptr<A_>(d_reset_h), H, true);
      gru_cho_gates_backward_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gemm<scalar_t>(blas, false, false, B, H, 2 * H, dg_t, G, w, H, 1.0, dh, H, true);
    }
  });

  auto [grad_w_hh, grad_b_hh] = reset_after
      ? recurrent_weight_grads(grad_recurrent, hs, reverse)
      : reset_before_weight_grads(grad_recurrent, hs, extra, reverse);
  return {grad_gates, dh_state.to(opts.dtype()), grad_w_hh, grad_b_hh};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}

}  // namespace cuda
}  // namespace fastrnn
