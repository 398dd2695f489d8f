"""The layer-normalised LSTM (Ba, Kiros & Hinton 2016, in haste's formulation).

Per layer, direction and time step::

    a = LN_ih(x W_ih^T) + LN_hh(h W_hh^T)       each LN with its own gain and bias
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a's four blocks (torch.nn's order)
    c = f * c + i * g
    h = o * tanh(LN_cell(c))

LN normalises a row over its features as ``nn.LayerNorm`` does (biased variance, ``eps``
inside the square root), then scales by its gain and adds its bias. The input side of every
step is one product and one ``layer_norm`` before the time loop; the recurrence is one
fused operator on the CPU (csrc/layernorm_lstm.cpp, float32 and float64), and an ATen loop
elsewhere (CUDA, bfloat16, the emulated CUDA back-end) until those have kernels.
"""
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _ops
from .modules import (IncompatibleTensorError, InvalidShapeError, NotAStatePairError,
                      NotATensorError, _probability, _repack, _require_bool, _unpack)

ops = _ops.ops
_FUSED_DTYPES = (torch.float32, torch.float64)
_warned = set()

# The parameters of one layer and direction, in the order the recurrence takes them;
# (name prefix, whether it is a bias).
_PARAMETERS = (("weight_ih", False), ("weight_hh", False),
               ("layer_norm_ih_weight", False), ("layer_norm_ih_bias", True),
               ("layer_norm_hh_weight", False), ("layer_norm_hh_bias", True),
               ("layer_norm_cell_weight", False), ("layer_norm_cell_bias", True))


class _LayerNormLstmFunction(torch.autograd.Function):
    """One direction of one layer through the fused CPU operators."""

    @staticmethod
    def forward(ctx, input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse,
                eps):
        output, h_n, c_n, *saved = ops.layernorm_lstm_forward(
            input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse, eps)
        ctx.save_for_backward(w_hh, gamma_hh, gamma_c, beta_c, lengths, *saved)
        ctx.reverse = reverse
        return output, h_n, c_n

    @staticmethod
    def backward(ctx, grad_output, grad_h_n, grad_c_n):
        if torch.is_grad_enabled():
            # the operator's gradients are not differentiable: a graph through them would
            # give silently wrong second derivatives
            raise RuntimeError("fastrnn.LayerNormLSTM: gradients of gradients "
                               "(create_graph=True) are not supported by its fused CPU "
                               "operator yet")
        w_hh, gamma_hh, gamma_c, beta_c, lengths, *saved = ctx.saved_tensors
        grads = ops.layernorm_lstm_backward(grad_output, grad_h_n, grad_c_n, w_hh, gamma_hh,
                                            gamma_c, beta_c, *saved, lengths, ctx.reverse)
        d_input, d_h0, d_c0, d_w_hh, d_gamma_hh, d_gamma_c, d_beta_c = grads
        return (d_input, d_h0, d_c0, d_w_hh, d_gamma_hh, d_gamma_c,
                d_beta_c if beta_c is not None else None, None, None, None)


def _aten_direction(input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse,
                    eps):
    """The recurrence of one direction as ATen ops, a step at a time: where the fused
    operator has no kernel. Finished sequences keep their state and output zeros."""
    T, B, G = input_gates.shape
    H = G // 4
    outputs = [None] * T
    h, c = h0, c0
    for t in (reversed(range(T)) if reverse else range(T)):
        a = input_gates[t] + F.layer_norm(h @ w_hh.t(), (G,), gamma_hh, None, eps)
        i, f, g, o = a.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(F.layer_norm(c_new, (H,), gamma_c, beta_c, eps))
        if lengths is None:
            outputs[t], h, c = h_new, h_new, c_new
        else:
            live = (lengths > t).unsqueeze(1)
            outputs[t] = torch.where(live, h_new, 0)
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
    output = torch.stack(outputs) if T else input_gates.new_zeros((0, B, H))
    return output, h, c


