// Inference through a whole stack of layers in one operator call: for each layer and
// direction the input projection (linear) and the layer's walk (lstm_forward, gru_forward,
// rnn_forward), the drivers themselves, in the order fastrnn/functional.py calls them one
// by one when autograd is on. One call instead of two per layer and direction saves the
// Python and the dispatch around each: a generation step of 3 layers (B=1, T=1) measured
// on two Sapphire Rapids cores, GRU H=512 517 -> 459 us (torch.nn 462), H=16 85 -> 60 us
// (torch.nn 72), LSTM H=512 694 -> 586 us.
#include "drivers.h"

namespace fastrnn {

std::tuple<Tensor, Tensor, Tensor> stack_forward(
    c10::string_view mode, const Tensor& x, const Tensor& h0, const optional<Tensor>& c0,
    const c10::List<optional<Tensor>>& weights, int64_t num_layers, bool bidirectional,
    const optional<Tensor>& lengths, bool reset_after) {
  const char* op = "fastrnn::stack_forward";
  const bool lstm = mode == "LSTM", gru = mode == "GRU";
  TORCH_CHECK(lstm || gru || mode == "RNN_TANH" || mode == "RNN_RELU", op,
              ": mode must be LSTM, GRU, RNN_TANH or RNN_RELU, got ", mode);
  const int64_t directions = bidirectional ? 2 : 1;
  TORCH_CHECK(num_layers >= 1 && static_cast<int64_t>(weights.size()) ==
                                     5 * num_layers * directions,
              op, ": expected 5 weights (w_ih, w_hh, b_ih, b_hh, w_hr) per layer and "
              "direction, got ", weights.size(), " for ", num_layers, " layers");
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 3 && h0.size(0) == num_layers * directions, op,
              ": x must be [T, B, input] and h0 [layers * directions, B, P], got ", x.sizes(),
              " and ", h0.sizes());
  TORCH_CHECK(!lstm || (c0.has_value() && c0->dim() == 3 && c0->size(0) == h0.size(0)), op,
              ": an LSTM needs c0 [layers * directions, B, H]");
  const int64_t T = x.size(0), B = x.size(1);
  const c10::string_view nonlinearity = mode == "RNN_RELU" ? "relu" : "tanh";

  std::vector<Tensor> h_n, c_n;
  Tensor layer_input = x;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    std::vector<Tensor> outputs;
    for (int64_t direction = 0; direction < directions; ++direction) {
      const int64_t k = layer * directions + direction;
      auto weight = [&](int64_t slot) { return weights.get(5 * k + slot); };
      const optional<Tensor> w_ih = weight(0), w_hh = weight(1);
      TORCH_CHECK(w_ih.has_value() && w_hh.has_value(), op, ": layer ", layer,
                  " has no w_ih or w_hh");
      const Tensor gates =
          fastrnn::linear(layer_input.reshape({T * B, layer_input.size(2)}), *w_ih, weight(2))
              .view({T, B, w_ih->size(0)});
      const bool reverse = direction == 1;
      Tensor output, h;
      if (lstm) {
        Tensor c;
        std::tie(output, h, c, std::ignore, std::ignore, std::ignore, std::ignore,
                 std::ignore) = lstm_forward(gates, h0[k], (*c0)[k], *w_hh, weight(3),
                                             weight(4), lengths, reverse, false, c10::nullopt,
                                             c10::nullopt, 0.0, false);
        c_n.push_back(c);
      } else if (gru) {
        std::tie(output, h, std::ignore, std::ignore, std::ignore) =
            gru_forward(gates, h0[k], *w_hh, weight(3), lengths, reverse, reset_after, false,
                        c10::nullopt, 0.0);
      } else {
        std::tie(output, h, std::ignore) =
            rnn_forward(gates, h0[k], *w_hh, weight(3), lengths, reverse, nonlinearity, false,
                        c10::nullopt, 0.0);
      }
      outputs.push_back(output);
      h_n.push_back(h);
    }
    if (directions == 1) {
      layer_input = outputs[0];
    } else {  // both directions side by side, in a buffer from the cache (as functional.py)
      layer_input = new_buffer({T, B, 2 * outputs[0].size(2)}, outputs[0].options());
      at::cat_out(layer_input, outputs, 2);
    }
  }
  // one layer in one direction (a generation step's usual call): a view, not a copy
  auto stacked = [](const std::vector<Tensor>& states) {
    return states.size() == 1 ? states[0].unsqueeze(0) : at::stack(states);
  };
  return {layer_input, stacked(h_n), lstm ? stacked(c_n) : at::empty({0}, h0.options())};
}

}  // namespace fastrnn
