// The input projection of all time steps as one product, input [M, K] @ weight^T [K, N]
// + bias [N]: on the CPU in float32 through brgemm (matmul.h), elsewhere at::mm. Its
// autograd formula (autograd.cpp) calls it again for the input's gradient, and
// linear_weight_grads for the weight's and the bias's.
#include "checks.h"
#include "drivers.h"
#include "matmul.h"
#include "weight_grads.h"

namespace fastrnn {

Tensor linear(const Tensor& input, const Tensor& weight, const optional<Tensor>& bias) {
  const char* op = "fastrnn::linear";
  TORCH_CHECK(input.dim() == 2 && weight.dim() == 2, op, ": input and weight must be 2-D, got ",
              input.sizes(), " and ", weight.sizes());
  TORCH_CHECK(weight.size(1) == input.size(1), op, ": weight must be [N, ", input.size(1),
              "], got ", weight.sizes());
  TORCH_CHECK(input.is_floating_point() && weight.scalar_type() == input.scalar_type() &&
                  weight.device() == input.device(),
              op, ": weight must be ", input.scalar_type(), " on ", input.device(),
              " like input, got ", weight.scalar_type(), " on ", weight.device());
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": bias must be [",
                weight.size(0), "], got ", bias->sizes());
    check_like(op, "bias", *bias, weight);
  }
  return product(input, weight.t(), contiguous_or_none(bias));
}

std::tuple<Tensor, Tensor> linear_weight_grads(const Tensor& input, const Tensor& grad_output,
                                               bool with_bias) {
  const char* op = "fastrnn::linear_weight_grads";
  TORCH_CHECK(input.dim() == 2 && grad_output.dim() == 2 &&
                  grad_output.size(0) == input.size(0),
              op, ": input [M, K] and grad_output [M, N] must be 2-D with the same rows, got ",
              input.sizes(), " and ", grad_output.sizes());
  TORCH_CHECK(input.is_floating_point() && grad_output.scalar_type() == input.scalar_type() &&
                  grad_output.device() == input.device(),
              op, ": grad_output must be ", input.scalar_type(), " on ", input.device(),
              " like input, got ", grad_output.scalar_type(), " on ", grad_output.device());
  // the bias's column sums ride on the weight's product (a row of ones, 1/(K+1) more of
  // it) or, where the BLAS computes the weights' (weight_grads_through_blas), are a sum
  auto [grad_weight, grad_bias] =
      weight_and_bias_grads(input, contiguous_buffer(grad_output), with_bias);
  return {grad_weight, with_bias ? grad_bias : at::empty({0}, input.options())};
}

}  // namespace fastrnn
