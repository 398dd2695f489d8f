"""The layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016, in haste's formulation).

Per layer, direction and time step, the LSTM::

    a = LN_ih(x W_ih^T) + LN_hh(h W_hh^T)       each LN with its own gain and bias
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a's four blocks (torch.nn's order)
    c = f * c + i * g
    h = o * tanh(LN_cell(c))

and the GRU (torch.nn's gate order r, z, n)::

    x_r, x_z, x_n = LN_ih(x W_ih^T)
    reset after (torch.nn's form):   h_r, h_z, h_n = LN_hh(h W_hh^T)
                                     n = tanh(x_n + r * h_n)
    reset before (Cho et al.):       h_r, h_z = LN_hh,rz(h W_hr,hz^T)     (LN over 2H)
                                     n = tanh(x_n + LN_hh,n((r * h) W_hn^T))  (over H)
    r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z);  h = (1 - z) * n + z * h

LN normalises a row over its features as ``nn.LayerNorm`` does (biased variance, ``eps``
inside the square root), then scales by its gain and adds its bias. The input side of every
step is one product and one ``layer_norm`` before the time loop; the recurrence is one
fused operator on the CPU (csrc/layernorm_lstm.cpp, csrc/layernorm_gru.cpp; float32 and
float64), and an ATen loop elsewhere (CUDA, bfloat16, the emulated CUDA back-end) until
those have kernels.
"""
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _ops
from .functional import draw_zoneout
from .modules import (IncompatibleTensorError, InvalidShapeError, NotAStatePairError,
                      NotATensorError, _probability, _repack, _require_bool, _unpack)

ops = _ops.ops
_FUSED_DTYPES = (torch.float32, torch.float64)
_warned = set()

# The LSTM's parameters of one layer and direction, in the order the recurrence takes them;
# (name prefix, whether it is a bias). The GRU's are the first six.
_LSTM_PARAMETERS = (("weight_ih", False), ("weight_hh", False),
               ("layer_norm_ih_weight", False), ("layer_norm_ih_bias", True),
               ("layer_norm_hh_weight", False), ("layer_norm_hh_bias", True),
               ("layer_norm_cell_weight", False), ("layer_norm_cell_bias", True))


class _LayerNormLstmFunction(torch.autograd.Function):
    """One direction of one layer through the fused CPU operators."""

    @staticmethod
    def forward(ctx, input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse,
                eps, zoneout_h=None, zoneout_c=None, zoneout=0.0, return_cells=False):
        output, h_n, c_n, *saved = ops.layernorm_lstm_forward(
            input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse, eps,
            zoneout_h, zoneout_c, zoneout)
        ctx.save_for_backward(w_hh, gamma_hh, gamma_c, beta_c, lengths, zoneout_h, zoneout_c,
                              *saved)
        ctx.reverse, ctx.zoneout = reverse, zoneout
        if not return_cells:
            return output, h_n, c_n
        return output, h_n, c_n, _cells_by_time(saved[1], lengths, reverse)

    @staticmethod
    def backward(ctx, grad_output, grad_h_n, grad_c_n, grad_cells=None):
        if torch.is_grad_enabled():
            # the operator's gradients are not differentiable: a graph through them would
            # give silently wrong second derivatives
            raise RuntimeError("fastrnn.LayerNormLSTM: gradients of gradients "
                               "(create_graph=True) are not supported by its fused CPU "
                               "operator yet")
        w_hh, gamma_hh, gamma_c, beta_c, lengths, zoneout_h, zoneout_c, *saved = \
            ctx.saved_tensors
        grads = ops.layernorm_lstm_backward(grad_output, grad_h_n, grad_c_n, w_hh, gamma_hh,
                                            gamma_c, beta_c, *saved, lengths, ctx.reverse,
                                            zoneout_h, zoneout_c, ctx.zoneout, grad_cells)
        d_input, d_h0, d_c0, d_w_hh, d_gamma_hh, d_gamma_c, d_beta_c = grads
        return (d_input, d_h0, d_c0, d_w_hh, d_gamma_hh, d_gamma_c,
                d_beta_c if beta_c is not None else None, None, None, None, None, None, None,
                None)


