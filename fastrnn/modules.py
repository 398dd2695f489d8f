"""Drop-in replacements for torch.nn.LSTM, GRU and RNN.

Each layer derives from torch.nn.RNNBase, like its torch.nn counterpart, and adds only
forward, so constructor, parameter names and shapes, initialisation and state_dict are
torch.nn's. They are not subclasses of nn.LSTM/GRU/RNN themselves: torch.compile refuses to
trace any instance of those (a graph break even with fullgraph=True), and tracing through
is what the fused operators are for.
"""
import warnings
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _ops
from .functional import LayerWeights, recurrent_stack

# dtypes with kernels, per device type; anything else runs torch.nn's own implementation.
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


class _FusedRNNMixin:
    """forward() for a torch.nn.RNNBase subclass, running fastrnn's kernels."""

    reset_after = True

    # ------------------------------------------------------------ argument checks
    def _name(self):
        return f"fastrnn.{type(self).__name__}"

    def _fail(self, message, error=ValueError):
        raise error(f"{self._name()}: {message}")

    def _check_input(self, data, batched_dims, autocast=False):
        if not isinstance(data, torch.Tensor):
            self._fail(f"input must be a Tensor or PackedSequence, got {type(data).__name__}",
                       TypeError)
        if data.dim() not in batched_dims:
            expected = " or ".join(f"{d}-D" for d in batched_dims)
            self._fail(f"input must be {expected}, got a {data.dim()}-D tensor of shape "
                       f"{tuple(data.shape)}")
        if data.shape[-1] != self.input_size:
            self._fail(f"input.size(-1) must equal input_size={self.input_size}, got "
                       f"{data.shape[-1]} (input shape {tuple(data.shape)})")
        weight = self._flat_weights[0]
        if not data.is_floating_point():
            self._fail(f"input must be a floating-point tensor, got dtype {data.dtype}",
                       TypeError)
        if data.dtype != weight.dtype and not autocast:
            self._fail(f"input dtype {data.dtype} does not match the layer's parameters "
                       f"({weight.dtype}); convert one of them with .to()", TypeError)
        if data.device != weight.device:
            self._fail(f"input is on {data.device} but the layer's parameters are on "
                       f"{weight.device}; move one of them with .to()")

    def _check_state(self, name, state, expected_shape, data, autocast=False):
        if not isinstance(state, torch.Tensor):
            self._fail(f"{name} must be a Tensor, got {type(state).__name__}", TypeError)
        if tuple(state.shape) != tuple(expected_shape):
            self._fail(f"{name} must have shape {tuple(expected_shape)} "
                       f"(num_layers * num_directions, batch, size), got {tuple(state.shape)}")
        if state.dtype != data.dtype and not autocast:
            self._fail(f"{name} dtype {state.dtype} does not match input dtype {data.dtype}",
                       TypeError)
        if state.device != data.device:
            self._fail(f"{name} is on {state.device} but input is on {data.device}")

    def _state_sizes(self):
        directions = 2 if self.bidirectional else 1
        out_size = self.proj_size if getattr(self, "proj_size", 0) > 0 else self.hidden_size
        return self.num_layers * directions, out_size

    # ------------------------------------------------------------ weights
    def _layer_weights(self):
        names = self._flat_weights_names
        weights = dict(zip(names, self._flat_weights))
        directions = 2 if self.bidirectional else 1
        result = []
        for layer in range(self.num_layers):
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                result.append(LayerWeights(
                    weights[f"weight_ih{suffix}"], weights[f"weight_hh{suffix}"],
                    weights.get(f"bias_ih{suffix}"), weights.get(f"bias_hh{suffix}"),
                    weights.get(f"weight_hr{suffix}")))
        return result

    def _has_kernel(self, data, dtype):
        return (_ops.has_kernel(data.device.type)
                and dtype in KERNEL_DTYPES.get(data.device.type, ()))

    @staticmethod
    def _autocast_dtype(data):
        """Under torch.autocast on CUDA the layer runs in autocast's dtype (as cuDNN's RNNs
        do): input, states and weights are cast to it."""
        if data.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
            return torch.get_autocast_dtype("cuda")
        return None

    # ------------------------------------------------------------ forward
    def forward(self, input, hx=None):
        is_lstm = self.mode == "LSTM"
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        amp_dtype = self._autocast_dtype(data) if isinstance(data, torch.Tensor) else None
        self._check_input(data, (2,) if packed else (2, 3), autocast=amp_dtype is not None)

        if not self._has_kernel(data, amp_dtype or data.dtype):
            if not self.reset_after:
                self._fail(f"no fastrnn kernel for {data.dtype} on {data.device.type} "
                           f"(built backends: {_ops.has_kernel('cpu') and 'cpu'}"
                           f"{' cuda' if _ops.has_kernel('cuda') else ''}), and torch.nn "
                           "has no reset_after=False GRU to fall back on", RuntimeError)
            _warn_once(f"{self._name()}: no fastrnn kernel for {data.dtype} on "
                       f"{data.device.type}; running torch.nn's implementation")
            return self._torch_class.forward(self, input, hx)

        num_states, out_size = self._state_sizes()
        unbatched = not packed and data.dim() == 2
        lengths = sorted_indices = unsorted_indices = None
        if packed:
            batch_sizes = input.batch_sizes
            x, cpu_lengths = torch._VF._pad_packed_sequence(
                data, batch_sizes, False, 0.0, int(batch_sizes.numel()))
            lengths = cpu_lengths.to(device=data.device, dtype=torch.int64)
            sorted_indices, unsorted_indices = input.sorted_indices, input.unsorted_indices
            batch = int(batch_sizes[0])
        elif unbatched:
            x = data.unsqueeze(1)
            batch = 1
        else:
            x = data.transpose(0, 1) if self.batch_first else data
            batch = x.shape[1]

        hidden_shape = (num_states, batch, out_size)
        cell_shape = (num_states, batch, self.hidden_size)
        h0 = c0 = None
        if hx is not None:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    self._fail("hx must be a tuple (h_0, c_0) for an LSTM", TypeError)
                h0, c0 = hx
            else:
                h0 = hx
            states = (("h_0", h0, hidden_shape), ("c_0", c0, cell_shape))[:2 if is_lstm else 1]
            checked = []
            for name, state, shape in states:
                if unbatched and isinstance(state, torch.Tensor):
                    if state.dim() != 2:
                        self._fail(f"for unbatched 2-D input, {name} must be 2-D, got "
                                   f"{state.dim()}-D of shape {tuple(state.shape)}")
                    state = state.unsqueeze(1)
                self._check_state(name, state, shape, data, autocast=amp_dtype is not None)
                if sorted_indices is not None:
                    state = state.index_select(1, sorted_indices)
                checked.append(state)
            h0, c0 = checked if is_lstm else (checked[0], None)
        else:
            h0 = x.new_zeros(hidden_shape)
            c0 = x.new_zeros(cell_shape) if is_lstm else None

        weights = self._layer_weights()
        if amp_dtype is not None:
            x, h0 = x.to(amp_dtype), h0.to(amp_dtype)
            c0 = c0.to(amp_dtype) if c0 is not None else None
            weights = [LayerWeights(*(w.to(amp_dtype) if w is not None else None for w in lw))
                       for lw in weights]
        output, h_n, c_n = recurrent_stack(
            self.mode, x, h0, c0, weights, self.num_layers, self.bidirectional,
            float(self.dropout), self.training, lengths, self.reset_after)

        if packed:
            output = torch.nn.utils.rnn.pack_padded_sequence(output, cpu_lengths)
            output = PackedSequence(output.data, input.batch_sizes, sorted_indices,
                                    unsorted_indices)
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices)
                c_n = c_n.index_select(1, unsorted_indices) if is_lstm else None
        elif unbatched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if is_lstm else None
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h_n, c_n) if is_lstm else h_n)


