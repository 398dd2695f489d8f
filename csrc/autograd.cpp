// The autograd formulas of the forward operators (linear, lstm_forward, gru_forward,
// rnn_forward), registered for the Autograd dispatch key: each forward runs the operator
// below autograd (the device's kernel, or under torch.compile the fake kernel of
// fastrnn/_ops.py) and its backward calls the matching backward operator.
//
// Written in C++ rather than with torch.library.register_autograd: the Python formulas cost
// 40-70 us a call on the 2-core development VM (fill_defaults, redispatch, the
// autograd.Function layer), as much as the kernels of a small layer: GRU T=1 B=16 H=128,
// forward with autograd 127 -> 54 us per operator call (49 without autograd).
//
// The backward operators are first-order only. Under create_graph=True their results are
// handed back through NoSecondDerivative, which passes them on and raises if anything
// differentiates them, rather than silently giving zero or wrong second derivatives.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <tuple>

#include "drivers.h"

namespace fastrnn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The operator `name` as a typed handle for calls through the dispatcher.
template <class Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// The operator fastrnn::NAME as a typed handle, looked up once: its signature is that of
// its driver, the kernel every device registers.
#define FASTRNN_OP(NAME)                                                      \
  [] {                                                                        \
    static const auto handle = find_op<decltype(NAME)>("fastrnn::" #NAME);    \
    return handle;                                                            \
  }()

optional<Tensor> defined_or_none(const Tensor& t) {
  return t.defined() ? optional<Tensor>(t) : c10::nullopt;
}

// A backward through an operator call made with save_for_backward=False: its saved history
// is a 1-D empty tensor (a saved one is 3-D even for an empty batch).
void require_saved(const Tensor& hs) {
  TORCH_CHECK(hs.dim() == 3,
              "fastrnn: backward through an operator call made with save_for_backward=False; "
              "call it with save_for_backward=True (the layers do this whenever a gradient "
              "is required)");
}

// Passes first-order gradients through; its inputs are the anchors (the forward's final
// state h_n, through which every forward input is reached, and the incoming gradients), so
// that any second-order use reaches its backward, which raises. The anchor is h_n, not the
// output: saving the output would keep it alive until backward and make an in-place change
// of it (ReLU(inplace=True), in-place dropout) fail backward, which torch.nn's GRU and RNN
// allow on the CPU; the layers hand out copies of h_n, never h_n itself.
struct NoSecondDerivative : torch::autograd::Function<NoSecondDerivative> {
  static variable_list forward(AutogradContext*, at::TensorList /*anchors*/,
                               at::TensorList grads) {
    variable_list passed;
    for (const Tensor& g : grads) passed.push_back(g.view_as(g));
    return passed;
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "fastrnn: double backward (a gradient of a gradient, e.g. a gradient penalty "
                "or gradgradcheck) is not supported by the fused recurrent kernels. Convert "
                "the model back to torch.nn layers with fastrnn.to_torch(model) for that "
                "computation.");
  }
};

// `grads` as they are, or under create_graph=True (grad mode on in backward) behind
// NoSecondDerivative, anchored to those of `anchors` that require grad.
variable_list first_order(variable_list grads, const variable_list& anchors) {
  if (!at::GradMode::is_enabled()) return grads;
  variable_list wired;
  for (const Tensor& a : anchors) {
    if (a.defined() && a.requires_grad()) wired.push_back(a);
  }
  variable_list defined;
  for (const Tensor& g : grads) {
    if (g.defined()) defined.push_back(g);
  }
  variable_list passed = NoSecondDerivative::apply(at::TensorList(wired), at::TensorList(defined));
  auto next = passed.begin();
  for (Tensor& g : grads) {
    if (g.defined()) g = *next++;
  }
  return grads;
}

// Runs a backward operator, `call`, below autograd and hands its results on as
// first_order does.
template <class Call>
variable_list run_backward(const Call& call, const variable_list& anchors) {
  variable_list results;
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    results = std::apply([](auto&&... t) { return variable_list{t...}; }, call());
  }
  return first_order(std::move(results), anchors);
}

// ---------------------------------------------------------------- linear

struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& weight,
                               const optional<Tensor>& bias) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    Tensor output = FASTRNN_OP(linear).call(input, weight, bias);
    ctx->save_for_backward({input, weight});
    ctx->saved_data["has_bias"] = bias.has_value();
    return {output};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &input = saved[0], &weight = saved[1], &grad = grads[0];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const bool with_bias = has_bias && ctx->needs_input_grad(2);
    // through the operator's own autograd: the input's gradient stays differentiable
    const Tensor d_input =
        ctx->needs_input_grad(0) ? FASTRNN_OP(linear).call(grad, weight.t(), c10::nullopt)
                                 : Tensor();
    Tensor d_weight, d_bias;
    if (ctx->needs_input_grad(1)) {  // the bias's column sums ride on the weight's product
      const variable_list passed = run_backward(
          [&] { return FASTRNN_OP(linear_weight_grads).call(input, grad, with_bias); },
          {input, weight, grad});
      d_weight = passed[0];
      d_bias = with_bias ? passed[1] : Tensor();
    } else if (with_bias) {
      d_bias = grad.sum(0);
    }
    return {d_input, d_weight, has_bias ? d_bias : Tensor()};
  }
};

Tensor linear_autograd(const Tensor& input, const Tensor& weight, const optional<Tensor>& bias) {
  return LinearFunction::apply(input, weight, bias)[0];
}

// ---------------------------------------------------------------- LSTM