def _cells_by_time(cs, lengths, reverse):
    """Every step's carried cell state [T, B, H] in time order, from the operator's states
    by processing step [T+1, B, H]; zeros where a sequence has ended."""
    cells = cs[1:].flip(0) if reverse else cs[1:]
    if lengths is None:
        return cells.clone()
    running = torch.arange(cells.shape[0], device=lengths.device)[:, None] < lengths[None, :]
    return cells * running.unsqueeze(2).to(cells.dtype)


def _keep(mask, p, t):
    """Zoneout's keep weights at step t: the mask's (training) or p (evaluation), or None."""
    return mask[t] if mask is not None else (p or None)


def _zoned(keep, previous, new):
    return new if keep is None else new + keep * (previous - new)


def _aten_direction(input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths, reverse,
                    eps, zoneout_h=None, zoneout_c=None, zoneout=0.0, return_cells=False):
    """The recurrence of one direction as ATen ops, a step at a time: where the fused
    operator has no kernel. Finished sequences keep their state and output zeros."""
    T, B, G = input_gates.shape
    H = G // 4
    outputs, cells = [None] * T, [None] * T
    h, c = h0, c0
    for t in (reversed(range(T)) if reverse else range(T)):
        a = input_gates[t] + F.layer_norm(h @ w_hh.t(), (G,), gamma_hh, None, eps)
        i, f, g, o = a.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(F.layer_norm(c_new, (H,), gamma_c, beta_c, eps))
        h_new = _zoned(_keep(zoneout_h, zoneout, t), h, h_new)
        c_new = _zoned(_keep(zoneout_c, zoneout, t), c, c_new)
        if lengths is None:
            outputs[t], cells[t], h, c = h_new, c_new, h_new, c_new
        else:
            live = (lengths > t).unsqueeze(1)
            outputs[t], cells[t] = torch.where(live, h_new, 0), torch.where(live, c_new, 0)
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
    output = torch.stack(outputs) if T else input_gates.new_zeros((0, B, H))
    if not return_cells:
        return output, h, c
    return output, h, c, torch.stack(cells) if T else input_gates.new_zeros((0, B, H))


def _needs_grad(args):
    """Whether autograd will differentiate through a direction of these arguments: if not,
    the fused operator keeps none of the buffers backward reads (inference)."""
    return torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args)


def _runs_fused(x):
    return (x.device.type == "cpu" and _ops.kernel_device("cpu") == "cpu"
            and x.dtype in _FUSED_DTYPES)


class _LayerNormGruFunction(torch.autograd.Function):
    """One direction of one layer of the GRU through the fused CPU operators."""

    @staticmethod
    def forward(ctx, input_gates, h0, w_hh, gamma_hh, beta_n, lengths, reverse, reset_after,
                eps, zoneout_h=None, zoneout=0.0):
        output, h_n, *saved = ops.layernorm_gru_forward(input_gates, h0, w_hh, gamma_hh, beta_n,
                                                        lengths, reverse, reset_after, eps,
                                                        zoneout_h, zoneout)
        ctx.save_for_backward(w_hh, gamma_hh, beta_n, lengths, zoneout_h, *saved)
        ctx.reverse, ctx.reset_after, ctx.zoneout = reverse, reset_after, zoneout
        return output, h_n

    @staticmethod
    def backward(ctx, grad_output, grad_h_n):
        if torch.is_grad_enabled():
            raise RuntimeError("fastrnn.LayerNormGRU: gradients of gradients "
                               "(create_graph=True) are not supported by its fused CPU "
                               "operator yet")
        w_hh, gamma_hh, beta_n, lengths, zoneout_h, *saved = ctx.saved_tensors
        d_input, d_h0, d_w_hh, d_gamma_hh, d_beta_n = ops.layernorm_gru_backward(
            grad_output, grad_h_n, w_hh, gamma_hh, beta_n, *saved, lengths, ctx.reverse,
            ctx.reset_after, zoneout_h, ctx.zoneout)
        return (d_input, d_h0, d_w_hh, d_gamma_hh, d_beta_n if beta_n is not None else None,
                None, None, None, None, None, None)


