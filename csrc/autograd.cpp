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
// The backward operators are first-order. Under create_graph=True (grad mode on in
// backward) the recurrent formulas take their gradients from a differentiable replay of
// the forward instead (replay.h), and linear's from ATen's products, so that gradients of
// gradients are right.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <tuple>

#include "drivers.h"
#include "replay.h"

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

// Runs a backward operator, `call`, below autograd.
template <class Call>
variable_list run_backward(const Call& call) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return std::apply([](auto&&... t) { return variable_list{t...}; }, call());
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
    if (ctx->needs_input_grad(1) && !at::GradMode::is_enabled()) {
      // the bias's column sums ride on the weight's product
      const variable_list both = run_backward(
          [&] { return FASTRNN_OP(linear_weight_grads).call(input, grad, with_bias); });
      d_weight = both[0];
      d_bias = with_bias ? both[1] : Tensor();
    } else {  // the bias alone, or create_graph=True: ATen's differentiable ops
      if (ctx->needs_input_grad(1)) d_weight = at::mm(grad.t(), input);
      if (with_bias) d_bias = grad.sum(0);
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
                               bool save_for_backward, const optional<Tensor>& zoneout_h,
                               const optional<Tensor>& zoneout_c, double zoneout,
                               bool return_cells) {
    ctx->saved_data["input_gates_edge"] = replay::edge_of(input_gates);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, h_n, c_n, hs, cs, gates, proj_in, cells] = FASTRNN_OP(lstm_forward).call(
        input_gates, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, save_for_backward, zoneout_h,
        zoneout_c, zoneout, return_cells);
    // one call: each call of mark_non_differentiable replaces the set of the one before
    if (return_cells) {
      ctx->mark_non_differentiable({hs, cs, gates, proj_in});
    } else {
      ctx->mark_non_differentiable({hs, cs, gates, proj_in, cells});
    }
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({w_hh, w_hr.value_or(Tensor()), hs, cs, gates, proj_in,
                            lengths.value_or(Tensor()), h0, c0, b_hh.value_or(Tensor()),
                            zoneout_h.value_or(Tensor()), zoneout_c.value_or(Tensor())});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["zoneout"] = zoneout;
    return {output, h_n, c_n, hs, cs, gates, proj_in, cells};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_hh = s[0], &w_hr = s[1], &hs = s[2], &gates = s[4], &lengths = s[6];
    const Tensor &b_hh = s[9], &zoneout_h = s[10], &zoneout_c = s[11];
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const double zoneout = ctx->saved_data["zoneout"].toDouble();
    require_saved(hs);
    variable_list result;
    if (at::GradMode::is_enabled()) {
      const replay::Inputs in{ctx->saved_data["input_gates_edge"], s[7], s[8], w_hh, b_hh,
                              w_hr, lengths, reverse, {zoneout_h, zoneout_c, zoneout}};
      result = replay::lstm(in, gates, {grads[0], grads[1], grads[2], grads[7]});
    } else {
      result = run_backward([&] {
        return FASTRNN_OP(lstm_backward).call(
            defined_or_none(grads[0]), defined_or_none(grads[1]), defined_or_none(grads[2]),
            w_hh, defined_or_none(w_hr), hs, s[3], gates, s[5], defined_or_none(lengths),
            reverse, defined_or_none(zoneout_h), defined_or_none(zoneout_c), zoneout,
            defined_or_none(grads[7]));
      });
    }
    return {result[0], result[1], result[2], result[3],
            b_hh.defined() ? result[4] : Tensor(),
            w_hr.defined() ? result[5] : Tensor(), Tensor(), Tensor(), Tensor(), Tensor(),
            Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
lstm_forward_autograd(const Tensor& input_gates, const Tensor& h0, const Tensor& c0,
                      const Tensor& w_hh, const optional<Tensor>& b_hh,
                      const optional<Tensor>& w_hr, const optional<Tensor>& lengths,
                      bool reverse, bool save_for_backward, const optional<Tensor>& zoneout_h,
                      const optional<Tensor>& zoneout_c, double zoneout, bool return_cells) {
  const variable_list out =
      LstmFunction::apply(input_gates, h0, c0, w_hh, b_hh, w_hr, lengths, reverse,
                          save_for_backward, zoneout_h, zoneout_c, zoneout, return_cells);
  return {out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]};
}

// ---------------------------------------------------------------- GRU

