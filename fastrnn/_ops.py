"""Loads the compiled operators and teaches torch about them: a fake (meta) kernel for
every operator, so shapes propagate under torch.compile.

The autograd formulas of the forward operators are C++ (csrc/autograd.cpp). Each forward
returns, after its real outputs, the tensors its backward needs (empty when called with
save_for_backward=False); those are marked non-differentiable. The backward operators are
first-order; under create_graph=True the formulas replay the forward with differentiable
ATen ops instead (csrc/replay.h), so gradients of gradients are right.
"""
import os

import torch


def _check_emulation_settings():
    """FASTRNN_EMULATE_CUDA (1: CPU tensors run the CUDA back-end's code, emulated; 0 or
    unset: the CPU back-end) and FASTRNN_EMULATE_CUDA_ORDER (the order the emulation runs a
    launch's threads in) are read when the extension loads: a value it would not understand
    is an error here, not a silent default."""
    allowed = {"FASTRNN_EMULATE_CUDA": ("", "0", "1"),
               "FASTRNN_EMULATE_CUDA_ORDER": ("", "forward", "reverse", "shuffled")}
    for name, values in allowed.items():
        value = os.environ.get(name, "")
        if value not in values:
            raise ValueError(f"{name}={value!r}: expected one of "
                             f"{', '.join(repr(v) for v in values if v)} (or unset)")


_check_emulation_settings()

from . import _C  # noqa: E402, F401  (importing it registers the operators)

ops = torch.ops.fastrnn

OPERATORS = (
    "linear", "linear_weight_grads", "lstm_forward", "lstm_backward", "gru_forward",
    "gru_backward", "rnn_forward", "rnn_backward", "stack_forward", "layernorm_lstm_forward",
    "layernorm_lstm_backward", "layernorm_gru_forward", "layernorm_gru_backward",
)


# Gates per hidden unit, in torch.nn's order (kLstmGates, kGruGates, kRnnGates in C++).
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _compiled_backends():
    # Read once at import: the registrations are fixed by then, and a plain dict lookup is
    # something torch.compile can trace.
    return {device: torch._C._dispatch_has_kernel_for_dispatch_key("fastrnn::lstm_forward", key)
            for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))}


BACKENDS = _compiled_backends()


def has_kernel(device_type):
    """True when fastrnn was built with kernels for this device type ('cpu', 'cuda')."""
    return BACKENDS.get(device_type, False)


# Whether bfloat16 products run natively on this processor (oneDNN's bf16 micro-kernel:
# AVX512_BF16 or AMX); without it the CPU kernels would widen every product to float32.
CPU_BF16_GEMM = BACKENDS["cpu"] and bool(ops.cpu_bf16_gemm())

# FASTRNN_EMULATE_CUDA=1: CPU tensors run the CUDA back-end's kernels and cuBLAS calls
# through their emulation on the CPU (csrc/cuda_emu/), and the Python layers then take the
# paths a CUDA tensor takes, so that every call runs what a GPU would.
EMULATED_CUDA = bool(ops.cuda_emulated())


def kernel_device(device_type):
    """Whose kernels a tensor on `device_type` runs: 'cuda' for CPU tensors under the
    emulation, else its own device type."""
    return "cuda" if EMULATED_CUDA and device_type == "cpu" else device_type


def _empty(like, dtype=None):
    return like.new_empty((0,), dtype=dtype)


def _acc_dtype(dtype):
    """The kernels keep gates, the LSTM cell state and state gradients in float32 for
    half and bfloat16 (float64 stays float64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_devices(op, reference_name, reference, **tensors):
    """Every tensor argument on the reference's device. The dispatcher sends a call with any
    meta argument to these fake kernels, so they must refuse mixed devices themselves (the
    C++ checks cover calls that reach a real kernel)."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != reference.device:
            raise RuntimeError(f"fastrnn::{op}: {name} is on {tensor.device} but "
                               f"{reference_name} is on {reference.device}")


# ---------------------------------------------------------------- fake kernels

@torch.library.register_fake("fastrnn::linear")
def _linear_fake(input, weight, bias):
    _check_devices("linear", "input", input, weight=weight, bias=bias)
    return input.new_empty((input.shape[0], weight.shape[0]))


@torch.library.register_fake("fastrnn::linear_weight_grads")
def _linear_weight_grads_fake(input, grad_output, with_bias):
    _check_devices("linear_weight_grads", "input", input, grad_output=grad_output)
    grad_bias = (grad_output.new_empty((grad_output.shape[1],)) if with_bias
                 else _empty(grad_output))
    return grad_output.new_empty((grad_output.shape[1], input.shape[1])), grad_bias