def _aten_gru_direction(input_gates, h0, w_hh, gamma_hh, beta_n, lengths, reverse,
                        reset_after, eps, zoneout_h=None, zoneout=0.0):
    """The GRU's recurrence of one direction as ATen ops, a step at a time (see
    _aten_direction)."""
    T, B, G = input_gates.shape
    H = G // 3
    outputs = [None] * T
    h = h0
    for t in (reversed(range(T)) if reverse else range(T)):
        x_r, x_z, x_n = input_gates[t].chunk(3, dim=1)
        if reset_after:
            h_r, h_z, h_n = F.layer_norm(h @ w_hh.t(), (G,), gamma_hh, None, eps).chunk(3, dim=1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * (h_n if beta_n is None else h_n + beta_n))
        else:
            h_r, h_z = F.layer_norm(h @ w_hh[:2 * H].t(), (2 * H,), gamma_hh[:2 * H], None,
                                    eps).chunk(2, dim=1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + F.layer_norm((r * h) @ w_hh[2 * H:].t(), (H,),
                                              gamma_hh[2 * H:], beta_n, eps))
        h_new = _zoned(_keep(zoneout_h, zoneout, t), h, n + z * (h - n))
        if lengths is None:
            outputs[t], h = h_new, h_new
        else:
            live = (lengths > t).unsqueeze(1)
            outputs[t] = torch.where(live, h_new, 0)
            h = torch.where(live, h_new, h)
    output = torch.stack(outputs) if T else input_gates.new_zeros((0, B, H))
    return output, h


