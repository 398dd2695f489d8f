"""Loads the compiled operators and teaches torch about them: a fake (meta) kernel for
every operator, so shapes propagate under torch.compile, and the autograd formula of every
forward operator, which calls its backward operator.

Each forward returns, after its real outputs, the tensors its backward needs (empty when
called with training=False); those are marked non-differentiable.
"""
import torch

from . import _C  # noqa: F401  (importing it registers the operators)

ops = torch.ops.fastrnn

OPERATORS = (
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward",
    "rnn_backward",
)


def _compiled_backends():
    # Read once at import: the registrations are fixed by then, and a plain dict lookup is
    # something torch.compile can trace.
    return {device: torch._C._dispatch_has_kernel_for_dispatch_key("fastrnn::lstm_forward", key)
            for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))}


BACKENDS = _compiled_backends()


def has_kernel(device_type):
    """True when fastrnn was built with kernels for this device type ('cpu', 'cuda')."""
    return BACKENDS.get(device_type, False)


def _empty(like, dtype=None):
    return like.new_empty((0,), dtype=dtype)


def _acc_dtype(dtype):
    """The kernels keep gates, the LSTM cell state and state gradients in float32 for
    half and bfloat16 (float64 stays float64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- fake kernels

@torch.library.register_fake("fastrnn::lstm_forward")
def _lstm_forward_fake(input_gates, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, training):
    T, B, G = input_gates.shape
    H, P = G // 4, h0.shape[-1]
    new = input_gates.new_empty
    acc = _acc_dtype(input_gates.dtype)
    if not training:
        saved = [_empty(input_gates), _empty(input_gates, acc), _empty(input_gates, acc),
                 _empty(input_gates)]
    else:
        proj_in = new((T, B, H)) if w_hr is not None else _empty(input_gates)
        saved = [new((T + 1, B, P)), new((T + 1, B, H), dtype=acc), new((T, B, G), dtype=acc),
                 proj_in]
    return (new((T, B, P)), new((B, P)), new((B, H)), *saved)


@torch.library.register_fake("fastrnn::lstm_backward")
def _lstm_backward_fake(grad_output, grad_h_n, grad_c_n, w_hh, w_hr, hs, cs, gates, proj_in,
                        lengths, reverse):
    T, B, G = gates.shape
    P = hs.shape[-1]
    grad_w_hr = w_hr.new_empty(w_hr.shape) if w_hr is not None else _empty(gates)
    return (hs.new_empty((T, B, G)), hs.new_empty((B, P)), hs.new_empty((B, G // 4)),
            w_hh.new_empty(w_hh.shape), hs.new_empty((G,)), grad_w_hr)


@torch.library.register_fake("fastrnn::gru_forward")
def _gru_forward_fake(input_gates, h0, w_hh, b_hh, lengths, reverse, reset_after, training):
    T, B, G = input_gates.shape
    H = G // 3
    new = input_gates.new_empty
    acc = _acc_dtype(input_gates.dtype)
    if not training:
        saved = [_empty(input_gates), _empty(input_gates, acc), _empty(input_gates)]
    else:
        saved = [new((T + 1, B, H)), new((T, B, G), dtype=acc), new((T, B, H))]
    return (new((T, B, H)), new((B, H)), *saved)


@torch.library.register_fake("fastrnn::gru_backward")
def _gru_backward_fake(grad_output, grad_h_n, w_hh, hs, gates, extra, lengths, reverse,
                       reset_after):
    T, B, G = gates.shape
    return (hs.new_empty((T, B, G)), hs.new_empty((B, G // 3)),
            w_hh.new_empty(w_hh.shape), hs.new_empty((G,)))


@torch.library.register_fake("fastrnn::rnn_forward")
def _rnn_forward_fake(input_gates, h0, w_hh, b_hh, lengths, reverse, nonlinearity, training):
    T, B, H = input_gates.shape
    new = input_gates.new_empty
    hs = new((T + 1, B, H)) if training else _empty(input_gates)
    return new((T, B, H)), new((B, H)), hs


@torch.library.register_fake("fastrnn::rnn_backward")
def _rnn_backward_fake(grad_output, grad_h_n, w_hh, hs, lengths, reverse, nonlinearity):
    T1, B, H = hs.shape
    return (hs.new_empty((T1 - 1, B, H)), hs.new_empty((B, H)), w_hh.new_empty(w_hh.shape),
            hs.new_empty((H,)))


# ---------------------------------------------------------------- autograd

def _require_saved(hs):
    if hs.numel() == 0:
        raise RuntimeError(
            "fastrnn: backward through a layer call made with training=False; call it with "
            "training=True (the layers do this whenever a gradient is required)")


def _lstm_setup(ctx, inputs, output):
    _, _, _, w_hh, b_hh, w_hr, lengths, reverse, _ = inputs
    hs, cs, gates, proj_in = output[3:]
    ctx.mark_non_differentiable(hs, cs, gates, proj_in)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(w_hh, w_hr, hs, cs, gates, proj_in, lengths)
    ctx.reverse = reverse
    ctx.has_bias = b_hh is not None


def _lstm_backward(ctx, grad_output, grad_h_n, grad_c_n, *_unused):
    w_hh, w_hr, hs, cs, gates, proj_in, lengths = ctx.saved_tensors
    _require_saved(hs)
    grads = ops.lstm_backward(grad_output, grad_h_n, grad_c_n, w_hh, w_hr, hs, cs, gates,
                              proj_in, lengths, ctx.reverse)
    d_input, d_h0, d_c0, d_w_hh, d_b_hh, d_w_hr = grads
    return (d_input, d_h0, d_c0, d_w_hh, d_b_hh if ctx.has_bias else None,
            d_w_hr if w_hr is not None else None, None, None, None)


def _gru_setup(ctx, inputs, output):
    _, _, w_hh, b_hh, lengths, reverse, reset_after, _ = inputs
    hs, gates, extra = output[2:]
    ctx.mark_non_differentiable(hs, gates, extra)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(w_hh, hs, gates, extra, lengths)
    ctx.reverse, ctx.reset_after, ctx.has_bias = reverse, reset_after, b_hh is not None


def _gru_backward(ctx, grad_output, grad_h_n, *_unused):
    w_hh, hs, gates, extra, lengths = ctx.saved_tensors
    _require_saved(hs)
    d_input, d_h0, d_w_hh, d_b_hh = ops.gru_backward(
        grad_output, grad_h_n, w_hh, hs, gates, extra, lengths, ctx.reverse, ctx.reset_after)
    return (d_input, d_h0, d_w_hh, d_b_hh if ctx.has_bias else None, None, None, None, None)


def _rnn_setup(ctx, inputs, output):
    _, _, w_hh, b_hh, lengths, reverse, nonlinearity, _ = inputs
    hs = output[2]
    ctx.mark_non_differentiable(hs)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(w_hh, hs, lengths)
    ctx.reverse, ctx.nonlinearity, ctx.has_bias = reverse, nonlinearity, b_hh is not None


def _rnn_backward(ctx, grad_output, grad_h_n, *_unused):
    w_hh, hs, lengths = ctx.saved_tensors
    _require_saved(hs)
    d_input, d_h0, d_w_hh, d_b_hh = ops.rnn_backward(
        grad_output, grad_h_n, w_hh, hs, lengths, ctx.reverse, ctx.nonlinearity)
    return (d_input, d_h0, d_w_hh, d_b_hh if ctx.has_bias else None, None, None, None, None)


torch.library.register_autograd("fastrnn::lstm_forward", _lstm_backward,
                                setup_context=_lstm_setup)
torch.library.register_autograd("fastrnn::gru_forward", _gru_backward,
                                setup_context=_gru_setup)
torch.library.register_autograd("fastrnn::rnn_forward", _rnn_backward,
                                setup_context=_rnn_setup)
