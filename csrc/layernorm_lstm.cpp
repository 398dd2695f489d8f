// The layer-normalised LSTM (Ba, Kiros & Hinton 2016, in haste's formulation) on the CPU,
// forward and backward, float32 and float64. Per time step:
//
//   a = x_t + gamma_hh * LN(h_prev W_hh^T)       x_t: the input side, LN(x W_ih^T) * gamma_ih
//                                                 + both LN biases, computed for every step
//                                                 at once by the Python layer
//   i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a's four blocks (torch.nn's gate order)
//   c = f * c_prev + i * g
//   h = o * tanh(gamma_c * LN(c) + beta_c)
//
// LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over one row (biased variance, as nn.LayerNorm).
// Each step is one product (the CPU Device's, on weights packed once per call) and one
// parallel pass over the batch rows on SIMD vectors (cpu/layernorm_rows.h, at the SIMD
// level the other CPU kernels run at; the formulas in cells/layernorm_lstm.h); a row's
// statistics are sums over its own features, so nothing crosses rows. A finished sequence
// (lengths) keeps its state and writes zeros, as in the other layers; zoneout (masks drawn
// by the layer, or the keep probability in evaluation) blends h and c with their previous
// values after the step (cells/zoneout.h).
//
// This operator lives outside the shared sequence walks (sequence/) and has no CUDA
// back-end yet: the layer runs its ATen formulation there (fastrnn/layernorm.py).
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "cpu/levels.h"
#include "drivers.h"

namespace fastrnn {
namespace {

using at::Tensor;
using c10::optional;

void check_args(const char* op, const Tensor& input_gates, const Tensor& h0, const Tensor& c0,
                const Tensor& w_hh, const Tensor& gamma_hh, const Tensor& gamma_c,
                const optional<Tensor>& beta_c, const optional<Tensor>& lengths) {
  TORCH_CHECK(input_gates.dim() == 3 && input_gates.size(2) % 4 == 0, op,
              ": input_gates must be 3-D [T, B, 4*H], got shape ", input_gates.sizes());
  const int64_t T = input_gates.size(0), B = input_gates.size(1), H = input_gates.size(2) / 4;
  TORCH_CHECK(H > 0, op, ": the hidden size must be positive, got input_gates of shape ",
              input_gates.sizes());
  const auto dtype = input_gates.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op,
              ": input_gates must be Float or Double, got ", dtype);
  TORCH_CHECK(input_gates.is_cpu(), op, ": runs on the CPU only, got input_gates on ",
              input_gates.device());
  const auto check = [&](const char* name, const Tensor& t, std::vector<int64_t> shape) {
    TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), op, ": ", name, " must have shape ",
                at::IntArrayRef(shape), ", got ", t.sizes());
    TORCH_CHECK(t.scalar_type() == dtype && t.device() == input_gates.device(), op, ": ", name,
                " must be ", dtype, " on ", input_gates.device(), " like input_gates, got ",
                t.scalar_type(), " on ", t.device());
  };
  check("h0", h0, {B, H});
  check("c0", c0, {B, H});
  check("w_hh", w_hh, {4 * H, H});
  check("gamma_hh", gamma_hh, {4 * H});
  check("gamma_c", gamma_c, {H});
  if (beta_c.has_value()) check("beta_c", *beta_c, {H});
  check_lengths(op, lengths, B, T, input_gates.device());
}