class _LayerNormRecurrent(nn.Module):
    """What the layer-normalised LSTM and GRU share: the torch.nn arguments, parameters
    per layer and direction, the input forms (batched, unbatched, batch_first, packed) and
    the walk over layers and directions. A subclass names its gates, its parameters and
    its state, and runs one direction."""

    _NAME = None           # "LayerNormLSTM"
    _GATES = None          # gate blocks per unit: 4 or 3
    _PARAMETERS = None     # (name prefix, whether it is a bias, its length in units of H)
    _STATES = None         # ("h_0", "c_0") or ("h_0",)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, eps=1e-5, weight_dropout=0.0, zoneout=0.0,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("bias", bias), ("batch_first", batch_first),
                            ("bidirectional", bidirectional)):
            _require_bool(name, value)
        self.dropout = _probability("dropout", dropout)
        self.weight_dropout = _probability("weight_dropout", weight_dropout)
        self.zoneout = _probability("zoneout", zoneout)
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
                for prefix, is_bias, units in self._PARAMETERS:
                    if is_bias and not bias:
                        continue
                    shape = (units * H,)
                    if prefix == "weight_ih":
                        shape = (units * H, input_size if layer == 0 else D * H)
                    elif prefix == "weight_hh":
                        shape = (units * H, H)
                    self.register_parameter(prefix + suffix,
                                            nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    @staticmethod
    def _suffix(layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self):
        """Weights uniform in ±1/sqrt(hidden_size) as torch.nn's; LN gains 1, biases 0."""
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
        for name, default in self._OPTIONS:
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text

    _OPTIONS = (("bias", True), ("batch_first", False), ("dropout", 0.0),
                ("bidirectional", False), ("eps", 1e-5), ("weight_dropout", 0.0),
                ("zoneout", 0.0))

    def _fail(self, message, error=InvalidShapeError):
        raise error(f"fastrnn.{self._NAME}: {message}")

    def _weights(self, layer, direction):
        """One layer and direction's parameters, the recurrent weight dropped out in
        training under weight_dropout (DropConnect: one mask per call, shared by every
        step; the parameter itself untouched)."""
        suffix = self._suffix(layer, direction)
        weights = [getattr(self, prefix + suffix, None) for prefix, _, _ in self._PARAMETERS]
        if self.weight_dropout > 0 and self.training:
            weights[1] = F.dropout(weights[1], self.weight_dropout, training=True)
        return weights

    def _initial_state(self, hx, x, unbatched, sorted_indices):
        """The initial states, each [num_layers * D, B, H], in the batch's order."""
        shape = (self.num_layers * (2 if self.bidirectional else 1), x.shape[1],
                 self.hidden_size)
        if hx is None:
            return (x.new_zeros(shape),) * len(self._STATES)
        if len(self._STATES) == 1:
            hx = (hx,)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            self._fail(f"hx must be a pair (h_0, c_0), got {type(hx).__name__}",
                       NotAStatePairError)
        states = []
        for name, state in zip(self._STATES, hx):
            if not isinstance(state, torch.Tensor):
                self._fail(f"{'hx' if len(self._STATES) == 1 else name} must be a Tensor, "
                           f"got {type(state).__name__}", NotATensorError)
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
        return tuple(states)

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            padded = _unpack(f"fastrnn.{self._NAME}", input)
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
        initial = self._initial_state(hx, x, unbatched,
                                      input.sorted_indices if packed else None)
        fused = _runs_fused(x)
        if not fused:
            _warn_once(f"fastrnn.{self._NAME} has no fused kernel for {x.dtype} on "
                       f"{_ops.kernel_device(x.device.type)}: it runs as ATen operations, "
                       "step by step")
        D = 2 if self.bidirectional else 1
        finals = [[] for _ in self._STATES]
        layer_input = x
        for layer in range(self.num_layers):
            outputs, cells = [], []
            return_cells = self._returns_cells() and layer == self.num_layers - 1
            for direction in range(D):
                k = layer * D + direction
                state = [s[k] for s in initial]
                # zoneout's masks, drawn as the plain layers draw them (h's, then c's)
                zoneout = draw_zoneout(self.zoneout, self.training,
                                       "LSTM" if len(state) == 2 else "GRU", layer_input,
                                       state[0], state[-1])
                out, *state = self._direction(layer_input, state,
                                              self._weights(layer, direction), lengths,
                                              direction == 1, fused, zoneout, return_cells)
                if return_cells:
                    cells.append(state.pop())
                outputs.append(out)
                for final, part in zip(finals, state):
                    final.append(part)
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        finals = [torch.stack(final) for final in finals]
        if packed:
            if input.unsorted_indices is not None:
                finals = [f.index_select(1, input.unsorted_indices) for f in finals]
        elif unbatched:
            finals = [f.squeeze(1) for f in finals]
        result = (self._laid_out(layer_input, input, padded if packed else None, unbatched),
                  tuple(finals) if len(finals) == 2 else finals[0])
        if not cells:
            return result
        # every step's cell states, laid out as the output is
        cells = cells[0] if D == 1 else torch.cat(cells, dim=2)
        return (*result, self._laid_out(cells, input, padded if packed else None, unbatched))

    def _laid_out(self, sequence, input, padded, unbatched):
        """A [T, B, width] result in the input's layout: packed, unbatched or batch_first."""
        if padded is not None:
            return _repack(sequence, input, padded.cpu_lengths)
        if unbatched:
            return sequence.squeeze(1)
        return sequence.transpose(0, 1) if self.batch_first else sequence

    def _returns_cells(self):
        return False

    def _input_side(self, x, w_ih, gamma_ih, bias):
        """LN_ih(x W_ih^T) for every step at once, with the gate biases the recurrence
        does not keep apart."""
        G = w_ih.shape[0]
        return F.layer_norm(F.linear(x, w_ih), (G,), gamma_ih, bias, self.eps)


class LayerNormLSTM(_LayerNormRecurrent):
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

    Beyond torch.nn, as fastrnn's other layers: ``weight_dropout=p`` (DropConnect on
    ``weight_hh``, one mask per call in training), ``zoneout=p`` (each unit keeps its
    previous h and c with probability p in training, masks from torch's generator; the
    expected value in evaluation) and ``return_cell_sequence=True`` (returns ``(output,
    (h_n, c_n), cells)``, the last layer's cell state at every step laid out as the output,
    zeros where a padded sequence has ended; differentiable).

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

    _NAME, _GATES, _STATES = "LayerNormLSTM", 4, ("h_0", "c_0")
    _PARAMETERS = tuple((prefix, is_bias, 1 if "cell" in prefix else 4)
                        for prefix, is_bias in _LSTM_PARAMETERS)

    def __init__(self, *args, return_cell_sequence=False, **kwargs):
        _require_bool("return_cell_sequence", return_cell_sequence)
        super().__init__(*args, **kwargs)
        self.return_cell_sequence = return_cell_sequence

    _OPTIONS = _LayerNormRecurrent._OPTIONS + (("return_cell_sequence", False),)

    def _returns_cells(self):
        return self.return_cell_sequence

    def _direction(self, x, state, weights, lengths, reverse, fused, zoneout, return_cells):
        w_ih, w_hh, gamma_ih, beta_ih, gamma_hh, beta_hh, gamma_c, beta_c = weights
        # the recurrent LN's bias added to the input LN's (a [4H] sum, not a pass over
        # [T, B, 4H])
        bias = beta_ih + beta_hh if beta_ih is not None else None
        args = (self._input_side(x, w_ih, gamma_ih, bias), *state, w_hh, gamma_hh, gamma_c,
                beta_c, lengths, reverse, self.eps, zoneout.h, zoneout.c, zoneout.p)
        if fused and not return_cells and not _needs_grad(args):
            return ops.layernorm_lstm_forward(*args, save=False)[:3]
        if fused:
            return _LayerNormLstmFunction.apply(*args, return_cells)
        return _aten_direction(*args, return_cells)


