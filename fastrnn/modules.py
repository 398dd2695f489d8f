"""Drop-in replacements for torch.nn.LSTM, GRU and RNN.

Each layer derives from torch.nn.RNNBase, like its torch.nn counterpart, and adds only
forward, so constructor, parameter names and shapes, initialisation and state_dict are
torch.nn's. They are not subclasses of nn.LSTM/GRU/RNN themselves: torch.compile refuses to
trace any instance of those (a graph break even with fullgraph=True), and tracing through
is what the fused operators are for.
"""
import warnings
from contextlib import nullcontext
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _ops
from .functional import LayerWeights, recurrent_stack

# dtypes with kernels, per device type; anything else runs torch.nn's own implementation.
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64, torch.bfloat16),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
_warned = set()


class IncompatibleTensorError(TypeError, ValueError, RuntimeError):
    """A tensor whose dtype or device does not fit the layer (the input, a state, a
    parameter). torch.nn raises ValueError for some of these and RuntimeError for others,
    so this is all of TypeError, ValueError and RuntimeError: code written against
    torch.nn's errors catches it unchanged."""


class InvalidShapeError(ValueError, RuntimeError):
    """An input, state or PackedSequence whose shape does not fit the layer. torch.nn
    raises RuntimeError for these, Python code expects ValueError for a bad argument: this
    is both."""


class NotATensorError(TypeError, AttributeError):
    """An input or state that is not a tensor. torch.nn fails on these with AttributeError
    (it calls ``.dim()`` on them), Python code expects TypeError: this is both."""


class NotAStatePairError(TypeError, IndexError, RuntimeError):
    """An LSTM's hx that is not a pair (h_0, c_0). torch.nn indexes it and fails with
    IndexError (one state, a tensor) or RuntimeError (three states), Python code expects
    TypeError: this is all three."""


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


def _cpu_autocast_lowers():
    """Which of (output, h_n, c_n) torch.nn returns in autocast's lower-precision dtype under
    CPU autocast, per layer kind.

    Autocast's CPU policy casts some recurrent ops (LSTM, RNN) and leaves others (GRU) in
    float32, and torch's LSTM with a projection keeps c_n in float32. fastrnn computes in
    float32 under CPU autocast and returns what torch.nn returns.
    Asked of torch itself, once, so that it follows the installed version.
    """
    probes = {"LSTM": nn.LSTM(1, 2), "LSTM_PROJ": nn.LSTM(1, 2, proj_size=1),
              "GRU": nn.GRU(1, 2), "RNN_TANH": nn.RNN(1, 2),
              "RNN_RELU": nn.RNN(1, 2, nonlinearity="relu")}
    lowers = {}
    for kind, layer in probes.items():
        try:
            with warnings.catch_warnings(), torch.no_grad(), \
                    torch.autocast("cpu", dtype=torch.bfloat16):
                warnings.simplefilter("ignore")
                output, state = layer(torch.zeros(1, 1, 1))
            tensors = (output, *state) if isinstance(state, tuple) else (output, state, None)
            lowers[kind] = tuple(t is not None and t.dtype == torch.bfloat16 for t in tensors)
        except RuntimeError:
            lowers[kind] = (False, False, False)
    return lowers


CPU_AUTOCAST_LOWERS = _cpu_autocast_lowers()


class Precision(NamedTuple):
    """The dtype a call computes in and the dtypes it returns (output, h_n, c_n), which
    differ under autocast."""
    compute: torch.dtype
    output: torch.dtype
    hidden: torch.dtype
    cell: torch.dtype
    autocast: bool


class WeightLayout(NamedTuple):
    """A layer's parameters: their names (torch.nn's _flat_weights_names order), the shape
    torch.nn's constructor gives each, and per layer and direction the positions of
    (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) among them (len(names): absent)."""
    names: list
    shapes: list
    slots: list


# The Precision of a call outside autocast: everything in the input's dtype.
_PLAIN_PRECISION = {dtype: Precision(dtype, dtype, dtype, dtype, False)
                    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)}


class PaddedInput(NamedTuple):
    """The input as the operators take it: time-major, padded, batch in sorted order."""
    x: torch.Tensor                            # [T, B, input_size]
    lengths: Optional[torch.Tensor]            # [B] int64 on x's device (packed input only)
    cpu_lengths: Optional[torch.Tensor]        # the same on the CPU, to pack the output
    sorted_indices: Optional[torch.Tensor]
    unsorted_indices: Optional[torch.Tensor]


