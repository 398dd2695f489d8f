// Calls fastrnn's operators through the dispatcher, as any libtorch program would, and
// checks them against ATen's own cells stepped over time (at::lstm_cell, gru_cell,
// rnn_tanh_cell), forward and backward (autograd through the ATen cells).
#include <torch/torch.h>

#include <cstdio>
#include <string>

namespace {

int failures = 0;

void expect_close(const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  const double err = (got - want).abs().max().item<double>();
  const bool ok = got.sizes() == want.sizes() && err < 1e-10;
  std::printf("%-40s %s (max abs error %.3g)\n", what.c_str(), ok ? "ok" : "FAILED", err);
  if (!ok) ++failures;
}

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

at::Tensor stack_steps(const std::vector<at::Tensor>& steps) { return at::stack(steps); }

void test_lstm() {
  const int64_t T = 6, B = 3, I = 4, H = 5;
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto x = at::randn({T, B, I}, opts);
  auto w_ih = at::randn({4 * H, I}, opts).requires_grad_();
  auto w_hh = at::randn({4 * H, H}, opts).requires_grad_();
  auto b_ih = at::randn({4 * H}, opts), b_hh = at::randn({4 * H}, opts).requires_grad_();
  auto h0 = at::randn({B, H}, opts), c0 = at::randn({B, H}, opts);

  // ATen reference, stepped by hand.
  std::vector<at::Tensor> outs;
  at::Tensor h = h0, c = c0;
  for (int64_t t = 0; t < T; ++t) {
    auto hc = at::lstm_cell(x[t], {h, c}, w_ih, w_hh, b_ih, b_hh);
    h = std::get<0>(hc);
    c = std::get<1>(hc);
    outs.push_back(h);
  }
  auto want = stack_steps(outs);
  auto grad_out = at::randn({T, B, H}, opts);
  auto want_grads = torch::autograd::grad({(want * grad_out).sum()}, {w_hh, b_hh});

  // fastrnn: input projection outside, recurrence in the operator.
  auto gates = at::linear(x, w_ih.detach(), b_ih);
  auto result = op("fastrnn::lstm_forward")
                    .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                      at::Tensor, at::Tensor, at::Tensor>(
                        const at::Tensor&, const at::Tensor&, const at::Tensor&,
                        const at::Tensor&, const std::optional<at::Tensor>&,
                        const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                        bool, bool, const std::optional<at::Tensor>&,
                        const std::optional<at::Tensor>&, double, bool)>()
                    .call(gates, h0, c0, w_hh.detach(), b_hh.detach(), std::nullopt,
                          std::nullopt, false, true, std::nullopt, std::nullopt, 0.0, false);
  expect_close("lstm_forward output", std::get<0>(result), want.detach());
  expect_close("lstm_forward c_n", std::get<2>(result), c.detach());

  auto grads = op("fastrnn::lstm_backward")
                   .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                     at::Tensor>(
                       const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                       const std::optional<at::Tensor>&, const at::Tensor&,
                       const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                       const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                       bool, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                       double, const std::optional<at::Tensor>&)>()
                   .call(grad_out, std::nullopt, std::nullopt, w_hh.detach(), std::nullopt,
                         std::get<3>(result), std::get<4>(result), std::get<5>(result),
                         std::get<6>(result), std::nullopt, false, std::nullopt, std::nullopt,
                         0.0, std::nullopt);
  expect_close("lstm_backward grad_w_hh", std::get<3>(grads), want_grads[0]);
  expect_close("lstm_backward grad_b_hh", std::get<4>(grads), want_grads[1]);
}

template <class Cell>
void test_single_state(const char* name, int64_t gates_per_unit, Cell cell,
                       const char* nonlinearity) {
  const int64_t T = 7, B = 2, I = 3, H = 4;
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto x = at::randn({T, B, I}, opts);
  auto w_ih = at::randn({gates_per_unit * H, I}, opts);
  auto w_hh = at::randn({gates_per_unit * H, H}, opts).requires_grad_();
  auto b_ih = at::randn({gates_per_unit * H}, opts);
  auto b_hh = at::randn({gates_per_unit * H}, opts).requires_grad_();
  auto h0 = at::randn({B, H}, opts);

  // Reverse direction: walk t = T-1 .. 0.
  std::vector<at::Tensor> outs(T);
  at::Tensor h = h0;
  for (int64_t t = T - 1; t >= 0; --t) outs[t] = h = cell(x[t], h, w_ih, w_hh, b_ih, b_hh);
  auto want = stack_steps(outs);
  auto grad_out = at::randn({T, B, H}, opts);
  auto want_grads = torch::autograd::grad({(want * grad_out).sum()}, {w_hh, b_hh});

  auto gates = at::linear(x, w_ih, b_ih);
  at::Tensor output, hs, grad_w_hh, grad_b_hh;
  using Opt = std::optional<at::Tensor>;
  using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
  if (gates_per_unit == 3) {
    auto r = op("fastrnn::gru_forward")
                 .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                     const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&,
                     const Opt&, bool, bool, bool, const Opt&, double)>()
                 .call(gates, h0, w_hh.detach(), b_hh.detach(), std::nullopt, true, true, true,
                       std::nullopt, 0.0);
    output = std::get<0>(r);
    auto g = op("fastrnn::gru_backward")
                 .typed<Grads(const Opt&, const Opt&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&, const Opt&, bool, bool,
                              const Opt&, double)>()
                 .call(grad_out, std::nullopt, w_hh.detach(), std::get<2>(r), std::get<3>(r),
                       std::get<4>(r), std::nullopt, true, true, std::nullopt, 0.0);
    grad_w_hh = std::get<2>(g);
    grad_b_hh = std::get<3>(g);
  } else {
    auto r = op("fastrnn::rnn_forward")
                 .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                     const at::Tensor&, const at::Tensor&, const at::Tensor&, const Opt&,
                     const Opt&, bool, c10::string_view, bool, const Opt&, double)>()
                 .call(gates, h0, w_hh.detach(), b_hh.detach(), std::nullopt, true,
                       nonlinearity, true, std::nullopt, 0.0);
    output = std::get<0>(r);
    auto g = op("fastrnn::rnn_backward")
                 .typed<Grads(const Opt&, const Opt&, const at::Tensor&, const at::Tensor&,
                              const Opt&, bool, c10::string_view, const Opt&, double)>()
                 .call(grad_out, std::nullopt, w_hh.detach(), std::get<2>(r), std::nullopt,
                       true, nonlinearity, std::nullopt, 0.0);
    grad_w_hh = std::get<2>(g);
    grad_b_hh = std::get<3>(g);
  }
  expect_close(std::string(name) + " forward (reverse) output", output, want.detach());
  expect_close(std::string(name) + " backward grad_w_hh", grad_w_hh, want_grads[0]);
  expect_close(std::string(name) + " backward grad_b_hh", grad_b_hh, want_grads[1]);
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_lstm();
  test_single_state("gru", 3, [](auto... a) { return at::gru_cell(a...); }, "");
  test_single_state("rnn tanh", 1, [](auto... a) { return at::rnn_tanh_cell(a...); }, "tanh");
  test_single_state("rnn relu", 1, [](auto... a) { return at::rnn_relu_cell(a...); }, "relu");
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