class LayerNormGRU(_LayerNormRecurrent):
    r"""A multi-layer GRU with layer normalisation inside the recurrence (Ba, Kiros &
    Hinton 2016, the formulation of haste's ``LayerNormGRU``), in torch.nn's form
    (``reset_after=True``) or Cho et al.'s (``reset_after=False``)::

        x_r, x_z, x_n = LN_ih(x W_ih^T)
        reset_after=True:   h_r, h_z, h_n = LN_hh(h W_hh^T);  n = tanh(x_n + r * h_n)
        reset_after=False:  h_r, h_z = LN_hh over the r, z rows of h W_hh^T;
                            n = tanh(x_n + LN_hh over the n rows of (r * h) W_hn^T)
        r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
        h' = (1 - z) * n + z * h

    In the reset-before form the candidate's product needs r first, so its rows are
    normalised apart from the r and z rows (statistics over H and over 2H); the gains and
    biases are the same [3H] parameters in both forms. Arguments, inputs and outputs are
    ``torch.nn.GRU``'s (``hx`` [num_layers * D, B, H]; returns ``output, h_n``), plus
    ``reset_after``, ``eps``, ``weight_dropout`` and ``zoneout`` (as LayerNormLSTM's).
    Parameters per layer ``k`` (``_reverse`` appended for the second direction):
    ``weight_ih_lk`` [3H, I or D*H], ``weight_hh_lk`` [3H, H],
    ``layer_norm_ih_weight_lk``, ``layer_norm_ih_bias_lk``, ``layer_norm_hh_weight_lk``,
    ``layer_norm_hh_bias_lk`` [3H] (gains initialised to 1, biases to 0; the LN biases
    are the gate biases, and the n rows of ``layer_norm_hh_bias`` are inside ``r *`` in
    the reset-after form, as ``b_hn`` in torch.nn.GRU).

    On the CPU in float32 and float64 the recurrence is one fused operator per layer and
    direction, forward and backward (``create_graph=True`` raises there). Elsewhere it runs
    as ATen operations step by step, with a warning.

    >>> import torch, fastrnn
    >>> gru = fastrnn.LayerNormGRU(8, 16, num_layers=2, reset_after=False)
    >>> out, h = gru(torch.randn(5, 3, 8))
    >>> out.shape, h.shape
    (torch.Size([5, 3, 16]), torch.Size([2, 3, 16]))
    """

    _NAME, _GATES, _STATES = "LayerNormGRU", 3, ("h_0",)
    _PARAMETERS = tuple((prefix, is_bias, 3) for prefix, is_bias in _LSTM_PARAMETERS[:6])
    _OPTIONS = _LayerNormRecurrent._OPTIONS + (("reset_after", True),)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, eps=1e-5,
                 weight_dropout=0.0, zoneout=0.0, device=None, dtype=None):
        _require_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, eps, weight_dropout, zoneout, device, dtype)
        self.reset_after = reset_after

    def _direction(self, x, state, weights, lengths, reverse, fused, zoneout, return_cells):
        w_ih, w_hh, gamma_ih, beta_ih, gamma_hh, beta_hh = weights
        H = self.hidden_size
        bias = beta_n = None
        if beta_ih is not None:
            # r's and z's recurrent biases join the input side; n's stays in the recurrence
            bias = beta_ih + F.pad(beta_hh[:2 * H], (0, H))
            beta_n = beta_hh[2 * H:]
        args = (self._input_side(x, w_ih, gamma_ih, bias), *state, w_hh, gamma_hh, beta_n,
                lengths, reverse, self.reset_after, self.eps, zoneout.h, zoneout.p)
        if fused and not _needs_grad(args):
            return ops.layernorm_gru_forward(*args, save=False)[:2]
        if fused:
            return _LayerNormGruFunction.apply(*args)
        return _aten_gru_direction(*args)


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)