@torch.library.register_fake("fastrnn::lstm_forward")
def _lstm_forward_fake(input_gates, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, save_for_backward,
                       zoneout_h=None, zoneout_c=None, zoneout=0.0, return_cells=False):
    _check_devices("lstm_forward", "input_gates", input_gates, h0=h0, c0=c0, w_hh=w_hh,
                   b_hh=b_hh, w_hr=w_hr, lengths=lengths, zoneout_h=zoneout_h,
                   zoneout_c=zoneout_c)
    T, B, G = input_gates.shape
    H, P = G // GATES["lstm"], h0.shape[-1]
    new = input_gates.new_empty
    acc = _acc_dtype(input_gates.dtype)
    if not save_for_backward:
        saved = [_empty(input_gates), _empty(input_gates, acc), _empty(input_gates, acc),
                 _empty(input_gates)]
    else:
        proj_in = new((T, B, H)) if w_hr is not None else _empty(input_gates)
        saved = [new((T + 1, B, P)), new((T + 1, B, H), dtype=acc), new((T, B, G), dtype=acc),
                 proj_in]
    cells = new((T, B, H)) if return_cells else _empty(input_gates)
    return (new((T, B, P)), new((B, P)), new((B, H)), *saved, cells)


@torch.library.register_fake("fastrnn::lstm_backward")
def _lstm_backward_fake(grad_output, grad_h_n, grad_c_n, w_hh, w_hr, hs, cs, gates, proj_in,
                        lengths, reverse, zoneout_h=None, zoneout_c=None, zoneout=0.0,
                        grad_cells=None):
    _check_devices("lstm_backward", "hs", hs, grad_output=grad_output, grad_h_n=grad_h_n,
                   grad_c_n=grad_c_n, w_hh=w_hh, w_hr=w_hr, cs=cs, gates=gates,
                   proj_in=proj_in, lengths=lengths, zoneout_h=zoneout_h, zoneout_c=zoneout_c,
                   grad_cells=grad_cells)
    T, B, G = gates.shape
    P = hs.shape[-1]
    grad_w_hr = w_hr.new_empty(w_hr.shape) if w_hr is not None else _empty(hs)
    H = G // GATES["lstm"]
    return (hs.new_empty((T, B, G)), hs.new_empty((B, P)), hs.new_empty((B, H)),
            w_hh.new_empty(w_hh.shape), hs.new_empty((G,)), grad_w_hr)


@torch.library.register_fake("fastrnn::layernorm_lstm_forward")
def _layernorm_lstm_forward_fake(input_gates, h0, c0, w_hh, gamma_hh, gamma_c, beta_c, lengths,
                                 reverse, eps, zoneout_h=None, zoneout_c=None, zoneout=0.0,
                                 save=True):
    _check_devices("layernorm_lstm_forward", "input_gates", input_gates, h0=h0, c0=c0,
                   w_hh=w_hh, gamma_hh=gamma_hh, gamma_c=gamma_c, beta_c=beta_c,
                   lengths=lengths, zoneout_h=zoneout_h, zoneout_c=zoneout_c)
    T, B, G = input_gates.shape
    H = G // GATES["lstm"]
    steps, states = (T, T + 1) if save else (1, 2)
    new = input_gates.new_empty
    return [new((T, B, H)), new((B, H)), new((B, H)), new((states, B, H)), new((states, B, H)),
            new((steps, B, G)), new((steps, B, G)), new((steps, B, H)), new((steps, B, 2))]


@torch.library.register_fake("fastrnn::layernorm_lstm_backward")
def _layernorm_lstm_backward_fake(grad_output, grad_h_n, grad_c_n, w_hh, gamma_hh, gamma_c,
                                  beta_c, hs, cs, gates, recurrent_hat, cell_hat, rstd, lengths,
                                  reverse, zoneout_h=None, zoneout_c=None, zoneout=0.0,
                                  grad_cells=None):
    T, B, G = gates.shape
    H = G // GATES["lstm"]
    new = gates.new_empty
    grad_beta_c = new((H,)) if beta_c is not None else _empty(gates)
    return [new((T, B, G)), new((B, H)), new((B, H)), new((G, H)), new((G,)), new((H,)),
            grad_beta_c]