_PACKED_UNDER_COMPILE = (
    "PackedSequence input runs outside the compiled graph: unpacking it needs the values of "
    "batch_sizes. Compile without fullgraph=True (the unpacking then runs eagerly, the "
    "recurrence compiled), or pass a padded tensor.")


def _check_batch_sizes(name, batch_sizes, num_rows):
    """A PackedSequence's batch_sizes: 1-D int64 on the CPU, positive, non-increasing, and
    summing to the number of rows of its data (unpacking trusts all of this)."""
    if (not isinstance(batch_sizes, torch.Tensor) or batch_sizes.dim() != 1
            or batch_sizes.dtype != torch.int64 or batch_sizes.device.type != "cpu"):
        raise InvalidShapeError(f"{name}: PackedSequence.batch_sizes must be a 1-D int64 "
                                f"CPU tensor, got {batch_sizes!r}")
    if batch_sizes.numel() == 0:
        raise InvalidShapeError(f"{name}: PackedSequence.batch_sizes is empty")
    if bool((batch_sizes <= 0).any()):
        raise InvalidShapeError(f"{name}: PackedSequence.batch_sizes must be positive, got "
                                f"{batch_sizes.tolist()}")
    if bool((batch_sizes[1:] > batch_sizes[:-1]).any()):
        raise InvalidShapeError(f"{name}: PackedSequence.batch_sizes must be non-increasing, "
                                f"got {batch_sizes.tolist()}")
    total = int(batch_sizes.sum())
    if total != num_rows:
        raise InvalidShapeError(f"{name}: PackedSequence.batch_sizes sum to {total} but its "
                                f"data has {num_rows} rows")


@torch.compiler.disable(reason=_PACKED_UNDER_COMPILE)
def _unpack(name, packed: PackedSequence) -> PaddedInput:
    _check_batch_sizes(name, packed.batch_sizes, packed.data.shape[0])
    batch = int(packed.batch_sizes[0])
    for which in ("sorted_indices", "unsorted_indices"):
        indices = getattr(packed, which)
        if indices is not None and tuple(indices.shape) != (batch,):
            raise InvalidShapeError(f"{name}: PackedSequence.{which} must have shape ({batch},), "
                                    f"got {tuple(indices.shape)}")
    # Padded in sorted order (no indices given), so the output packs back into the same
    # order as the input's data.
    x, cpu_lengths = pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes))
    lengths = cpu_lengths.to(device=packed.data.device, dtype=torch.int64)
    return PaddedInput(x, lengths, cpu_lengths, packed.sorted_indices, packed.unsorted_indices)


@torch.compiler.disable(reason=_PACKED_UNDER_COMPILE)
def _repack(output, like: PackedSequence, cpu_lengths):
    data = pack_padded_sequence(output, cpu_lengths).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def _in_dtype(tensor, dtype):
    """tensor in dtype; the tensor itself when it is already (a no-op .to() still costs a
    few microseconds of argument parsing, three times a call)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _require_bool(name, value):
    """torch.nn's own wording for its bias and batch_first checks."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