struct LstmFunction : torch::autograd::Function<LstmFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input_gates, const Tensor& h0,
                               const Tensor& c0, const Tensor& w_hh,
                               const optional<Tensor>& b_hh, const optional<Tensor>& w_hr,
                               const optional<Tensor>& lengths, bool reverse,
                               bool save_for_backward) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, h_n, c_n, hs, cs, gates, proj_in] = FASTRNN_OP(lstm_forward).call(
        input_gates, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, save_for_backward);
    ctx->mark_non_differentiable({hs, cs, gates, proj_in});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({w_hh, w_hr.value_or(Tensor()), hs, cs, gates, proj_in,
                            lengths.value_or(Tensor()), h_n});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["has_bias"] = b_hh.has_value();
    return {output, h_n, c_n, hs, cs, gates, proj_in};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_hh = s[0], &w_hr = s[1], &hs = s[2], &h_n = s[7];
    require_saved(hs);
    const variable_list result = run_backward(
        [&] {
          return FASTRNN_OP(lstm_backward).call(
              defined_or_none(grads[0]), defined_or_none(grads[1]), defined_or_none(grads[2]),
              w_hh, defined_or_none(w_hr), hs, s[3], s[4], s[5], defined_or_none(s[6]),
              ctx->saved_data["reverse"].toBool());
        },
        {h_n, grads[0], grads[1], grads[2]});
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {result[0], result[1], result[2], result[3], has_bias ? result[4] : Tensor(),
            w_hr.defined() ? result[5] : Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward_autograd(
    const Tensor& input_gates, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
    const optional<Tensor>& b_hh, const optional<Tensor>& w_hr, const optional<Tensor>& lengths,
    bool reverse, bool save_for_backward) {
  const variable_list out = LstmFunction::apply(input_gates, h0, c0, w_hh, b_hh, w_hr, lengths,
                                                reverse, save_for_backward);
  return {out[0], out[1], out[2], out[3], out[4], out[5], out[6]};
}

// ---------------------------------------------------------------- GRU

struct GruFunction : torch::autograd::Function<GruFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input_gates, const Tensor& h0,
                               const Tensor& w_hh, const optional<Tensor>& b_hh,
                               const optional<Tensor>& lengths, bool reverse, bool reset_after,
                               bool save_for_backward) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, h_n, hs, gates, extra] = FASTRNN_OP(gru_forward).call(
        input_gates, h0, w_hh, b_hh, lengths, reverse, reset_after, save_for_backward);
    ctx->mark_non_differentiable({hs, gates, extra});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({w_hh, hs, gates, extra, lengths.value_or(Tensor()), h_n});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["reset_after"] = reset_after;
    ctx->saved_data["has_bias"] = b_hh.has_value();
    return {output, h_n, hs, gates, extra};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_hh = s[0], &hs = s[1], &h_n = s[5];
    require_saved(hs);
    const variable_list result = run_backward(
        [&] {
          return FASTRNN_OP(gru_backward).call(
              defined_or_none(grads[0]), defined_or_none(grads[1]), w_hh, hs, s[2], s[3],
              defined_or_none(s[4]), ctx->saved_data["reverse"].toBool(),
              ctx->saved_data["reset_after"].toBool());
        },
        {h_n, grads[0], grads[1]});
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {result[0], result[1], result[2], has_bias ? result[3] : Tensor(),
            Tensor(),  Tensor(),  Tensor(),  Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward_autograd(
    const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh, const optional<Tensor>& b_hh,
    const optional<Tensor>& lengths, bool reverse, bool reset_after, bool save_for_backward) {
  const variable_list out = GruFunction::apply(input_gates, h0, w_hh, b_hh, lengths, reverse,
                                               reset_after, save_for_backward);
  return {out[0], out[1], out[2], out[3], out[4]};
}

// ---------------------------------------------------------------- Elman RNN

struct RnnFunction : torch::autograd::Function<RnnFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input_gates, const Tensor& h0,
                               const Tensor& w_hh, const optional<Tensor>& b_hh,
                               const optional<Tensor>& lengths, bool reverse,
                               c10::string_view nonlinearity, bool save_for_backward) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, h_n, hs] = FASTRNN_OP(rnn_forward).call(
        input_gates, h0, w_hh, b_hh, lengths, reverse, nonlinearity, save_for_backward);
    ctx->mark_non_differentiable({hs});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({w_hh, hs, lengths.value_or(Tensor()), h_n});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["nonlinearity"] = std::string(nonlinearity);
    ctx->saved_data["has_bias"] = b_hh.has_value();
    return {output, h_n, hs};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_hh = s[0], &hs = s[1], &h_n = s[3];
    require_saved(hs);
    const std::string nonlinearity = ctx->saved_data["nonlinearity"].toStringRef();
    const variable_list result = run_backward(
        [&] {
          return FASTRNN_OP(rnn_backward).call(
              defined_or_none(grads[0]), defined_or_none(grads[1]), w_hh, hs,
              defined_or_none(s[2]), ctx->saved_data["reverse"].toBool(), nonlinearity);
        },
        {h_n, grads[0], grads[1]});
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {result[0], result[1], result[2], has_bias ? result[3] : Tensor(),
            Tensor(),  Tensor(),  Tensor(),  Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> rnn_forward_autograd(
    const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh, const optional<Tensor>& b_hh,
    const optional<Tensor>& lengths, bool reverse, c10::string_view nonlinearity,
    bool save_for_backward) {
  const variable_list out = RnnFunction::apply(input_gates, h0, w_hh, b_hh, lengths, reverse,
                                               nonlinearity, save_for_backward);
  return {out[0], out[1], out[2]};
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  m.impl("linear", &fastrnn::linear_autograd);
  m.impl("lstm_forward", &fastrnn::lstm_forward_autograd);
  m.impl("gru_forward", &fastrnn::gru_forward_autograd);
  m.impl("rnn_forward", &fastrnn::rnn_forward_autograd);
}