class LSTM(_FusedRNNMixin, nn.RNNBase):
    """torch.nn.LSTM with fused kernels: same arguments, parameters and outputs."""

    _torch_class = nn.LSTM
    # torch.nn.LSTM's own argument checks, used when falling back to its forward
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(_FusedRNNMixin, nn.RNNBase):
    """torch.nn.GRU with fused kernels.

    reset_after=True (default) is torch.nn's and cuDNN's GRU: n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn)). reset_after=False is Cho et al.'s original, where the reset gate
    multiplies the state before the recurrent product: n = tanh(W_in x + b_in +
    W_hn (r * h) + b_hn). Both have the same parameters, so state_dicts load either way.
    """

    _torch_class = nn.GRU

    def __init__(self, *args, reset_after: bool = True, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)
        self.reset_after = bool(reset_after)

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.reset_after else text + ", reset_after=False"


class RNN(_FusedRNNMixin, nn.RNNBase):
    """torch.nn.RNN (tanh or relu) with fused kernels."""

    _torch_class = nn.RNN

    def __init__(self, *args, **kwargs):
        # torch.nn.RNN's signature: nonlinearity is the fourth positional argument.
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if self.nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. "
                             "Select from 'tanh' or 'relu'.")
        super().__init__(modes[self.nonlinearity], *args, **kwargs)


_REPLACEMENTS = ((nn.LSTM, LSTM), (nn.GRU, GRU), (nn.RNN, RNN))


def convert(model: nn.Module) -> nn.Module:
    """Replace every torch.nn LSTM, GRU and RNN inside `model` by its fastrnn layer.

    Works in place and returns `model` (which may itself be such a layer). The parameters
    stay the same objects, so an optimizer built before the call keeps working.
    """
    for module in model.modules():
        for torch_cls, fast_cls in _REPLACEMENTS:
            if type(module) is torch_cls:
                module.__class__ = fast_cls
                if fast_cls is GRU:
                    module.reset_after = True
    return model
