// Elman RNN (tanh or relu) over one layer in one direction on the CPU (cells/rnn.h).
// Shapes: input_gates [T, B, H] (x W_ih^T + b_ih), h [B, H], w_hh [H, H].
// The recurrent GEMM writes into the next state's slot and the point-wise pass turns it
// into the new state in place, so a step needs no buffer of its own.
#include <torch/library.h>

#include "../checks.h"
#include "../weight_grads.h"
#include "sequence.h"

namespace fastrnn {
namespace cpu {
namespace {

using at::Tensor;
using c10::optional;

template <bool Relu, class scalar_t>
void rnn_forward_loop(int64_t T, int64_t B, int64_t H, const scalar_t* x, const scalar_t* w,
                      const scalar_t* bias, const LengthMask& mask, bool reverse,
                      StateHistory<scalar_t> hs, scalar_t* output) {
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = forward_time(step, T, reverse);
    const scalar_t* h_prev = hs.prev(step, t);
    scalar_t* h_next = hs.next(step, t);
    const scalar_t* x_t = x + t * B * H;
    scalar_t* out_t = output + t * B * H;
    gemm<scalar_t>(false, true, B, H, H, h_prev, H, w, H, scalar_t(0), h_next, H);
    parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t row = b * H;
      if (!mask.active(b, t)) {
        copy_span(h_next + row + j0, h_prev + row + j0, j1 - j0);
        zero_span(out_t + row + j0, j1 - j0);
        return;
      }
      for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
        auto a = lanes.load(h_next + row + j) + lanes.load(x_t + row + j);
        if (bias != nullptr) a = a + lanes.load(bias + j);
        const auto h = cells::rnn_forward<Relu>(a);
        lanes.store(h_next + row + j, h);
        lanes.store(out_t + row + j, h);
      });
    });
  }
}

// Returns (output [T,B,H], h_n [B,H], and when training hs [T+1,B,H]).
std::tuple<Tensor, Tensor, Tensor> rnn_forward(const Tensor& input_gates_in, const Tensor& h0,
                                               const Tensor& w_hh_in,
                                               const optional<Tensor>& b_hh_in,
                                               const optional<Tensor>& lengths_in, bool reverse,
                                               c10::string_view nonlinearity, bool training) {
  const bool relu = is_relu(nonlinearity);
  check_layer_args("fastrnn::rnn_forward", 1, input_gates_in, h0, nullptr, w_hh_in, b_hh_in,
                   c10::nullopt, lengths_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor input_gates = input_gates_in.contiguous();
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> b_hh = contiguous_or_none(b_hh_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), H = input_gates.size(2);
  const auto opts = input_gates.options();
  Tensor output = at::empty({T, B, H}, opts);
  Tensor hs = at::empty({training ? T + 1 : 2, B, H}, opts);

  AT_DISPATCH_FLOATING_TYPES(input_gates.scalar_type(), "fastrnn_rnn_forward_cpu", [&] {
    StateHistory<scalar_t> h_hist{hs.data_ptr<scalar_t>(), B * H, T, reverse, training};
    copy_span(h_hist.initial(), h0.contiguous().data_ptr<scalar_t>(), B * H);
    auto run = [&](auto relu_tag) {
      rnn_forward_loop<decltype(relu_tag)::value, scalar_t>(
          T, B, H, input_gates.data_ptr<scalar_t>(), w_hh.data_ptr<scalar_t>(),
          optional_data<scalar_t>(b_hh), length_mask(lengths), reverse, h_hist,
          output.data_ptr<scalar_t>());
    };
    relu ? run(std::true_type{}) : run(std::false_type{});
  });

  Tensor h_n = hs[final_state_slot(T, reverse, training)].clone();
  if (!training) hs = at::empty({0}, opts);
  return {output, h_n, hs};
}

template <bool Relu, class scalar_t>
void rnn_backward_loop(int64_t T, int64_t B, int64_t H, const scalar_t* grad_output,
                       const scalar_t* w, const LengthMask& mask, bool reverse,
                       const StateHistory<scalar_t>& hs, scalar_t* grad_gates, scalar_t* dh) {
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = backward_time(step, T, reverse);
    add_output_grad(dh, grad_output == nullptr ? nullptr : grad_output + t * B * H, mask, t, B,
                    H);
    const scalar_t* h_new = hs.next(step, t);
    scalar_t* dg_t = grad_gates + t * B * H;
    parallel_rows(B, H, [&](int64_t b, int64_t j0, int64_t j1) {
      const int64_t row = b * H;
      if (!mask.active(b, t)) return zero_span(dg_t + row + j0, j1 - j0);
      for_each_lane<scalar_t>(j0, j1, [&](auto lanes, int64_t j) {
        using V = typename decltype(lanes)::V;
        lanes.store(dg_t + row + j,
                    cells::rnn_backward<Relu>(lanes.load(h_new + row + j), lanes.load(dh + row + j)));
        lanes.store(dh + row + j, V(scalar_t(0)));
      });
    });
    gemm<scalar_t>(false, false, B, H, H, dg_t, H, w, H, scalar_t(1), dh, H);
  }
}

// Returns (grad_input_gates [T,B,H], grad_h0 [B,H], grad_w_hh [H,H], grad_b_hh [H]).
std::tuple<Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& hs_in, const optional<Tensor>& lengths_in, bool reverse,
    c10::string_view nonlinearity) {
  const bool relu = is_relu(nonlinearity);
  check_rnn_backward_args(lengths_in, w_hh_in, hs_in, grad_output_in, grad_h_n);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const Tensor hs = hs_in.contiguous();
  const Tensor w_hh = w_hh_in.contiguous();
  const optional<Tensor> grad_output =
      contiguous_or_none(grad_output_in);
  const int64_t T = hs.size(0) - 1, B = hs.size(1), H = hs.size(2);
  const auto opts = hs.options();
  Tensor grad_gates = at::empty({T, B, H}, opts);
  Tensor dh_state = grad_or_zeros(grad_h_n, {B, H}, opts);

  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "fastrnn_rnn_backward_cpu", [&] {
    const StateHistory<scalar_t> h_hist{hs.data_ptr<scalar_t>(), B * H, T, reverse, true};
    auto run = [&](auto relu_tag) {
      rnn_backward_loop<decltype(relu_tag)::value, scalar_t>(
          T, B, H, optional_data<scalar_t>(grad_output), w_hh.data_ptr<scalar_t>(),
          length_mask(lengths), reverse, h_hist, grad_gates.data_ptr<scalar_t>(),
          dh_state.data_ptr<scalar_t>());
    };
    relu ? run(std::true_type{}) : run(std::false_type{});
  });

  auto [grad_w_hh, grad_b_hh] = recurrent_weight_grads(grad_gates, hs, reverse);
  return {grad_gates, dh_state, grad_w_hh, grad_b_hh};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
}

}  // namespace cpu
}  // namespace fastrnn
