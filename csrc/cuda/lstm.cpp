// LSTM on the GPU, one layer in one direction: per step a cuBLAS GEMM with the recurrent
// weights into the gates buffer, one fused point-wise kernel (cells/lstm.h) and, with a
// projection, a GEMM to the projected state. Same operator contract as csrc/cpu/lstm.cpp;
// the cell state and the state gradients are kept in float32 for half and bfloat16.
#include <torch/library.h>

#include "launch.h"

namespace fastrnn {
namespace cuda {
namespace {

using at::Tensor;
using c10::optional;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& input_gates_in, const Tensor& h0, const Tensor& c0, const Tensor& w_hh_in,
    const optional<Tensor>& b_hh_in, const optional<Tensor>& w_hr_in,
    const optional<Tensor>& lengths_in, bool reverse, bool training) {
  check_layer_args("fastrnn::lstm_forward", 4, input_gates_in, h0, &c0, w_hh_in, b_hh_in,
                   w_hr_in, lengths_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const c10::cuda::CUDAGuard guard(input_gates_in.device());
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in), w_hr = contiguous_or_none(w_hr_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / 4, P = h0.size(1);
  const bool has_proj = w_hr.has_value();
  const auto opts = input_gates.options();
  const auto acc_opts = opts.dtype(acc_dtype(input_gates.scalar_type()));
  const int64_t slots = training ? T + 1 : 2;

  Tensor output = at::empty({T, B, P}, opts);
  Tensor hs = at::empty({slots, B, P}, opts);
  Tensor cs = at::empty({slots, B, H}, acc_opts);
  Tensor gates = at::empty({training ? T : 1, B, G}, acc_opts);
  Tensor proj_in = has_proj ? at::empty({training ? T : 1, B, H}, opts) : at::empty({0}, opts);
  hs[initial_state_slot(T, reverse, training)].copy_(h0);
  cs[initial_state_slot(T, reverse, training)].copy_(c0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Blas blas = Blas::current();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input_gates.scalar_type(),
                                  "fastrnn_lstm_forward_cuda", [&] {
    using Ty = Types<scalar_t>;
    using T_ = typename Ty::T;
    using A_ = typename Ty::A;
    const StateHistory<T_> h_hist{ptr<T_>(hs), B * P, T, reverse, training};
    const StateHistory<A_> c_hist{ptr<A_>(cs), B * H, T, reverse, training};
    for (int64_t step = 0; B > 0 && step < T; ++step) {  // a 0-block launch would fail
      const int64_t t = forward_time(step, T, reverse);
      A_* g = ptr<A_>(gates) + (training ? t * B * G : 0);
      T_* r = has_proj ? ptr<T_>(proj_in) + (training ? t * B * H : 0) : nullptr;
      T_* out_t = ptr<T_>(output) + t * B * P;
      gemm<scalar_t>(blas, false, true, B, G, P, h_hist.prev(step, t), P, ptr<T_>(w_hh), P, 0.0, g,
                     G, true);
      LstmForwardStep<T_, A_> args{{lengths_ptr(lengths), t, B, H}, g,
                                   ptr<T_>(input_gates) + t * B * G, ptr<T_>(b_hh),
                                   c_hist.prev(step, t), c_hist.next(step, t),
                                   h_hist.prev(step, t), h_hist.next(step, t), out_t, r};
      lstm_forward_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (has_proj) {
        gemm<scalar_t>(blas, false, true, B, P, H, r, H, ptr<T_>(w_hr), H, 0.0, h_hist.next(step, t),
                       P, false);
        mask_projected_state<T_>({lengths_ptr(lengths), t, B, H}, P, h_hist.prev(step, t),
                                 h_hist.next(step, t), out_t, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });

  const int64_t last = final_state_slot(T, reverse, training);
  Tensor h_n = hs[last].clone();
  Tensor c_n = cs[last].to(input_gates.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  if (!training) {
    hs = at::empty({0}, opts);
    cs = at::empty({0}, acc_opts);
    gates = at::empty({0}, acc_opts);
    proj_in = at::empty({0}, opts);
  }
  return {output, h_n, c_n, hs, cs, gates, proj_in};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const optional<Tensor>& grad_c_n, const Tensor& w_hh_in, const optional<Tensor>& w_hr_in,
    const Tensor& hs_in, const Tensor& cs_in, const Tensor& gates_in, const Tensor& proj_in_arg,
    const optional<Tensor>& lengths_in, bool reverse) {
  check_lstm_backward_args(lengths_in, w_hh_in, w_hr_in, hs_in, cs_in, gates_in, proj_in_arg, grad_output_in,
                           grad_h_n, grad_c_n);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor hs = hs_in.contiguous();
  const Tensor cs = cs_in.contiguous();
  const Tensor gates = gates_in.contiguous();
  const Tensor proj_in = proj_in_arg.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2);
  const int64_t H = G / 4, P = hs.size(2);
  const c10::cuda::CUDAGuard guard(hs.device());
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> w_hr = contiguous_or_none(w_hr_in);
  const optional<Tensor> grad_output = contiguous_or_none(grad_output_in);
  const bool has_proj = w_hr.has_value();
  const auto opts = hs.options();
  const auto acc_opts = gates.options();

  Tensor grad_gates = at::empty({T, B, G}, opts);
  Tensor dh_state = state_grad(grad_h_n, {B, P}, acc_opts);
  Tensor dc_state = state_grad(grad_c_n, {B, H}, acc_opts);
  Tensor grad_proj_out = has_proj ? at::empty({T, B, P}, opts) : at::empty({0}, opts);
  Tensor grad_proj_in = has_proj ? at::empty({B, H}, acc_opts) : at::empty({0}, acc_opts);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Blas blas = Blas::current();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hs.scalar_type(),
                                  "fastrnn_lstm_backward_cuda", [&] {
    using Ty = Types<scalar_t>;
    using T_ = typename Ty::T;
    using A_ = typename Ty::A;
    const StateHistory<A_> c_hist{ptr<A_>(cs), B * H, T, reverse, true};
    A_* dh = ptr<A_>(dh_state);
    for (int64_t step = 0; B > 0 && step < T; ++step) {  // a 0-block launch would fail
      const int64_t t = backward_time(step, T, reverse);
      const StepInfo info{lengths_ptr(lengths), t, B, H};
      if (grad_output.has_value()) {
        add_output_grad<T_, A_>(info, P, ptr<T_>(grad_output) + t * B * P, dh, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      const A_* dh_cell = dh;
      if (has_proj) {
        T_* dproj = ptr<T_>(grad_proj_out) + t * B * P;
        split_projection_grad<T_, A_>(info, P, dh, dproj, stream);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        gemm<scalar_t>(blas, false, false, B, H, P, dproj, P, ptr<T_>(w_hr), H, 0.0,
                       ptr<A_>(grad_proj_in), H, true);
        dh_cell = ptr<A_>(grad_proj_in);
      }
      T_* dg_t = ptr<T_>(grad_gates) + t * B * G;
      LstmBackwardStep<T_, A_> args{info, ptr<A_>(gates) + t * B * G, c_hist.prev(step, t),
                                    c_hist.next(step, t), dh_cell, ptr<A_>(dc_state), dh,
                                    dg_t, !has_proj};
      lstm_backward_step(args, stream);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gemm<scalar_t>(blas, false, false, B, P, G, dg_t, G, ptr<T_>(w_hh), P, 1.0, dh, P, true);
    }
  });

  auto [grad_w_hh, grad_b_hh] = recurrent_weight_grads(grad_gates, hs, reverse);
  Tensor grad_w_hr = has_proj ? projection_weight_grad(grad_proj_out, proj_in)
                              : at::empty({0}, opts);
  return {grad_gates, dh_state.to(opts.dtype()), dc_state.to(opts.dtype()), grad_w_hh,
          grad_b_hh, grad_w_hr};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}

}  // namespace cuda
}  // namespace fastrnn
