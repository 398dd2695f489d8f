"""Stacks of recurrent layers over padded, time-major sequences.

One operator call runs one layer in one direction; this module composes them into layers
and directions, with the input projection of all time steps done as one GEMM per direction
(differentiated by autograd) and dropout between layers.
"""
from typing import List, NamedTuple, Optional

import torch
import torch.nn.functional as F

from ._ops import CPU_BF16_GEMM, EMULATED_CUDA, ops


class LayerWeights(NamedTuple):
    """One layer in one direction, in torch.nn's names and shapes (G gates per unit)."""
    w_ih: torch.Tensor            # [G*H, input]
    w_hh: torch.Tensor            # [G*H, P]
    b_ih: Optional[torch.Tensor]  # [G*H]
    b_hh: Optional[torch.Tensor]  # [G*H]
    w_hr: Optional[torch.Tensor]  # [P, H] (LSTM projection) or None


# Inference on the CPU runs a layer over chunks of time steps when the input projection of
# the whole sequence would take more than this many bytes, which bounds the memory of very
# long sequences. Below it, one projection and one operator call per layer is fastest: each
# call packs W_hh and wakes the threads (about 1 ms here), and fastrnn's buffer cache keeps
# the large buffer in memory between calls (measured, T=256 B=64 H=512 on 2 cores: LSTM
# 138 ms in 8 MB chunks, 125 ms in 32 MB chunks, 117 ms whole; GRU 89, 85, 82 ms).
INFERENCE_CHUNK_BYTES = 256 << 20


def _cpu_buffer(shape, dtype):
    """An uninitialised CPU tensor from fastrnn's buffer cache (csrc/cpu/buffer_cache.h):
    a fresh allocation this large is fresh pages each call, whose faults cost as much as a
    fifth of a forward here."""
    return ops.cpu_empty(list(shape), dtype)


class _JoinDirections(torch.autograd.Function):
    """Both directions' outputs side by side, [T, B, 2P], in a buffer from fastrnn's cache
    (torch.cat's result, 67 MB for a layer of 512 at T=256, B=64, would be fresh pages every
    call); the gradient goes back to each direction as a view of its half."""

    @staticmethod
    def forward(ctx, forward_out, backward_out):
        T, B, P = forward_out.shape
        return torch.cat((forward_out, backward_out), dim=2,
                         out=_cpu_buffer((T, B, 2 * P), forward_out.dtype))

    @staticmethod
    def backward(ctx, grad):
        P = grad.shape[2] // 2
        return grad[..., :P], grad[..., P:]


def input_projection(x, weight, bias):
    """x W^T + b for every time step at once. On the CPU in float32 through fastrnn's own
    product (oneDNN's brgemm, or for a single row its own GEMV: torch's BLAS, MKL, runs its
    AVX2 path on AMD processors and measured 1.5-2.4x slower here, 2x for a single row), in
    bfloat16 through brgemm's bf16 micro-kernel (F.linear measured 27-32 ms against 15.5 ms
    for 16384 x 128 x 2048), elsewhere F.linear."""
    if _projects_itself(x):
        flat = ops.linear(x.reshape(-1, x.shape[-1]), weight, bias)
        return flat.view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)


def _on_cpu_backend(x):
    """Whether x runs the CPU back-end (not a GPU's, nor the CUDA emulation's)."""
    return x.is_cpu and not EMULATED_CUDA


def _projects_itself(x):
    """Whether input_projection runs fastrnn's own product on x (else F.linear)."""
    return _on_cpu_backend(x) and _cpu_projects(x)


def _cpu_projects(x):
    """_projects_itself for a CPU tensor x."""
    return x.numel() > 0 and (
        x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and CPU_BF16_GEMM))


