// The layer-normalised GRU on the CPU, forward and backward, float32 and float64, in both
// reset forms. Per time step (torch.nn's gate order r, z, n):
//
//   reset after (torch.nn's form):
//     a = x_t + gamma_hh * LN(h_prev W_hh^T) + [beta_r, beta_z, 0]     LN over all 3H
//     r, z = sigmoid(a_r), sigmoid(a_z);  n = tanh(a_n + r * (gamma_n LN(.)_n + beta_n))
//   reset before (Cho et al.):
//     r, z from x_t + gamma_rz * LN(h_prev W_hr,hz^T) + beta_rz        LN over 2H
//     n = tanh(x_n + gamma_n * LN((r * h_prev) W_hn^T) + beta_n)        LN over H
//   h = (1 - z) * n + z * h_prev
//
// x_t is the input side, LN(x W_ih^T) * gamma_ih + beta_ih with the recurrent LN's r and z
// biases added, computed for every step at once by the Python layer; beta_n stays apart
// because the reset gate multiplies it in the first form. The walk is cpu/layernorm_rows.h
// (the GRU's cell formulas of cells/gru.h around each row's statistics); a finished sequence
// (lengths) keeps its state and writes zeros; zoneout blends h with its previous value after
// the step, as in the LSTM. No CUDA back-end yet: the layer runs its ATen
// formulation there (fastrnn/layernorm.py).
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "cpu/levels.h"
#include "drivers.h"

