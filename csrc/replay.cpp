// The differentiable replay of replay.h.
#include "replay.h"

#include "checks.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <functional>
#include <vector>

namespace fastrnn {
namespace replay {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Edge;
using torch::autograd::Node;

struct EdgeHolder : torch::CustomClassHolder {
  explicit EdgeHolder(Edge e) : edge(std::move(e)) {}
  Edge edge;
};

// Hands the gradient it receives on to one edge: the bridge from the replay's stand-in for
// the input gates to the graph that produced them.
struct FlowInto : Node {
  explicit FlowInto(Edge edge) : Node(torch::autograd::edge_list{std::move(edge)}) {}
  variable_list apply(variable_list&& grads) override { return std::move(grads); }
};

// Zeros shaped like the input gates whose gradient flows into `edge`: the replay's
// pre-activations are sums with them, whose values it never reads (SavedActivation), so
// their gradients reach the input gates without the input gates' values.
Tensor input_gates_stand_in(const c10::IValue& edge, at::IntArrayRef shape,
                            const at::TensorOptions& options) {
  Tensor zeros = at::zeros(shape, options);
  if (edge.isNone()) return zeros;
  const auto holder = c10::static_intrusive_pointer_cast<EdgeHolder>(edge.toCapsule());
  torch::autograd::set_history(zeros, c10::make_intrusive<FlowInto>(holder->edge));
  return zeros;
}

enum Activation : int64_t { kSigmoid, kTanh, kRelu };

// act(pre) whose value is the forward's saved activation: its gradient to `pre` is written
// in terms of that value (sigmoid a(1-a), tanh 1-a^2, relu a>0) with differentiable ops on
// this node's own output, so a second derivative flows back through it to `pre`.
struct SavedActivation : torch::autograd::Function<SavedActivation> {
  static variable_list forward(AutogradContext* ctx, const Tensor& /*pre*/, const Tensor& saved,
                               int64_t activation) {
    Tensor out = saved.clone();
    ctx->save_for_backward({out});
    ctx->saved_data["activation"] = activation;
    return {out};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor a = ctx->get_saved_variables()[0];
    Tensor slope;
    switch (ctx->saved_data["activation"].toInt()) {
      case kSigmoid: slope = a * (1 - a); break;
      case kTanh: slope = 1 - a * a; break;
      default: slope = (a > 0).to(a.scalar_type()); break;
    }
    return {grads[0] * slope, Tensor(), Tensor()};
  }
};

Tensor activate(const Tensor& pre, const Tensor& saved, Activation activation) {
  return SavedActivation::apply(pre, saved, static_cast<int64_t>(activation))[0];
}

// What the replays share: the stand-in for the input gates cut into time steps, the
// weights in the accumulation dtype the kernels compute in, each step's mask, and the
// gradient of the replayed outputs. Every tensor the time loop reads many times is cut
// before it (one autograd node gathers the gradients of all the pieces): an index or slice
// inside the loop would give each step's gradient its own zero-filled copy of the whole.
struct Replay {
  const Inputs& in;
  at::ScalarType acc;
  int64_t T;
  Tensor input_gates;                // the stand-in [T, B, G]
  std::vector<Tensor> input_steps;   // its time steps, [B, G] each
  Tensor h0, c0, w_hh, b_hh, w_hr_t;
  std::vector<Tensor> keep_h, keep_c;  // zoneout masks' time steps (empty: none, or p alone)

  Replay(const Inputs& inputs, at::IntArrayRef gates_shape, at::ScalarType acc_type)
      : in(inputs), acc(acc_type), T(gates_shape[0]) {
    if (in.zoneout.h.defined()) keep_h = in.zoneout.h.to(acc).unbind(0);
    if (in.zoneout.c.defined()) keep_c = in.zoneout.c.to(acc).unbind(0);
    input_gates = input_gates_stand_in(in.input_gates_edge, gates_shape, in.w_hh.options());
    input_steps = input_gates.to(acc).unbind(0);
    h0 = in.h0.to(acc);
    c0 = in.c0.defined() ? in.c0.to(acc) : Tensor();
    w_hh = in.w_hh.to(acc);
    b_hh = in.b_hh.defined() ? in.b_hh.to(acc) : Tensor();
    w_hr_t = in.w_hr.defined() ? in.w_hr.to(acc).t() : Tensor();
  }

  int64_t time_of(int64_t step) const { return in.reverse ? T - 1 - step : step; }

  // Zoneout at step t (cells/zoneout.h): candidate + keep (previous - candidate), keep from
  // the mask's step or the probability; the candidate itself without zoneout.
  Tensor zoned(const std::vector<Tensor>& keep, int64_t t, const Tensor& previous,
               const Tensor& candidate) const {
    if (!keep.empty()) return candidate + keep[t] * (previous - candidate);
    if (in.zoneout.p == 0) return candidate;
    return candidate + in.zoneout.p * (previous - candidate);
  }

  // [B, 1]: which sequences take part in time step t (undefined: all of them).
  Tensor live(int64_t t) const {
    return in.lengths.defined() ? (in.lengths > t).unsqueeze(1) : Tensor();
  }