def _steps_per_chunk(x, gate_width):
    """How many time steps of x one piece of CPU inference projects (INFERENCE_CHUNK_BYTES)."""
    return max(1, INFERENCE_CHUNK_BYTES // max(1, x.shape[1] * gate_width * x.element_size()))


class Zoneout(NamedTuple):
    """One layer and direction's zoneout (Krueger et al. 2016): the masks of h [T, B, P] and
    (LSTM) c [T, B, H] drawn for training (1: the unit keeps its previous state), or None
    with p the keep probability applied as its expected value (evaluation)."""
    p: float = 0.0
    h: Optional[torch.Tensor] = None
    c: Optional[torch.Tensor] = None

    def steps(self, t0, t1):
        """The same for time steps [t0, t1)."""
        return Zoneout(self.p, *(None if m is None else m[t0:t1] for m in (self.h, self.c)))


NO_ZONEOUT = Zoneout()


def draw_zoneout(p, training, mode, x, h0, c0):
    """A layer and direction's Zoneout: in training masks from torch's generator (h's, then
    c's), else p alone."""
    if p == 0 or not training:
        return Zoneout(p) if p else NO_ZONEOUT
    T = x.shape[0]

    def mask(state):
        return torch.bernoulli(state.new_full((T, *state.shape), p))
    return Zoneout(p, mask(h0), mask(c0) if mode == "LSTM" else None)


def _layer_op(mode, input_gates, h0, c0, weights, lengths, reverse, save_for_backward,
              reset_after, zoneout=NO_ZONEOUT, return_cells=False):
    """One operator call: (output, h_n, c_n or None, every step's cell state or None)."""
    if mode == "LSTM":
        out, h_n, c_n, *_, cells = ops.lstm_forward(
            input_gates, h0, c0, weights.w_hh, weights.b_hh, weights.w_hr, lengths, reverse,
            save_for_backward, zoneout.h, zoneout.c, zoneout.p, return_cells)
        return out, h_n, c_n, (cells if return_cells else None)
    if mode == "GRU":
        out, h_n = ops.gru_forward(input_gates, h0, weights.w_hh, weights.b_hh, lengths,
                                   reverse, reset_after, save_for_backward, zoneout.h,
                                   zoneout.p)[:2]
        return out, h_n, None, None
    nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[mode]
    out, h_n = ops.rnn_forward(input_gates, h0, weights.w_hh, weights.b_hh, lengths, reverse,
                               nonlinearity, save_for_backward, zoneout.h, zoneout.p)[:2]
    return out, h_n, None, None


def run_layer(mode, x, h0, c0, weights, lengths, reverse, save_for_backward,
              reset_after=True, zoneout=NO_ZONEOUT, return_cells=False):
    """One layer in one direction. x: [T, B, input]; returns (output, h_n, c_n or None,
    every step's cell state [T, B, H] with return_cells (LSTM), else None)."""
    T, B = x.shape[0], x.shape[1]
    chunk = _steps_per_chunk(x, weights.w_ih.shape[0])
    if (save_for_backward or chunk >= T or not _on_cpu_backend(x)
            or torch.compiler.is_compiling()):
        input_gates = input_projection(x, weights.w_ih, weights.b_ih)
        return _layer_op(mode, input_gates, h0, c0, weights, lengths, reverse,
                         save_for_backward, reset_after, zoneout, return_cells)
    output = _cpu_buffer((T, B, h0.shape[-1]), x.dtype)
    cells = _cpu_buffer((T, B, c0.shape[-1]), x.dtype) if return_cells else None
    # W_ih laid out as the product reads it (W_ih^T by rows), once for all chunks rather
    # than once per chunk (measured: a 1536x512 W_ih over 13 chunks, 74 -> 58 ms)
    w_ih = weights.w_ih.t().contiguous().t()
    starts = list(range(0, T, chunk))
    for t0 in (reversed(starts) if reverse else starts):
        t1 = min(T, t0 + chunk)
        input_gates = input_projection(x[t0:t1], w_ih, weights.b_ih)
        # lengths relative to the chunk: a sequence ending inside it runs its first steps
        chunk_lengths = None if lengths is None else (lengths - t0).clamp(0, t1 - t0)
        out, h0, c0, chunk_cells = _layer_op(mode, input_gates, h0, c0, weights,
                                             chunk_lengths, reverse, False, reset_after,
                                             zoneout.steps(t0, t1), return_cells)
        output[t0:t1] = out
        if return_cells:
            cells[t0:t1] = chunk_cells
    return output, h0, c0, cells


def recurrent_stack(mode: str, x: torch.Tensor, h0: torch.Tensor, c0: Optional[torch.Tensor],
                    weights: List[LayerWeights], num_layers: int, bidirectional: bool,
                    dropout: float, training: bool, lengths: Optional[torch.Tensor] = None,
                    reset_after: bool = True, zoneout: float = 0.0,
                    return_cells: bool = False):
    """A stack of `num_layers` layers, each in one or two directions.

    x: [T, B, input] padded and time-major; h0: [L*D, B, P]; c0: [L*D, B, H] (LSTM);
    weights: L*D entries, layer-major then direction; lengths: [B] int64 or None; zoneout:
    the keep probability of every state (masks drawn per layer and direction in training).
    Returns (output [T, B, D*P], h_n [L*D, B, P], c_n [L*D, B, H] or None, and with
    return_cells (LSTM) the last layer's every-step cell states [T, B, D*H], else None).
    """
    save_for_backward = torch.is_grad_enabled() and (
        x.requires_grad or h0.requires_grad or (c0 is not None and c0.requires_grad)
        or any(w is not None and w.requires_grad for lw in weights for w in lw))
    if save_for_backward or torch.compiler.is_compiling():
        return _stack(mode, x, h0, c0, weights, num_layers, bidirectional, dropout, training,
                      lengths, reset_after, save_for_backward, zoneout, return_cells)
    # Nothing to differentiate: call the kernels below autograd, skipping the Python layer
    # of each operator's autograd formula (measured 2-5 us per call, 8% of a generation step)
    with torch._C._AutoDispatchBelowADInplaceOrView():
        if (zoneout == 0 and not return_cells
                and _runs_in_one_call(x, weights, dropout, training)):
            output, h_n, c_n = ops.stack_forward(
                mode, x, h0, c0, [w for layer in weights for w in layer], num_layers,
                bidirectional, lengths, reset_after)
            return output, h_n, (c_n if c0 is not None else None), None
        return _stack(mode, x, h0, c0, weights, num_layers, bidirectional, dropout, training,
                      lengths, reset_after, False, zoneout, return_cells)


def _runs_in_one_call(x, weights, dropout, training):
    """Whether an inference stack can be one stack_forward call, the same operators in the
    same order as _stack's: on the CPU where the input projection is fastrnn's own
    (input_projection), no dropout to draw between layers, and every layer's projection in
    one piece (run_layer's chunks)."""
    if not _on_cpu_backend(x) or (dropout > 0 and training) or not _cpu_projects(x):
        return False
    if x.shape[0] == 1:  # one step (a generation step): always one piece
        return True
    widest = max([layer.w_ih.shape[0] for layer in weights])
    return _steps_per_chunk(x, widest) >= x.shape[0]


def _join(x, outputs):
    """Both directions' outputs side by side (one direction's as it is)."""
    if len(outputs) == 1:
        return outputs[0]
    if not _on_cpu_backend(x) or torch.compiler.is_compiling():
        return torch.cat(outputs, dim=2)
    return _JoinDirections.apply(*outputs)


def _stack(mode, x, h0, c0, weights, num_layers, bidirectional, dropout, training, lengths,
           reset_after, save_for_backward, zoneout=0.0, return_cells=False):
    directions = 2 if bidirectional else 1
    h_n, c_n = [], []
    layer_input = x
    for layer in range(num_layers):
        outputs, cells = [], []
        last = layer == num_layers - 1
        for direction in range(directions):
            k = layer * directions + direction
            h0_k, c0_k = h0[k], None if c0 is None else c0[k]
            zoned = draw_zoneout(zoneout, training, mode, layer_input, h0_k, c0_k)
            out, h, c, cell_steps = run_layer(
                mode, layer_input, h0_k, c0_k, weights[k], lengths, direction == 1,
                save_for_backward, reset_after, zoned, return_cells and last)
            outputs.append(out)
            cells.append(cell_steps)
            h_n.append(h)
            c_n.append(c)
        layer_input = _join(x, outputs)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    # stacked even for one layer: a view of the operator's h_n would refuse the in-place
    # detach_() that truncated backpropagation through time calls on torch.nn's final states
    return (layer_input, torch.stack(h_n), (torch.stack(c_n) if c0 is not None else None),
            _join(x, cells) if return_cells else None)