def _probability(name, value):
    """A drop or keep probability in [0, 1), as a float (torch.nn's dropout check, with 1
    excluded: a unit dropped or kept always would never learn or never change)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


class _FusedRNNMixin:
    """forward() for a torch.nn.RNNBase subclass, running fastrnn's kernels."""

    # What torch.nn's layers do not have (layers converted from torch.nn get these values).
    reset_after = True
    weight_dropout = 0.0
    zoneout = 0.0
    return_cell_sequence = False  # LSTM only

    def __init__(self, mode, *args, weight_dropout=0.0, zoneout=0.0, **kwargs):
        super().__init__(mode, *args, **kwargs)
        # torch.nn checks bias and batch_first here but lets a non-bool bidirectional through
        # to a cryptic error in its forward; a truthy string would silently double the layer.
        _require_bool("bidirectional", self.bidirectional)
        self.weight_dropout = _probability("weight_dropout", weight_dropout)
        self.zoneout = _probability("zoneout", zoneout)

    def extra_repr(self):
        text = super().extra_repr()
        for option in ("weight_dropout", "zoneout", "return_cell_sequence"):
            if getattr(self, option):
                text += f", {option}={getattr(self, option)}"
        return text

    def _beyond_torch(self):
        """What this layer computes that torch.nn's implementation would not, or None: where
        that implementation would have to run instead, the call raises."""
        if not self.reset_after:
            return "reset_after=False GRU"
        if self.zoneout > 0:
            return "zoneout"
        if self.return_cell_sequence:
            return "return_cell_sequence"
        if self.weight_dropout > 0 and self.training:
            return "weight_dropout"
        return None

    # ------------------------------------------------------------ argument checks
    def _name(self):
        return f"fastrnn.{type(self).__name__}"

    def _fail(self, message, error=InvalidShapeError):
        raise error(f"{self._name()}: {message}")

    def _check_input(self, data, packed):
        if not isinstance(data, torch.Tensor):
            self._fail(f"input must be a Tensor or PackedSequence, got {type(data).__name__}",
                       NotATensorError)
        batched_dims = (2,) if packed else (2, 3)
        if data.dim() not in batched_dims:
            expected = " or ".join(f"{d}-D" for d in batched_dims)
            self._fail(f"input must be {expected}, got a {data.dim()}-D tensor of shape "
                       f"{tuple(data.shape)}")
        if data.shape[-1] != self.input_size:
            self._fail(f"input.size(-1) must equal input_size={self.input_size}, got "
                       f"{data.shape[-1]} (input shape {tuple(data.shape)})")
        if not data.is_floating_point():
            self._fail(f"input must be a floating-point tensor, got dtype {data.dtype}",
                       IncompatibleTensorError)
        time_dim = 1 if self.batch_first and data.dim() == 3 else 0
        if not packed and data.shape[time_dim] == 0:
            self._fail("input has no time steps (sequence length 0); torch.nn requires at "
                       "least one")

    def _weight_layout(self) -> "WeightLayout":
        """Where each parameter sits and what shape it must have (cached per layout)."""
        if torch.compiler.is_compiling():  # traced once; no cache to mutate in the graph
            return self._compute_weight_layout()
        layout = (self.mode, self.input_size, self.hidden_size, self.num_layers,
                  self.bidirectional, self.bias, getattr(self, "proj_size", 0))
        cached = self.__dict__.get("_layout_cache")
        if cached is None or cached[0] != layout:
            cached = (layout, self._compute_weight_layout())
            self.__dict__["_layout_cache"] = cached
        return cached[1]

    def _compute_weight_layout(self):
        gates = {"LSTM": 4, "GRU": 3}.get(self.mode, 1)
        proj = getattr(self, "proj_size", 0)
        out_size = proj if proj > 0 else self.hidden_size
        directions = 2 if self.bidirectional else 1
        names = list(self._flat_weights_names)
        shapes, slots = {}, []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else out_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes[f"weight_ih{suffix}"] = (gates * self.hidden_size, layer_input)
                shapes[f"weight_hh{suffix}"] = (gates * self.hidden_size, out_size)
                shapes[f"bias_ih{suffix}"] = (gates * self.hidden_size,)
                shapes[f"bias_hh{suffix}"] = (gates * self.hidden_size,)
                shapes[f"weight_hr{suffix}"] = (proj, self.hidden_size)
                slots.append(tuple(names.index(n + suffix) if n + suffix in names
                                   else len(names)  # absent: _layer_weights' None
                                   for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                             "weight_hr")))
        return WeightLayout(names, [torch.Size(shapes[n]) for n in names], slots)

    def _current_weights(self, layout):
        """Every parameter as this call reads it, in _flat_weights_names' order: from
        _parameters (where functional_call and swapped parameters put theirs), else through
        the attribute (a parametrization or weight_norm in its place). torch.nn's
        _update_flat_weights asks getattr for every name at every call (13 us for 3 layers)."""
        names = layout.names
        if torch.compiler.is_compiling():
            return [getattr(self, name) for name in names]
        params = self._parameters
        return [params[name] if name in params else getattr(self, name) for name in names]

    def _check_weights(self, layout, weights, data, precision):
        """Every parameter names itself when its type, device, dtype or shape is not what
        the layer and the input need (one pass: this runs at every call)."""
        device = data.device
        dtype = getattr(weights[0], "dtype", None)  # all share the first's
        for name, weight, shape in zip(layout.names, weights, layout.shapes):
            if not (isinstance(weight, torch.Tensor) and weight.device == device
                    and weight.is_floating_point() and weight.shape == shape
                    and (weight.dtype == dtype or precision.autocast)):
                self._explain_weight(name, weight, shape, data, layout.names[0], dtype)
        if dtype != data.dtype and not precision.autocast:  # autocast casts the parameters
            self._fail(f"input dtype {data.dtype} does not match the layer's parameters "
                       f"({dtype}); convert one of them with .to()",
                       IncompatibleTensorError)

    def _explain_weight(self, name, weight, shape, data, first_name, first_dtype):
        """Raises the error for a parameter _check_weights refused."""
        if not isinstance(weight, torch.Tensor):
            self._fail(f"{name} must be a Tensor, got {type(weight).__name__}",
                       NotATensorError)
        if weight.device != data.device:
            self._fail(f"{name} is on {weight.device} but the input is on {data.device}; "
                       "move the layer or the input with .to() (a parameter left on the "
                       "meta device must be loaded or materialised first)",
                       IncompatibleTensorError)
        if not weight.is_floating_point():
            self._fail(f"{name} must be floating point, got {weight.dtype}",
                       IncompatibleTensorError)
        if weight.shape != shape:
            self._fail(f"{name} must have shape {tuple(shape)}, got {tuple(weight.shape)}")
        self._fail(f"{name} has dtype {weight.dtype} but {first_name} has {first_dtype}; all "
                   "parameters must share one dtype", IncompatibleTensorError)

    def _check_state(self, name, state, expected_shape, data, precision):
        if not isinstance(state, torch.Tensor):
            self._fail(f"{name} must be a Tensor, got {type(state).__name__}",
                       NotATensorError)
        if state.shape != expected_shape:
            self._fail(f"{name} must have shape {tuple(expected_shape)} "
                       f"(num_layers * num_directions, batch, size), got {tuple(state.shape)}")
        if state.device != data.device:
            self._fail(f"{name} is on {state.device} but input is on {data.device}",
                       IncompatibleTensorError)
        if not state.is_floating_point():
            self._fail(f"{name} must be floating point, got {state.dtype}",
                       IncompatibleTensorError)
        if state.dtype != data.dtype and not precision.autocast:
            self._fail(f"{name} dtype {state.dtype} does not match input dtype {data.dtype}",
                       IncompatibleTensorError)

    def _state_sizes(self):
        directions = 2 if self.bidirectional else 1
        out_size = self.proj_size if getattr(self, "proj_size", 0) > 0 else self.hidden_size
        return self.num_layers * directions, out_size

    # ------------------------------------------------------------ weights and precision
    def _layer_weights(self, layout, weights, precision):
        """The weights per layer and direction, in the dtype this call computes in (only
        autocast's differs from theirs: _check_weights), with the recurrent weights dropped
        out in training under weight_dropout (DropConnect, Merity et al. 2017: one mask per
        weight and call, shared by every step; the parameters themselves untouched)."""
        if precision.autocast:
            weights = [_in_dtype(w, precision.compute) for w in weights]
        if self.weight_dropout > 0 and self.training:
            weights = [F.dropout(w, self.weight_dropout, training=True)
                       if name.startswith("weight_hh") else w
                       for name, w in zip(layout.names, weights)]
        weights = weights + [None]  # where layout.slots points for an absent weight
        return [LayerWeights(*[weights[i] for i in slots]) for slots in layout.slots]

    def _fallback_reason(self, device_type, precision):
        """Why this call cannot run fastrnn's kernels, or None when it can."""
        kernels = _ops.kernel_device(device_type)  # 'cuda' for CPU tensors when emulated
        if not (_ops.has_kernel(device_type)
                and precision.compute in KERNEL_DTYPES.get(kernels, ())):
            built = [d for d in ("cpu", "cuda") if _ops.has_kernel(d)]
            return (f"no fastrnn kernel for {precision.compute} on {device_type} (built "
                    f"backends: {', '.join(built) or 'none'})")
        if (kernels == "cpu" and precision.compute == torch.bfloat16
                and not _ops.CPU_BF16_GEMM and self.reset_after):
            # the kernels would run, widening every product to float32: slower than torch.nn
            return ("this processor has no bfloat16 GEMM instructions (AVX512_BF16 or AMX) "
                    "for fastrnn's bfloat16 kernels")
        if torch.jit.is_tracing():
            # a trace records operators for TorchScript and the TorchScript-based ONNX
            # export, which know torch.nn's (aten::lstm, ...) and not fastrnn's
            return "torch.jit.trace (or an ONNX export through it) is recording"
        if torch.compiler.is_compiling():  # the checks below concern eager calls only
            return None
        if torch._C._are_functorch_transforms_active():
            # custom operators' autograd formulas do not compose with torch.func transforms
            return "torch.func transforms (grad, vmap, jacrev, ...) are active"
        if forward_ad._current_level >= 0:
            # the operators have no forward-mode formulas (dual tensors would raise an
            # error naming torch's C++ custom Function, not the layer)
            return "forward-mode AD (torch.autograd.forward_ad.dual_level) is active"
        return None

    def _precision(self, data, device):
        """Under torch.autocast on CUDA the layer runs in autocast's dtype, as cuDNN's RNNs
        do. Under CPU autocast it computes in float32 (its bf16 kernels serve bf16 inputs and
        weights, not autocast) and returns the dtypes torch.nn returns."""
        if device == "cuda" and torch.is_autocast_enabled("cuda"):
            amp = torch.get_autocast_dtype("cuda")
            return Precision(amp, amp, amp, amp, True)
        if device == "cpu" and torch.is_autocast_enabled("cpu") and data.dtype == torch.float32:
            amp = torch.get_autocast_dtype("cpu")
            kind = "LSTM_PROJ" if getattr(self, "proj_size", 0) > 0 else self.mode
            dtypes = [amp if lower else torch.float32 for lower in CPU_AUTOCAST_LOWERS[kind]]
            return Precision(torch.float32, *dtypes, True)
        plain = _PLAIN_PRECISION.get(data.dtype)
        return plain or Precision(data.dtype, data.dtype, data.dtype, data.dtype, False)

    # ------------------------------------------------------------ forward
    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        self._check_input(data, packed)
        device_type = data.device.type
        precision = self._precision(data, device_type)

        reason = self._fallback_reason(device_type, precision)
        if reason is not None:
            beyond = self._beyond_torch()
            if beyond is not None:
                self._fail(f"{reason}, and torch.nn has no {beyond} to fall back on",
                           RuntimeError)
            _warn_once(f"{self._name()}: {reason}; running torch.nn's implementation")
            return self._torch_class.forward(self, input, hx)
        layout = self._weight_layout()
        weights = self._current_weights(layout)  # parametrizations, swapped parameters
        self._check_weights(layout, weights, data, precision)

        unbatched = not packed and data.dim() == 2
        padded = self._to_padded(input, unbatched)
        # the kernels run in precision.compute: autocast must not cast their inputs again
        # (entering the context only where autocast is on: it costs 12 us a call)
        no_autocast = (torch.autocast(device_type, enabled=False)
                       if torch.is_autocast_enabled(device_type) else nullcontext())
        with no_autocast:
            x = _in_dtype(padded.x, precision.compute)
            h0, c0 = self._initial_state(hx, x, padded, unbatched, precision)
            output, h_n, c_n, cells = recurrent_stack(
                self.mode, x, h0, c0, self._layer_weights(layout, weights, precision),
                self.num_layers, self.bidirectional, float(self.dropout), self.training,
                padded.lengths, self.reset_after, self.zoneout, self.return_cell_sequence)
        output, h_n = _in_dtype(output, precision.output), _in_dtype(h_n, precision.hidden)
        c_n = _in_dtype(c_n, precision.cell) if c_n is not None else None
        result = self._from_padded(output, h_n, c_n, input, padded, unbatched)
        if cells is None:
            return result
        # every step's cell states, laid out as the output is (packed, batch_first, unbatched)
        cells = self._from_padded(_in_dtype(cells, precision.cell), h_n, c_n, input, padded,
                                  unbatched)[0]
        return (*result, cells)

    def _to_padded(self, input, unbatched) -> PaddedInput:
        if isinstance(input, PackedSequence):
            return _unpack(self._name(), input)
        if unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        return PaddedInput(x, None, None, None, None)

    def _initial_state(self, hx, x, padded: PaddedInput, unbatched, precision):
        """(h0, c0 or None) in the operators' layout and the compute dtype; zeros if hx is
        None. Checked against the shapes the layer expects, in the user's batch order."""
        is_lstm = self.mode == "LSTM"
        num_states, out_size = self._state_sizes()
        batch = x.shape[1]
        hidden_shape = (num_states, batch, out_size)
        cell_shape = (num_states, batch, self.hidden_size)
        if hx is None:
            return x.new_zeros(hidden_shape), (x.new_zeros(cell_shape) if is_lstm else None)
        if is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                self._fail("hx must be a tuple (h_0, c_0) for an LSTM", NotAStatePairError)
            states = (("h_0", hx[0], hidden_shape), ("c_0", hx[1], cell_shape))
        else:
            states = (("h_0", hx, hidden_shape),)
        checked = []
        for name, state, shape in states:
            if unbatched and isinstance(state, torch.Tensor):
                if state.dim() != 2:
                    self._fail(f"for unbatched 2-D input, {name} must be 2-D, got "
                               f"{state.dim()}-D of shape {tuple(state.shape)}")
                state = state.unsqueeze(1)
            self._check_state(name, state, shape, x, precision)
            checked.append(_in_dtype(state, precision.compute))
        state = tuple(checked) if is_lstm else checked[0]
        if padded.sorted_indices is not None:  # into the sorted order
            state = self.permute_hidden(state, padded.sorted_indices)
        return state if is_lstm else (state, None)

    def _from_padded(self, output, h_n, c_n, input, padded: PaddedInput, unbatched):
        is_lstm = self.mode == "LSTM"
        if isinstance(input, PackedSequence):
            output = _repack(output, input, padded.cpu_lengths)
            state = self.permute_hidden((h_n, c_n) if is_lstm else h_n,
                                        padded.unsorted_indices)
            return output, state
        if unbatched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if is_lstm else None
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h_n, c_n) if is_lstm else h_n)

    # ------------------------------------------------------------ export paths
    def __prepare_scriptable__(self):
        """torch.jit.script calls this on every submodule before compiling it."""
        raise RuntimeError(
            f"{self._name()} cannot be compiled by TorchScript (its kernels are custom "
            "operators called from Python). Use torch.compile, or for TorchScript and ONNX "
            "export convert the model back to torch.nn layers first: "
            "fastrnn.to_torch(model) (weights kept).")