  // The recurrent product's weights cut into gate groups of the given row counts:
  // (W^T, b) of each group, b undefined without a bias.
  std::vector<std::pair<Tensor, Tensor>> recurrent_groups(at::IntArrayRef rows) const {
    const std::vector<Tensor> weights = w_hh.split_with_sizes(rows, 0);
    const std::vector<Tensor> biases =
        b_hh.defined() ? b_hh.split_with_sizes(rows, 0) : std::vector<Tensor>(rows.size());
    std::vector<std::pair<Tensor, Tensor>> groups;
    for (size_t i = 0; i < rows.size(); ++i) groups.emplace_back(weights[i].t(), biases[i]);
    return groups;
  }

  // state W^T + b for one group.
  static Tensor product(const Tensor& state, const std::pair<Tensor, Tensor>& group) {
    const auto& [weight_t, bias] = group;
    return bias.defined() ? at::addmm(bias, state, weight_t) : at::mm(state, weight_t);
  }

  // The forward's saved activation of rows that took part in step t; zeros for the others
  // (their saved values are not the cell's, and nothing reads them).
  static Tensor saved_where_live(const Tensor& saved, const Tensor& live) {
    return live.defined() ? at::where(live, saved, 0) : saved;
  }

  // autograd's gradients, differentiable again, of the replayed step outputs and final
  // states with respect to `inputs` (undefined for an input nothing depends on). grads:
  // those of (output [T, B, P], final states...). The steps go to autograd one by one, each
  // with its time step of grads[0]: a stacked output would hand each step its gradient
  // through a zero-filled [T, B, P] copy in the second backward.
  // cell_steps (LSTM, return_cells): the replayed cell-state outputs, whose gradient is
  // grads[finals.size() + 1].
  variable_list gradients(const variable_list& steps, const variable_list& finals,
                          const variable_list& grads, const variable_list& inputs,
                          const variable_list& cell_steps = {}) const {
    const auto dtype = in.w_hh.scalar_type();
    variable_list used_outputs, used_grads, wanted;
    const auto use = [&](const Tensor& output, const Tensor& grad) {
      if (grad.defined() && output.requires_grad()) {
        used_outputs.push_back(output.to(dtype));
        used_grads.push_back(grad.to(dtype));
      }
    };
    const auto use_steps = [&](const variable_list& outputs, const Tensor& grad) {
      if (!grad.defined()) return;
      const variable_list step_grads = grad.unbind(0);
      for (size_t t = 0; t < outputs.size(); ++t) use(outputs[t], step_grads[t]);
    };
    use_steps(steps, grads[0]);
    for (size_t i = 0; i < finals.size(); ++i) use(finals[i], grads[i + 1]);
    if (!cell_steps.empty()) use_steps(cell_steps, grads[finals.size() + 1]);
    for (const Tensor& input : inputs) {
      if (input.defined() && input.requires_grad()) wanted.push_back(input);
    }
    variable_list result(inputs.size());
    if (used_outputs.empty() || wanted.empty()) return result;
    const variable_list found = torch::autograd::grad(used_outputs, wanted, used_grads,
                                                      /*retain_graph=*/true,
                                                      /*create_graph=*/true,
                                                      /*allow_unused=*/true);
    auto next = found.begin();
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined() && inputs[i].requires_grad()) result[i] = *next++;
    }
    return result;
  }

  // Runs `step` (state in, new state out) over time in the layer's direction, keeping
  // finished sequences' states and zeroing their outputs; returns the outputs of the time
  // steps, [B, P] each, in time order.
  // step(t, state, live) -> new state, whose first tensor is also the step's output.
  using Step =
      std::function<std::vector<Tensor>(int64_t, const std::vector<Tensor>&, const Tensor&)>;
  variable_list run(const Step& step, std::vector<Tensor>& state) const {
    variable_list outputs(T);
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = time_of(s);
      const Tensor mask = live(t);
      std::vector<Tensor> next = step(t, state, mask);
      if (mask.defined()) {
        outputs[t] = at::where(mask, next[0], 0);
        for (size_t i = 0; i < state.size(); ++i) state[i] = at::where(mask, next[i], state[i]);
      } else {
        outputs[t] = next[0];
        state = std::move(next);
      }
    }
    return outputs;
  }
};

}  // namespace

c10::IValue edge_of(const Tensor& tensor) {
  if (!tensor.requires_grad()) return c10::IValue();
  return c10::IValue::make_capsule(
      c10::make_intrusive<EdgeHolder>(torch::autograd::impl::gradient_edge(tensor)));
}