// Returns (output [T,B,H], h_n [B,H], c_n [B,H], then what backward reads: hs [T+1,B,H]
// and cs [T+1,B,H] by processing step, the post-activation gates [T,B,4H], the normalised
// recurrent product [T,B,4H], the normalised cell state [T,B,H] and each row's reciprocal
// standard deviations [T,B,2] (recurrent product, cell state), by time step). save false
// (inference): those hold the last step only ([1,...]; hs and cs [2,B,H]).
std::vector<Tensor> layernorm_lstm_forward(const Tensor& input_gates_in, const Tensor& h0,
                                           const Tensor& c0, const Tensor& w_hh_in,
                                           const Tensor& gamma_hh_in, const Tensor& gamma_c_in,
                                           const optional<Tensor>& beta_c_in,
                                           const optional<Tensor>& lengths_in, bool reverse,
                                           double eps, const optional<Tensor>& zoneout_h_in,
                                           const optional<Tensor>& zoneout_c_in, double zoneout,
                                           bool save) {
  const char* op = "fastrnn::layernorm_lstm_forward";
  check_args(op, input_gates_in, h0, c0, w_hh_in, gamma_hh_in, gamma_c_in, beta_c_in,
             lengths_in);
  TORCH_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
  const int64_t H_in = input_gates_in.size(2) / 4;
  check_lstm_zoneout(op, zoneout_h_in, zoneout_c_in, zoneout, input_gates_in.size(0),
                     input_gates_in.size(1), H_in, H_in, input_gates_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const optional<Tensor> zoneout_c = contiguous_or_none(zoneout_c_in);
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const Tensor gamma_hh = gamma_hh_in.contiguous(), gamma_c = gamma_c_in.contiguous();
  const optional<Tensor> beta_c = contiguous_or_none(beta_c_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / 4;
  const auto opts = input_gates.options();
  // inference (save false) keeps one step of what backward reads and two states
  const int64_t steps = save ? T : 1, states = save ? T + 1 : 2;
  Tensor output = new_buffer({T, B, H}, opts);
  Tensor hs = new_buffer({states, B, H}, opts), cs = new_buffer({states, B, H}, opts);
  Tensor gates = new_buffer({steps, B, G}, opts), recurrent_hat = new_buffer({steps, B, G}, opts);
  Tensor cell_hat = new_buffer({steps, B, H}, opts), rstd = new_buffer({steps, B, 2}, opts);
  Tensor recurrent = new_buffer({B, G}, opts);
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  if (T > 0 && B > 0) {
    cpu::simd_level().layernorm_lstm_forward(LayerNormLstmForwardArgs{
        input_gates.scalar_type() == at::kDouble, T, B, H, eps,
        lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr, reverse,
        input_gates.data_ptr(), w_hh.data_ptr(), gamma_hh.data_ptr(), gamma_c.data_ptr(),
        beta_c.has_value() ? beta_c->data_ptr() : nullptr, hs.data_ptr(), cs.data_ptr(),
        output.data_ptr(), gates.data_ptr(), recurrent_hat.data_ptr(), cell_hat.data_ptr(),
        rstd.data_ptr(), recurrent.data_ptr(), data_or_null(zoneout_h), data_or_null(zoneout_c),
        zoneout_probability(zoneout_h, zoneout), save});
  }
  const int64_t last = save ? T : T % 2;
  return {output, hs[last].clone(), cs[last].clone(), hs, cs, gates, recurrent_hat, cell_hat,
          rstd};
}

// Returns the gradients of (input_gates [T,B,4H], h0, c0, w_hh, gamma_hh, gamma_c, beta_c),
// given those of (output, h_n, c_n and every step's cell state by time step; any may be
// absent) and what the forward saved.
std::vector<Tensor> layernorm_lstm_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const optional<Tensor>& grad_c_n, const Tensor& w_hh_in, const Tensor& gamma_hh_in,
    const Tensor& gamma_c_in, const optional<Tensor>& beta_c_in, const Tensor& hs_in,
    const Tensor& cs_in, const Tensor& gates_in, const Tensor& recurrent_hat_in,
    const Tensor& cell_hat_in, const Tensor& rstd_in, const optional<Tensor>& lengths_in,
    bool reverse, const optional<Tensor>& zoneout_h_in, const optional<Tensor>& zoneout_c_in,
    double zoneout, const optional<Tensor>& grad_cells_in) {
  const char* op = "fastrnn::layernorm_lstm_backward";
  TORCH_CHECK(gates_in.dim() == 3 && gates_in.size(2) % 4 == 0 && gates_in.size(2) > 0, op,
              ": gates must be 3-D [T, B, 4*H], got shape ", gates_in.sizes());
  const int64_t T = gates_in.size(0), B = gates_in.size(1), G = gates_in.size(2);
  const int64_t H = G / 4;
  const Tensor h0_like = hs_in.dim() == 3 && hs_in.size(0) == T + 1 ? hs_in[0] : hs_in;
  const Tensor c0_like = cs_in.dim() == 3 && cs_in.size(0) == T + 1 ? cs_in[0] : cs_in;
  check_args(op, gates_in, h0_like, c0_like, w_hh_in, gamma_hh_in, gamma_c_in, beta_c_in,
             lengths_in);
  const auto same = [&](const char* name, const Tensor& t, std::vector<int64_t> shape) {
    TORCH_CHECK(t.sizes() == at::IntArrayRef(shape) && t.scalar_type() == gates_in.scalar_type(),
                op, ": ", name, " must be ", gates_in.scalar_type(), " of shape ",
                at::IntArrayRef(shape), ", got ", t.scalar_type(), " of shape ", t.sizes());
  };
  same("hs", hs_in, {T + 1, B, H});
  same("cs", cs_in, {T + 1, B, H});
  same("recurrent_hat", recurrent_hat_in, {T, B, G});
  same("cell_hat", cell_hat_in, {T, B, H});
  same("rstd", rstd_in, {T, B, 2});
  if (grad_output_in.has_value()) same("grad_output", *grad_output_in, {T, B, H});
  if (grad_h_n.has_value()) same("grad_h_n", *grad_h_n, {B, H});
  if (grad_c_n.has_value()) same("grad_c_n", *grad_c_n, {B, H});
  if (grad_cells_in.has_value()) same("grad_cells", *grad_cells_in, {T, B, H});
  const optional<Tensor> grad_cells = contiguous_or_none(grad_cells_in);
  check_lstm_zoneout(op, zoneout_h_in, zoneout_c_in, zoneout, T, B, H, H, gates_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const optional<Tensor> zoneout_c = contiguous_or_none(zoneout_c_in);

  const Tensor hs = hs_in.contiguous(), cs = cs_in.contiguous(), gates = gates_in.contiguous();
  const Tensor recurrent_hat = recurrent_hat_in.contiguous(), cell_hat = cell_hat_in.contiguous();
  const Tensor rstd = rstd_in.contiguous(), w_hh = w_hh_in.contiguous();
  const Tensor gamma_hh = gamma_hh_in.contiguous(), gamma_c = gamma_c_in.contiguous();
  const optional<Tensor> beta_c = contiguous_or_none(beta_c_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> grad_output = contiguous_or_none(grad_output_in);
  const auto opts = gates.options();
  Tensor dh = grad_h_n.has_value() ? grad_h_n->clone() : at::zeros({B, H}, opts);
  Tensor dc = grad_c_n.has_value() ? grad_c_n->clone() : at::zeros({B, H}, opts);
  Tensor grad_gates = new_buffer({T, B, G}, opts);       // by time step: d a
  Tensor grad_recurrent = new_buffer({T, B, G}, opts);   // by processing step: d (h W_hh^T)
  Tensor grad_cell_norm = new_buffer({T, B, H}, opts);   // by time step: d (gamma_c LN(c) + beta_c)
  if (T > 0 && B > 0) {
    cpu::simd_level().layernorm_lstm_backward(LayerNormLstmBackwardArgs{
        gates.scalar_type() == at::kDouble, T, B, H,
        lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr, reverse,
        grad_output.has_value() ? grad_output->data_ptr() : nullptr, w_hh.data_ptr(),
        gamma_hh.data_ptr(), gamma_c.data_ptr(), beta_c.has_value() ? beta_c->data_ptr() : nullptr,
        cs.data_ptr(), gates.data_ptr(), recurrent_hat.data_ptr(), cell_hat.data_ptr(),
        rstd.data_ptr(), dh.data_ptr(), dc.data_ptr(), grad_gates.data_ptr(),
        grad_recurrent.data_ptr(), grad_cell_norm.data_ptr(), data_or_null(zoneout_h),
        data_or_null(zoneout_c), zoneout_probability(zoneout_h, zoneout),
        data_or_null(grad_cells)});
  }
  Tensor grad_w_hh = grad_recurrent.reshape({T * B, G}).t().mm(hs.narrow(0, 0, T).reshape({T * B, H}));
  Tensor grad_gamma_hh = (grad_gates * recurrent_hat).sum({0, 1});
  Tensor grad_gamma_c = (grad_cell_norm * cell_hat).sum({0, 1});
  Tensor grad_beta_c = beta_c.has_value() ? grad_cell_norm.sum({0, 1}) : at::empty({0}, opts);
  return {grad_gates, dh, dc, grad_w_hh, grad_gamma_hh, grad_gamma_c, grad_beta_c};
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def(
      "layernorm_lstm_forward(Tensor input_gates, Tensor h0, Tensor c0, Tensor w_hh, "
      "Tensor gamma_hh, Tensor gamma_c, Tensor? beta_c, Tensor? lengths, bool reverse, "
      "float eps, Tensor? zoneout_h=None, Tensor? zoneout_c=None, float zoneout=0., "
      "bool save=True) -> Tensor[]");
  m.def(
      "layernorm_lstm_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, "
      "Tensor w_hh, Tensor gamma_hh, Tensor gamma_c, Tensor? beta_c, Tensor hs, Tensor cs, "
      "Tensor gates, Tensor recurrent_hat, Tensor cell_hat, Tensor rstd, Tensor? lengths, "
      "bool reverse, Tensor? zoneout_h=None, Tensor? zoneout_c=None, float zoneout=0., "
      "Tensor? grad_cells=None) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("layernorm_lstm_forward", &fastrnn::layernorm_lstm_forward);
  m.impl("layernorm_lstm_backward", &fastrnn::layernorm_lstm_backward);
}