@torch.library.register_fake("fastrnn::layernorm_gru_forward")
def _layernorm_gru_forward_fake(input_gates, h0, w_hh, gamma_hh, beta_n, lengths, reverse,
                                reset_after, eps, zoneout_h=None, zoneout=0.0, save=True):
    _check_devices("layernorm_gru_forward", "input_gates", input_gates, h0=h0, w_hh=w_hh,
                   gamma_hh=gamma_hh, beta_n=beta_n, lengths=lengths, zoneout_h=zoneout_h)
    T, B, G = input_gates.shape
    H = G // GATES["gru"]
    steps, states = (T, T + 1) if save else (1, 2)
    new = input_gates.new_empty
    reset_h = _empty(input_gates) if reset_after else new((steps, B, H))
    return [new((T, B, H)), new((B, H)), new((states, B, H)), new((steps, B, G)),
            new((steps, B, G)), new((steps, B, 2)), reset_h]


@torch.library.register_fake("fastrnn::layernorm_gru_backward")
def _layernorm_gru_backward_fake(grad_output, grad_h_n, w_hh, gamma_hh, beta_n, hs, gates,
                                 recurrent_hat, rstd, reset_h, lengths, reverse, reset_after,
                                 zoneout_h=None, zoneout=0.0):
    T, B, G = gates.shape
    H = G // GATES["gru"]
    new = gates.new_empty
    grad_beta_n = new((H,)) if beta_n is not None else _empty(gates)
    return [new((T, B, G)), new((B, H)), new((G, H)), new((G,)), grad_beta_n]


@torch.library.register_fake("fastrnn::gru_forward")
def _gru_forward_fake(input_gates, h0, w_hh, b_hh, lengths, reverse, reset_after,
                      save_for_backward, zoneout_h=None, zoneout=0.0):
    _check_devices("gru_forward", "input_gates", input_gates, h0=h0, w_hh=w_hh, b_hh=b_hh,
                   lengths=lengths, zoneout_h=zoneout_h)
    T, B, G = input_gates.shape
    H = G // GATES["gru"]
    new = input_gates.new_empty
    acc = _acc_dtype(input_gates.dtype)
    if not save_for_backward:
        saved = [_empty(input_gates), _empty(input_gates, acc), _empty(input_gates)]
    else:
        saved = [new((T + 1, B, H)), new((T, B, G), dtype=acc), new((T, B, H))]
    return (new((T, B, H)), new((B, H)), *saved)


@torch.library.register_fake("fastrnn::gru_backward")
def _gru_backward_fake(grad_output, grad_h_n, w_hh, hs, gates, extra, lengths, reverse,
                       reset_after, zoneout_h=None, zoneout=0.0):
    _check_devices("gru_backward", "hs", hs, grad_output=grad_output, grad_h_n=grad_h_n,
                   w_hh=w_hh, gates=gates, extra=extra, lengths=lengths, zoneout_h=zoneout_h)
    T, B, G = gates.shape
    return (hs.new_empty((T, B, G)), hs.new_empty((B, G // GATES["gru"])),
            w_hh.new_empty(w_hh.shape), hs.new_empty((G,)))


@torch.library.register_fake("fastrnn::rnn_forward")
def _rnn_forward_fake(input_gates, h0, w_hh, b_hh, lengths, reverse, nonlinearity,
                      save_for_backward, zoneout_h=None, zoneout=0.0):
    _check_devices("rnn_forward", "input_gates", input_gates, h0=h0, w_hh=w_hh, b_hh=b_hh,
                   lengths=lengths, zoneout_h=zoneout_h)
    T, B, H = input_gates.shape
    new = input_gates.new_empty
    hs = new((T + 1, B, H)) if save_for_backward else _empty(input_gates)
    return new((T, B, H)), new((B, H)), hs


@torch.library.register_fake("fastrnn::rnn_backward")
def _rnn_backward_fake(grad_output, grad_h_n, w_hh, hs, lengths, reverse, nonlinearity,
                       zoneout_h=None, zoneout=0.0):
    _check_devices("rnn_backward", "hs", hs, grad_output=grad_output, grad_h_n=grad_h_n,
                   w_hh=w_hh, lengths=lengths, zoneout_h=zoneout_h)
    T1, B, H = hs.shape
    return (hs.new_empty((T1 - 1, B, H)), hs.new_empty((B, H)), w_hh.new_empty(w_hh.shape),
            hs.new_empty((H,)))


@torch.library.register_fake("fastrnn::stack_forward")
def _stack_forward_fake(mode, x, h0, c0, weights, num_layers, bidirectional, lengths,
                        reset_after):
    _check_devices("stack_forward", "x", x, h0=h0, c0=c0, lengths=lengths,
                   **{f"weights[{i}]": w for i, w in enumerate(weights)})
    T, B = x.shape[:2]
    directions = 2 if bidirectional else 1
    c_n = c0.new_empty(c0.shape) if mode == "LSTM" else _empty(h0)
    return x.new_empty((T, B, directions * h0.shape[-1])), h0.new_empty(h0.shape), c_n