variable_list lstm(const Inputs& in, const Tensor& gates, const variable_list& grads) {
  const Replay r(in, gates.sizes(), gates.scalar_type());
  const int64_t H = gates.size(2) / 4;
  const auto recurrent = r.recurrent_groups({4 * H})[0];
  std::vector<Tensor> state{r.h0, r.c0};  // (h, c); the step's output is its new h
  const bool cells_wanted = grads.size() > 3 && grads[3].defined();
  variable_list cell_steps(cells_wanted ? r.T : 0);  // the cell-state outputs, zero once ended
  const variable_list steps = r.run(
      [&](int64_t t, const std::vector<Tensor>& hc, const Tensor& live) {
        const std::vector<Tensor> pre =
            (r.input_steps[t] + Replay::product(hc[0], recurrent)).split(H, 1);
        const std::vector<Tensor> saved = Replay::saved_where_live(gates[t], live).split(H, 1);
        const Tensor i = activate(pre[0], saved[0], kSigmoid);
        const Tensor f = activate(pre[1], saved[1], kSigmoid);
        const Tensor g = activate(pre[2], saved[2], kTanh);
        const Tensor o = activate(pre[3], saved[3], kSigmoid);
        const Tensor c = f * hc[1] + i * g;
        const Tensor m = o * at::tanh(c);
        const Tensor h = r.w_hr_t.defined() ? at::mm(m, r.w_hr_t) : m;
        const Tensor carried = r.zoned(r.keep_c, t, hc[1], c);
        if (cells_wanted) cell_steps[t] = live.defined() ? at::where(live, carried, 0) : carried;
        return std::vector<Tensor>{r.zoned(r.keep_h, t, hc[0], h), carried};
      },
      state);
  return r.gradients(steps, {state[0], state[1]}, grads,
                     {r.input_gates, in.h0, in.c0, in.w_hh, in.b_hh, in.w_hr}, cell_steps);
}

variable_list gru(const Inputs& in, const Tensor& gates, bool reset_after,
                  const variable_list& grads) {
  const Replay r(in, gates.sizes(), gates.scalar_type());
  const int64_t H = gates.size(2) / 3;
  // reset after: one product for all three gates; reset before: (r, z), then n apart
  const auto recurrent =
      reset_after ? r.recurrent_groups({3 * H}) : r.recurrent_groups({2 * H, H});
  std::vector<Tensor> state{r.h0};
  const variable_list steps = r.run(
      [&](int64_t t, const std::vector<Tensor>& hv, const Tensor& live) {
        const Tensor& h = hv[0];
        const std::vector<Tensor> x = r.input_steps[t].split_with_sizes({2 * H, H}, 1);
        const std::vector<Tensor> saved =
            Replay::saved_where_live(gates[t], live).split_with_sizes({2 * H, H}, 1);
        std::vector<Tensor> hh;  // (W_h{r,z} h + b_h{r,z}, W_hn h + b_hn) when reset after
        if (reset_after) hh = Replay::product(h, recurrent[0]).split_with_sizes({2 * H, H}, 1);
        const Tensor pre_rz = x[0] + (reset_after ? hh[0] : Replay::product(h, recurrent[0]));
        const std::vector<Tensor> rz = activate(pre_rz, saved[0], kSigmoid).split(H, 1);
        const Tensor &reset = rz[0], &update = rz[1];
        const Tensor pre_n = reset_after ? x[1] + reset * hh[1]
                                         : x[1] + Replay::product(reset * h, recurrent[1]);
        const Tensor n = activate(pre_n, saved[1], kTanh);
        return std::vector<Tensor>{r.zoned(r.keep_h, t, h, n + update * (h - n))};
      },
      state);
  return r.gradients(steps, {state[0]}, grads, {r.input_gates, in.h0, in.w_hh, in.b_hh});
}

variable_list rnn(const Inputs& in, const Tensor& hs, const std::string& nonlinearity,
                  const variable_list& grads) {
  const int64_t T = hs.size(0) - 1;
  const at::ScalarType acc = accumulation_dtype(hs.scalar_type());
  const Replay r(in, {T, hs.size(1), hs.size(2)}, acc);
  const Activation activation = nonlinearity == "relu" ? kRelu : kTanh;
  const auto recurrent = r.recurrent_groups({hs.size(2)})[0];
  std::vector<Tensor> state{r.h0};
  const variable_list steps = r.run(
      [&](int64_t t, const std::vector<Tensor>& hv, const Tensor& live) {
        // the state after step t sits in slot t + 1 (forward) or t (reverse)
        Tensor after = hs[in.reverse ? t : t + 1].to(acc);
        if (r.keep_h.empty() && in.zoneout.p != 0) {  // the cell's own value under zoneout
          const Tensor before = hs[in.reverse ? t + 1 : t].to(acc);  // (cells/rnn.h)
          // relu: a zeroed unit left p * before, rounded as the states are stored
          const Tensor above = after - (in.zoneout.p * before).to(hs.scalar_type()).to(acc);
          after = above / (1 - in.zoneout.p);
          if (activation == kRelu) after = at::where(above > 0, after, 0);
        }
        const Tensor pre = r.input_steps[t] + Replay::product(hv[0], recurrent);
        const Tensor cell = activate(pre, Replay::saved_where_live(after, live), activation);
        return std::vector<Tensor>{r.zoned(r.keep_h, t, hv[0], cell)};
      },
      state);
  return r.gradients(steps, {state[0]}, grads, {r.input_gates, in.h0, in.w_hh, in.b_hh});
}

}  // namespace replay
}  // namespace fastrnn