struct GruFunction : torch::autograd::Function<GruFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input_gates, const Tensor& h0,
                               const Tensor& w_hh, const optional<Tensor>& b_hh,
                               const optional<Tensor>& lengths, bool reverse, bool reset_after,
                               bool save_for_backward, const optional<Tensor>& zoneout_h,
                               double zoneout) {
    ctx->saved_data["input_gates_edge"] = replay::edge_of(input_gates);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, h_n, hs, gates, extra] =
        FASTRNN_OP(gru_forward).call(input_gates, h0, w_hh, b_hh, lengths, reverse, reset_after,
                                     save_for_backward, zoneout_h, zoneout);
    ctx->mark_non_differentiable({hs, gates, extra});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({w_hh, hs, gates, extra, lengths.value_or(Tensor()), h0,
                            b_hh.value_or(Tensor()), zoneout_h.value_or(Tensor())});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["reset_after"] = reset_after;
    ctx->saved_data["zoneout"] = zoneout;
    return {output, h_n, hs, gates, extra};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_hh = s[0], &hs = s[1], &gates = s[2], &lengths = s[4], &b_hh = s[6];
    const Tensor& zoneout_h = s[7];
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const bool reset_after = ctx->saved_data["reset_after"].toBool();
    const double zoneout = ctx->saved_data["zoneout"].toDouble();
    require_saved(hs);
    variable_list result;
    if (at::GradMode::is_enabled()) {
      const replay::Inputs in{ctx->saved_data["input_gates_edge"], s[5], Tensor(), w_hh,
                              b_hh, Tensor(), lengths, reverse, {zoneout_h, Tensor(), zoneout}};
      result = replay::gru(in, gates, reset_after, {grads[0], grads[1]});
    } else {
      result = run_backward([&] {
        return FASTRNN_OP(gru_backward).call(
            defined_or_none(grads[0]), defined_or_none(grads[1]), w_hh, hs, gates, s[3],
            defined_or_none(lengths), reverse, reset_after, defined_or_none(zoneout_h),
            zoneout);
      });
    }
    return {result[0], result[1], result[2], b_hh.defined() ? result[3] : Tensor(),
            Tensor(),  Tensor(),  Tensor(),  Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward_autograd(
    const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh, const optional<Tensor>& b_hh,
    const optional<Tensor>& lengths, bool reverse, bool reset_after, bool save_for_backward,
    const optional<Tensor>& zoneout_h, double zoneout) {
  const variable_list out = GruFunction::apply(input_gates, h0, w_hh, b_hh, lengths, reverse,
                                               reset_after, save_for_backward, zoneout_h,
                                               zoneout);
  return {out[0], out[1], out[2], out[3], out[4]};
}

// ---------------------------------------------------------------- Elman RNN

struct RnnFunction : torch::autograd::Function<RnnFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& input_gates, const Tensor& h0,
                               const Tensor& w_hh, const optional<Tensor>& b_hh,
                               const optional<Tensor>& lengths, bool reverse,
                               c10::string_view nonlinearity, bool save_for_backward,
                               const optional<Tensor>& zoneout_h, double zoneout) {
    ctx->saved_data["input_gates_edge"] = replay::edge_of(input_gates);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [output, h_n, hs] =
        FASTRNN_OP(rnn_forward).call(input_gates, h0, w_hh, b_hh, lengths, reverse, nonlinearity,
                                     save_for_backward, zoneout_h, zoneout);
    ctx->mark_non_differentiable({hs});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({w_hh, hs, lengths.value_or(Tensor()), h0, b_hh.value_or(Tensor()),
                            zoneout_h.value_or(Tensor())});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["nonlinearity"] = std::string(nonlinearity);
    ctx->saved_data["zoneout"] = zoneout;
    return {output, h_n, hs};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const Tensor &w_hh = s[0], &hs = s[1], &lengths = s[2], &b_hh = s[4], &zoneout_h = s[5];
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const std::string nonlinearity = ctx->saved_data["nonlinearity"].toStringRef();
    const double zoneout = ctx->saved_data["zoneout"].toDouble();
    require_saved(hs);
    variable_list result;
    if (at::GradMode::is_enabled()) {
      const replay::Inputs in{ctx->saved_data["input_gates_edge"], s[3], Tensor(), w_hh,
                              b_hh, Tensor(), lengths, reverse, {zoneout_h, Tensor(), zoneout}};
      result = replay::rnn(in, hs, nonlinearity, {grads[0], grads[1]});
    } else {
      result = run_backward([&] {
        return FASTRNN_OP(rnn_backward).call(
            defined_or_none(grads[0]), defined_or_none(grads[1]), w_hh, hs,
            defined_or_none(lengths), reverse, nonlinearity, defined_or_none(zoneout_h),
            zoneout);
      });
    }
    return {result[0], result[1], result[2], b_hh.defined() ? result[3] : Tensor(),
            Tensor(),  Tensor(),  Tensor(),  Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> rnn_forward_autograd(
    const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh, const optional<Tensor>& b_hh,
    const optional<Tensor>& lengths, bool reverse, c10::string_view nonlinearity,
    bool save_for_backward, const optional<Tensor>& zoneout_h, double zoneout) {
  const variable_list out = RnnFunction::apply(input_gates, h0, w_hh, b_hh, lengths, reverse,
                                               nonlinearity, save_for_backward, zoneout_h,
                                               zoneout);
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