class LSTM(_FusedRNNMixin, nn.RNNBase):
    """torch.nn.LSTM with fused kernels: the same constructor arguments (``proj_size``
    included), parameter names and shapes, ``state_dict``, inputs (padded, ``batch_first``,
    unbatched, PackedSequence) and outputs ``(output, (h_n, c_n))``.

    Differences from torch.nn: the class derives from ``nn.RNNBase``, not ``nn.LSTM``
    (``isinstance(layer, nn.LSTM)`` is False), so that ``torch.compile(fullgraph=True)``
    traces it; a device or dtype without fastrnn kernels (bfloat16 on the CPU), active
    torch.func transforms and forward-mode AD run torch.nn's implementation, with a
    warning; TorchScript needs :func:`to_torch` first.

    Beyond torch.nn (every layer): ``weight_dropout=p`` drops the recurrent weights
    ``weight_hh_*`` in training (DropConnect, Merity et al. 2017): one mask per weight and
    call, shared by all its steps, drawn from torch's generator in the order of the
    parameters' names, scaled by 1/(1-p) as ``F.dropout``; the parameters and the
    ``state_dict`` stay as they are. ``zoneout=p`` (Krueger et al. 2016): in training each
    unit keeps its previous state with probability p at every step (the LSTM's h and c each
    with a mask of its own, drawn from torch's generator), in evaluation the expected value
    p * previous + (1 - p) * new. A call that would need torch.nn's implementation raises
    instead while either is in effect.

    LSTM only: ``return_cell_sequence=True`` returns ``(output, (h_n, c_n), cells)``, cells
    the last layer's cell state at every step, laid out as the output (``[T, B, D*H]``,
    ``batch_first``, unbatched or a PackedSequence; zeros where a padded sequence has
    ended), differentiable.

    >>> import torch, fastrnn
    >>> lstm = fastrnn.LSTM(8, 16, num_layers=2, batch_first=True)
    >>> out, (h, c) = lstm(torch.randn(3, 5, 8))
    >>> out.shape, h.shape, c.shape
    (torch.Size([3, 5, 16]), torch.Size([2, 3, 16]), torch.Size([2, 3, 16]))
    """

    _torch_class = nn.LSTM
    # torch.nn.LSTM's own argument checks and state permutation
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(self, *args, return_cell_sequence: bool = False, **kwargs):
        _require_bool("return_cell_sequence", return_cell_sequence)
        super().__init__("LSTM", *args, **kwargs)
        self.return_cell_sequence = return_cell_sequence