def _runs_fused(x):
    return (x.device.type == "cpu" and _ops.kernel_device("cpu") == "cpu"
            and x.dtype in _FUSED_DTYPES)


class LayerNormLSTM(nn.Module):
    r"""A multi-layer LSTM with layer normalisation inside the recurrence (Ba, Kiros &
    Hinton 2016, the formulation of haste's ``LayerNormLSTM``)::

        a = LN_ih(x W_ih^T) + LN_hh(h W_hh^T)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        c' = f * c + i * g
        h' = o * tanh(LN_cell(c'))

    Each LN normalises over its features like ``nn.LayerNorm(eps=eps)`` and has a gain
    (``layer_norm_*_weight``, initialised to 1) and, with ``bias=True``, a bias
    (``layer_norm_*_bias``, initialised to 0; the LN biases of ``ih`` and ``hh`` are the
    gate biases). Arguments, inputs and outputs are ``torch.nn.LSTM``'s (no ``proj_size``):
    ``input`` [T, B, I] (``batch_first``: [B, T, I]), unbatched [T, I] or a PackedSequence;
    ``hx = (h_0, c_0)``, each [num_layers * D, B, H]; returns ``output, (h_n, c_n)``.
    Parameters per layer ``k`` (``_reverse`` appended for the second direction):
    ``weight_ih_lk`` [4H, I or D*H], ``weight_hh_lk`` [4H, H], ``layer_norm_ih_weight_lk``,
    ``layer_norm_ih_bias_lk``, ``layer_norm_hh_weight_lk``, ``layer_norm_hh_bias_lk`` [4H],
    ``layer_norm_cell_weight_lk``, ``layer_norm_cell_bias_lk`` [H].

    On the CPU in float32 and float64 the recurrence is one fused operator per layer and
    direction, forward and backward (``create_graph=True`` raises there: its gradients are
    not differentiable again).
    Elsewhere it runs as ATen operations step by step, with a warning.

    >>> import torch, fastrnn
    >>> lstm = fastrnn.LayerNormLSTM(8, 16, num_layers=2, batch_first=True)
    >>> out, (h, c) = lstm(torch.randn(3, 5, 8))
    >>> out.shape, h.shape
    (torch.Size([3, 5, 16]), torch.Size([2, 3, 16]))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, eps=1e-5, device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("bias", bias), ("batch_first", batch_first),
                            ("bidirectional", bidirectional)):
            _require_bool(name, value)
        self.dropout = _probability("dropout", dropout)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.eps = float(eps)
        factory = {"device": device, "dtype": dtype}
        H, D = hidden_size, 2 if bidirectional else 1
        for layer in range(num_layers):
            for direction in range(D):
                suffix = self._suffix(layer, direction)
                shapes = {"weight_ih": (4 * H, input_size if layer == 0 else D * H),
                          "weight_hh": (4 * H, H), "layer_norm_ih_weight": (4 * H,),
                          "layer_norm_ih_bias": (4 * H,), "layer_norm_hh_weight": (4 * H,),
                          "layer_norm_hh_bias": (4 * H,), "layer_norm_cell_weight": (H,),
                          "layer_norm_cell_bias": (H,)}
                for prefix, is_bias in _PARAMETERS:
                    if is_bias and not bias:
                        continue
                    self.register_parameter(prefix + suffix, nn.Parameter(
                        torch.empty(shapes[prefix], **factory)))
        self.reset_parameters()

    @staticmethod
    def _suffix(layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self):
        """Weights uniform in ±1/sqrt(hidden_size) as torch.nn.LSTM's; LN gains 1, biases 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.startswith("weight_"):
                    parameter.uniform_(-bound, bound)
                elif "_weight_" in name:
                    parameter.fill_(1.0)
                else:
                    parameter.zero_()

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("eps", 1e-5)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text

    def _fail(self, message, error=InvalidShapeError):
        raise error(f"fastrnn.LayerNormLSTM: {message}")

    def _weights(self, layer, direction):
        suffix = self._suffix(layer, direction)
        return [getattr(self, prefix + suffix, None) for prefix, _ in _PARAMETERS]

    def _initial_state(self, hx, x, unbatched, sorted_indices):
        shape = (self.num_layers * (2 if self.bidirectional else 1), x.shape[1],
                 self.hidden_size)
        if hx is None:
            zeros = x.new_zeros(shape)
            return zeros, zeros
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            self._fail(f"hx must be a pair (h_0, c_0), got {type(hx).__name__}",
                       NotAStatePairError)
        states = []
        for name, state in zip(("h_0", "c_0"), hx):
            if not isinstance(state, torch.Tensor):
                self._fail(f"{name} must be a Tensor, got {type(state).__name__}",
                           NotATensorError)
            if unbatched:
                if state.dim() != 2:
                    self._fail(f"for unbatched input {name} must be 2-D, got "
                               f"{tuple(state.shape)}")
                state = state.unsqueeze(1)
            if tuple(state.shape) != shape:
                self._fail(f"{name} must have shape {shape}, got {tuple(state.shape)}")
            if state.dtype != x.dtype or state.device != x.device:
                self._fail(f"{name} must be {x.dtype} on {x.device} like the input, got "
                           f"{state.dtype} on {state.device}", IncompatibleTensorError)
            if sorted_indices is not None:
                state = state.index_select(1, sorted_indices)
            states.append(state)
        return states[0], states[1]

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            padded = _unpack("fastrnn.LayerNormLSTM", input)
            x, lengths, unbatched = padded.x, padded.lengths, False
        else:
            if not isinstance(input, torch.Tensor):
                self._fail(f"input must be a Tensor or PackedSequence, got "
                           f"{type(input).__name__}", NotATensorError)
            if input.dim() not in (2, 3):
                self._fail(f"input must be 2-D (unbatched) or 3-D, got {input.dim()}-D")
            unbatched, lengths = input.dim() == 2, None
            x = input.unsqueeze(1) if unbatched else (
                input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            self._fail(f"input.size(-1) must be equal to input_size. Expected "
                       f"{self.input_size}, got {x.shape[-1]}")
        weight = self.weight_ih_l0
        if x.dtype != weight.dtype or x.device != weight.device:
            self._fail(f"input must be {weight.dtype} on {weight.device} like the parameters, "
                       f"got {x.dtype} on {x.device}", IncompatibleTensorError)
        h0, c0 = self._initial_state(hx, x, unbatched,
                                     input.sorted_indices if packed else None)
        fused = _runs_fused(x)
        if not fused:
            _warn_once(f"fastrnn.LayerNormLSTM has no fused kernel for {x.dtype} on "
                       f"{_ops.kernel_device(x.device.type)}: it runs as ATen operations, "
                       "step by step")
        D = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                out, h, c = self._direction(layer_input, h0[k], c0[k],
                                            self._weights(layer, direction), lengths,
                                            direction == 1, fused)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if packed:
            output = _repack(layer_input, input, padded.cpu_lengths)
            if input.unsorted_indices is not None:
                h_n = h_n.index_select(1, input.unsorted_indices)
                c_n = c_n.index_select(1, input.unsorted_indices)
            return output, (h_n, c_n)
        if unbatched:
            return layer_input.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        output = layer_input.transpose(0, 1) if self.batch_first else layer_input
        return output, (h_n, c_n)

    def _direction(self, x, h0, c0, weights, lengths, reverse, fused):
        w_ih, w_hh, gamma_ih, beta_ih, gamma_hh, beta_hh, gamma_c, beta_c = weights
        G = w_ih.shape[0]
        # the input side of every step at once, the recurrent LN's bias added to the input
        # LN's (a [4H] sum, not a pass over [T, B, 4H])
        bias = beta_ih + beta_hh if beta_ih is not None else None
        input_gates = F.layer_norm(F.linear(x, w_ih), (G,), gamma_ih, bias, self.eps)
        args = (input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse,
                self.eps)
        if fused:
            return _LayerNormLstmFunction.apply(*args)
        return _aten_direction(*args)


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)