namespace fastrnn {
namespace {

using at::Tensor;
using c10::optional;

void check_args(const char* op, const Tensor& input_gates, const Tensor& h0, const Tensor& w_hh,
                const Tensor& gamma_hh, const optional<Tensor>& beta_n,
                const optional<Tensor>& lengths) {
  TORCH_CHECK(input_gates.dim() == 3 && input_gates.size(2) % 3 == 0 && input_gates.size(2) > 0,
              op, ": input_gates must be 3-D [T, B, 3*H], got shape ", input_gates.sizes());
  const int64_t T = input_gates.size(0), B = input_gates.size(1), H = input_gates.size(2) / 3;
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
  check("w_hh", w_hh, {3 * H, H});
  check("gamma_hh", gamma_hh, {3 * H});
  if (beta_n.has_value()) check("beta_n", *beta_n, {H});
  check_lengths(op, lengths, B, T, input_gates.device());
}

// Returns (output [T,B,H], h_n [B,H], then what backward reads: hs [T+1,B,H] by processing
// step, the post-activation gates [T,B,3H], the normalised recurrent products [T,B,3H], each
// row's reciprocal standard deviations [T,B,2], by time step, and r * h_prev [T,B,H] by
// processing step (reset before; empty otherwise)). save false (inference): those hold the
// last step only ([1,...]; hs [2,B,H]).
std::vector<Tensor> layernorm_gru_forward(const Tensor& input_gates_in, const Tensor& h0,
                                          const Tensor& w_hh_in, const Tensor& gamma_hh_in,
                                          const optional<Tensor>& beta_n_in,
                                          const optional<Tensor>& lengths_in, bool reverse,
                                          bool reset_after, double eps,
                                          const optional<Tensor>& zoneout_h_in, double zoneout,
                                          bool save) {
  const char* op = "fastrnn::layernorm_gru_forward";
  check_args(op, input_gates_in, h0, w_hh_in, gamma_hh_in, beta_n_in, lengths_in);
  TORCH_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
  check_zoneout(op, zoneout, zoneout_h_in, "zoneout_h",
                {input_gates_in.size(0), input_gates_in.size(1), input_gates_in.size(2) / 3},
                input_gates_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);
  const Tensor input_gates = input_gates_in.contiguous(), w_hh = w_hh_in.contiguous();
  const Tensor gamma_hh = gamma_hh_in.contiguous();
  const optional<Tensor> beta_n = contiguous_or_none(beta_n_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const int64_t T = input_gates.size(0), B = input_gates.size(1), G = input_gates.size(2);
  const int64_t H = G / 3;
  const auto opts = input_gates.options();
  // inference (save false) keeps one step of what backward reads and two states
  const int64_t steps = save ? T : 1;
  Tensor output = new_buffer({T, B, H}, opts), hs = new_buffer({save ? T + 1 : 2, B, H}, opts);
  Tensor gates = new_buffer({steps, B, G}, opts), recurrent_hat = new_buffer({steps, B, G}, opts);
  Tensor rstd = new_buffer({steps, B, 2}, opts), recurrent = new_buffer({B, G}, opts);
  Tensor reset_h = reset_after ? at::empty({0}, opts) : new_buffer({steps, B, H}, opts);
  hs[0].copy_(h0);
  if (T > 0 && B > 0) {
    cpu::simd_level().layernorm_gru_forward(LayerNormGruForwardArgs{
        input_gates.scalar_type() == at::kDouble, T, B, H, eps,
        lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr, reverse, reset_after,
        input_gates.data_ptr(), w_hh.data_ptr(), gamma_hh.data_ptr(),
        beta_n.has_value() ? beta_n->data_ptr() : nullptr, hs.data_ptr(), output.data_ptr(),
        gates.data_ptr(), recurrent_hat.data_ptr(), rstd.data_ptr(), reset_h.data_ptr(),
        recurrent.data_ptr(), data_or_null(zoneout_h), zoneout_probability(zoneout_h, zoneout),
        save});
  }
  return {output, hs[save ? T : T % 2].clone(), hs, gates, recurrent_hat, rstd, reset_h};
}

// Returns the gradients of (input_gates [T,B,3H], h0, w_hh, gamma_hh, beta_n), given those
// of (output, h_n) (either may be absent) and what the forward saved.
std::vector<Tensor> layernorm_gru_backward(
    const optional<Tensor>& grad_output_in, const optional<Tensor>& grad_h_n,
    const Tensor& w_hh_in, const Tensor& gamma_hh_in, const optional<Tensor>& beta_n_in,
    const Tensor& hs_in, const Tensor& gates_in, const Tensor& recurrent_hat_in,
    const Tensor& rstd_in, const Tensor& reset_h_in, const optional<Tensor>& lengths_in,
    bool reverse, bool reset_after, const optional<Tensor>& zoneout_h_in, double zoneout) {
  const char* op = "fastrnn::layernorm_gru_backward";
  TORCH_CHECK(gates_in.dim() == 3 && gates_in.size(2) % 3 == 0 && gates_in.size(2) > 0, op,
              ": gates must be 3-D [T, B, 3*H], got shape ", gates_in.sizes());
  const int64_t T = gates_in.size(0), B = gates_in.size(1), G = gates_in.size(2);
  const int64_t H = G / 3;
  const Tensor h0_like = hs_in.dim() == 3 && hs_in.size(0) == T + 1 ? hs_in[0] : hs_in;
  check_args(op, gates_in, h0_like, w_hh_in, gamma_hh_in, beta_n_in, lengths_in);
  const auto same = [&](const char* name, const Tensor& t, std::vector<int64_t> shape) {
    TORCH_CHECK(t.sizes() == at::IntArrayRef(shape) && t.scalar_type() == gates_in.scalar_type(),
                op, ": ", name, " must be ", gates_in.scalar_type(), " of shape ",
                at::IntArrayRef(shape), ", got ", t.scalar_type(), " of shape ", t.sizes());
  };
  same("hs", hs_in, {T + 1, B, H});
  same("recurrent_hat", recurrent_hat_in, {T, B, G});
  same("rstd", rstd_in, {T, B, 2});
  if (reset_after) {
    same("reset_h", reset_h_in, {0});
  } else {
    same("reset_h", reset_h_in, {T, B, H});
  }
  if (grad_output_in.has_value()) same("grad_output", *grad_output_in, {T, B, H});
  if (grad_h_n.has_value()) same("grad_h_n", *grad_h_n, {B, H});
  check_zoneout(op, zoneout, zoneout_h_in, "zoneout_h", {T, B, H}, gates_in);
  const optional<Tensor> zoneout_h = contiguous_or_none(zoneout_h_in);

  const Tensor hs = hs_in.contiguous(), gates = gates_in.contiguous();
  const Tensor recurrent_hat = recurrent_hat_in.contiguous(), rstd = rstd_in.contiguous();
  const Tensor reset_h = reset_h_in.contiguous(), w_hh = w_hh_in.contiguous();
  const Tensor gamma_hh = gamma_hh_in.contiguous();
  const optional<Tensor> beta_n = contiguous_or_none(beta_n_in);
  const optional<Tensor> lengths = contiguous_or_none(lengths_in);
  const optional<Tensor> grad_output = contiguous_or_none(grad_output_in);
  const auto opts = gates.options();
  Tensor dh = grad_h_n.has_value() ? grad_h_n->clone() : at::zeros({B, H}, opts);
  Tensor grad_gates = new_buffer({T, B, G}, opts);      // by time step: d input_gates
  Tensor grad_norm = new_buffer({T, B, G}, opts);       // by time step: d (gamma LN(.) + beta)
  Tensor grad_recurrent = new_buffer({T, B, G}, opts);  // by processing step
  Tensor scratch = reset_after ? at::empty({0}, opts) : new_buffer({B, H}, opts);
  if (T > 0 && B > 0) {
    cpu::simd_level().layernorm_gru_backward(LayerNormGruBackwardArgs{
        gates.scalar_type() == at::kDouble, T, B, H,
        lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr, reverse, reset_after,
        grad_output.has_value() ? grad_output->data_ptr() : nullptr, w_hh.data_ptr(),
        gamma_hh.data_ptr(), beta_n.has_value() ? beta_n->data_ptr() : nullptr, hs.data_ptr(),
        gates.data_ptr(), recurrent_hat.data_ptr(), rstd.data_ptr(), dh.data_ptr(),
        grad_gates.data_ptr(), grad_norm.data_ptr(), grad_recurrent.data_ptr(),
        scratch.data_ptr(), data_or_null(zoneout_h), zoneout_probability(zoneout_h, zoneout)});
  }
  // d W_hh: each recurrent product's gradient times what it multiplied, summed over steps
  const Tensor h_prev = hs.narrow(0, 0, T).reshape({T * B, H});
  const Tensor d_rec = grad_recurrent.reshape({T * B, G});
  Tensor grad_w_hh = reset_after
                         ? d_rec.t().mm(h_prev)
                         : at::cat({d_rec.narrow(1, 0, 2 * H).t().mm(h_prev),
                                    d_rec.narrow(1, 2 * H, H).t().mm(reset_h.reshape({T * B, H}))});
  Tensor grad_gamma_hh = (grad_norm * recurrent_hat).sum({0, 1});
  Tensor grad_beta_n = beta_n.has_value() ? grad_norm.narrow(2, 2 * H, H).sum({0, 1})
                                          : at::empty({0}, opts);
  return {grad_gates, dh, grad_w_hh, grad_gamma_hh, grad_beta_n};
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def(
      "layernorm_gru_forward(Tensor input_gates, Tensor h0, Tensor w_hh, Tensor gamma_hh, "
      "Tensor? beta_n, Tensor? lengths, bool reverse, bool reset_after, float eps, "
      "Tensor? zoneout_h=None, float zoneout=0., bool save=True) -> Tensor[]");
  m.def(
      "layernorm_gru_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor w_hh, "
      "Tensor gamma_hh, Tensor? beta_n, Tensor hs, Tensor gates, Tensor recurrent_hat, "
      "Tensor rstd, Tensor reset_h, Tensor? lengths, bool reverse, bool reset_after, "
      "Tensor? zoneout_h=None, float zoneout=0.) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("layernorm_gru_forward", &fastrnn::layernorm_gru_forward);
  m.impl("layernorm_gru_backward", &fastrnn::layernorm_gru_backward);
}