class GRU(_FusedRNNMixin, nn.RNNBase):
    """torch.nn.GRU with fused kernels.

    reset_after=True (default) is torch.nn's and cuDNN's GRU: n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn)). reset_after=False is Cho et al.'s original, where the reset gate
    multiplies the state before the recurrent product: n = tanh(W_in x + b_in +
    W_hn (r * h) + b_hn). Both have the same parameters, so state_dicts load either way.
    Otherwise torch.nn.GRU's contract, with the differences listed on :class:`LSTM`
    (reset_after=False has no torch.nn fallback: where one would be needed it raises).

    >>> import torch, fastrnn
    >>> gru = fastrnn.GRU(8, 16, reset_after=False)
    >>> gru.load_state_dict(torch.nn.GRU(8, 16).state_dict())
    <All keys matched successfully>
    >>> out, h = gru(torch.randn(5, 3, 8))
    >>> out.shape, h.shape
    (torch.Size([5, 3, 16]), torch.Size([1, 3, 16]))
    """

    _torch_class = nn.GRU

    def __init__(self, *args, reset_after: bool = True, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        _require_bool("reset_after", reset_after)
        super().__init__("GRU", *args, **kwargs)
        self.reset_after = reset_after

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.reset_after else text + ", reset_after=False"


class RNN(_FusedRNNMixin, nn.RNNBase):
    """torch.nn.RNN (tanh or relu) with fused kernels: torch.nn.RNN's contract, with the
    differences listed on :class:`LSTM`.

    >>> import torch, fastrnn
    >>> rnn = fastrnn.RNN(8, 16, nonlinearity="relu", bidirectional=True)
    >>> out, h = rnn(torch.randn(5, 8))  # unbatched input
    >>> out.shape, h.shape
    (torch.Size([5, 32]), torch.Size([2, 16]))
    """

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

    >>> import torch, fastrnn
    >>> model = torch.nn.Sequential(torch.nn.LSTM(4, 8))
    >>> type(fastrnn.convert(model)[0]).__name__
    'LSTM'
    >>> isinstance(model[0], fastrnn.LSTM)
    True
    """
    for module in model.modules():
        for torch_cls, fast_cls in _REPLACEMENTS:
            if type(module) is torch_cls:
                module.__class__ = fast_cls
                if fast_cls is GRU:
                    module.reset_after = True
    return model


def to_torch(model: nn.Module) -> nn.Module:
    """The inverse of convert(): every fastrnn layer inside `model` becomes its torch.nn
    layer, in place, with the same parameter objects (for TorchScript or ONNX export).

    A reset_after=False GRU has no torch.nn equivalent: it raises ValueError, and nothing
    is changed. A layer's weight_dropout, which acts in training only, is left behind, with
    a warning.

    >>> import torch, fastrnn
    >>> model = torch.nn.Sequential(fastrnn.GRU(4, 8))
    >>> type(fastrnn.to_torch(model)[0]) is torch.nn.GRU
    True
    """
    layers = [m for m in model.modules() if isinstance(m, _FusedRNNMixin)]
    for layer in layers:
        if not layer.reset_after:
            raise ValueError(f"{layer._name()} with reset_after=False has no torch.nn "
                             "equivalent (torch.nn.GRU applies the reset gate after the "
                             "recurrent product); it cannot be converted")
        if layer.zoneout > 0:
            raise ValueError(f"{layer._name()} with zoneout={layer.zoneout} has no torch.nn "
                             "equivalent (zoneout acts in evaluation too, as its expected "
                             "value); it cannot be converted")
        if layer.return_cell_sequence:
            raise ValueError(f"{layer._name()} with return_cell_sequence=True has no torch.nn "
                             "equivalent (torch.nn.LSTM returns no cell sequence); it cannot "
                             "be converted")
    for layer in layers:
        if layer.weight_dropout > 0:
            warnings.warn(f"{layer._name()}: weight_dropout={layer.weight_dropout} does not "
                          "carry over to torch.nn (it acts in training only)", stacklevel=2)
        layer.__class__ = layer._torch_class
        for option in ("reset_after", "weight_dropout", "zoneout", "return_cell_sequence"):
            layer.__dict__.pop(option, None)
    return model
