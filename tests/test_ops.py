"""The operators on their own: gradcheck in float64 and torch.library.opcheck."""
import copy

import pytest
import torch

import fastrnn
from helpers import DEVICES, EMULATED_CUDA, cpu_backend_only, runs_cuda_kernels
from fastrnn._ops import GATES, ops

T, B, H, P = 5, 3, 4, 2


def make_inputs(cell, device, dtype=torch.float64, lengths=True, proj=False, bias=True):
    g = GATES[cell]
    p = P if proj else H
    torch.manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, device=device, dtype=dtype) * 0.5).requires_grad_()

    args = {"input_gates": rand(T, B, g * H), "h0": rand(B, p)}
    if cell == "lstm":
        args["c0"] = rand(B, H)
    args["w_hh"] = rand(g * H, p)
    args["b_hh"] = rand(g * H) if bias else None
    if cell == "lstm":
        args["w_hr"] = rand(P, H) if proj else None
    # unsorted lengths run every step's GEMM over the whole batch; longest-first ones (as
    # packed input gives) let the CPU skip the finished rows, down to none running
    choices = {True: [5, 2, 4], "unsorted": [5, 2, 4], "longest_first": [5, 3, 0]}
    args["lengths"] = torch.tensor(choices[lengths], device=device) if lengths else None
    return args


CASES = [
    ("lstm", {}), ("lstm", {"proj": True}), ("lstm", {"bias": False}),
    ("gru", {"reset_after": True}), ("gru", {"reset_after": False}),
    ("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
]


def forward_args(cell, options, device, reverse, lengths, dtype=torch.float64):
    build = {k: v for k, v in options.items() if k in ("proj", "bias")}
    args = list(make_inputs(cell, device, dtype, lengths, **build).values())
    if cell == "gru":
        return args + [reverse, options["reset_after"], True]
    if cell == "rnn":
        return args + [reverse, options["nonlinearity"], True]
    return args + [reverse, True]


def forward_op(cell):
    return {"lstm": ops.lstm_forward, "gru": ops.gru_forward, "rnn": ops.rnn_forward}[cell]


@pytest.mark.parametrize("cell,options", CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [False, "unsorted", "longest_first"])
def test_gradcheck(device, cell, options, reverse, lengths):
    args = forward_args(cell, options, device, reverse, lengths)
    n_out = {"lstm": 3, "gru": 2, "rnn": 2}[cell]

    def f(*inputs):
        return forward_op(cell)(*inputs)[:n_out]

    if options.get("nonlinearity") == "relu":
        # keep pre-activations away from relu's kink, where finite differences break
        args[0] = (args[0].detach() + 3.0).requires_grad_()
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell,options", CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("broadcast", ["time", "batch", "all"])
def test_broadcast_output_gradient(device, cell, options, reverse, broadcast):
    # an output gradient that autograd hands back broadcast (output.sum(), or a weighting
    # constant along time): one step read at every step (OutputGrad, csrc/drivers.h), or
    # copied; the same gradients as for the same values laid out in full
    args = forward_args(cell, options, device, reverse, "unsorted")
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    out = forward_op(cell)(*args)[0]
    shape = {"time": (1,) + out.shape[1:], "batch": (out.shape[0], 1, out.shape[2]),
             "all": (1, 1, 1)}[broadcast]
    weight = torch.randn(shape, device=device, dtype=out.dtype).expand_as(out)
    expected = torch.autograd.grad(out, inputs, weight.contiguous(), retain_graph=True)
    got = torch.autograd.grad(out, inputs, weight)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


# bfloat16 kernels exist on both devices, float16 on CUDA only (and so under its emulation).
LOW_PRECISION = [torch.bfloat16] + (
    [torch.float16] if "cuda" in DEVICES or EMULATED_CUDA else [])


@pytest.mark.parametrize("cell,options", CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64] + LOW_PRECISION)
def test_opcheck_forward(device, cell, options, reverse, dtype):
    if dtype == torch.float16 and not runs_cuda_kernels(device):
        pytest.skip("float16 kernels exist on CUDA only")
    args = forward_args(cell, options, device, reverse, lengths=True, dtype=dtype)
    torch.library.opcheck(forward_op(cell), args)
    args[-1] = False  # inference: nothing saved
    no_grad_args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(forward_op(cell), no_grad_args)


@pytest.mark.parametrize("cell,options", CASES)
@pytest.mark.parametrize("dtype", [torch.float64] + LOW_PRECISION)
def test_opcheck_backward(device, cell, options, dtype):
    if dtype == torch.float16 and not runs_cuda_kernels(device):
        pytest.skip("float16 kernels exist on CUDA only")
    args = [a.detach() if isinstance(a, torch.Tensor) else a
            for a in forward_args(cell, options, device, reverse=False, lengths=True,
                                  dtype=dtype)]
    result = forward_op(cell)(*args)
    torch.manual_seed(1)
    if cell == "lstm":
        out, h_n, c_n, hs, cs, gates, proj_in, _ = result
        bargs = [torch.randn_like(out), torch.randn_like(h_n), None, args[3], args[5], hs, cs,
                 gates, proj_in, args[6], False]
        torch.library.opcheck(ops.lstm_backward, bargs)
    elif cell == "gru":
        out, h_n, hs, gates, extra = result
        bargs = [torch.randn_like(out), None, args[2], hs, gates, extra, args[4], False,
                 options["reset_after"]]
        torch.library.opcheck(ops.gru_backward, bargs)
    else:
        out, h_n, hs = result
        bargs = [torch.randn_like(out), torch.randn_like(h_n), args[2], hs, args[4], False,
                 options["nonlinearity"]]
        torch.library.opcheck(ops.rnn_backward, bargs)


# ---- the input projection: brgemm on the CPU in float32, at::mm otherwise

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(device, dtype, bias):
    torch.manual_seed(0)
    big = torch.randn(300, 2, 40, device=device, dtype=dtype)
    x = big[:, 0, :37].requires_grad_()  # rows with a stride, a width off the SIMD width
    w = torch.randn(517, 37, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(517, device=device, dtype=dtype, requires_grad=True) if bias else None
    got = ops.linear(x, w, b)
    want = torch.nn.functional.linear(x, w, b)
    tolerance = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(got, want, **tolerance)
    grad = torch.randn_like(want)
    leaves = [x, w] + ([b] if bias else [])
    for a, e in zip(torch.autograd.grad(got, leaves, grad), torch.autograd.grad(want, leaves, grad)):
        torch.testing.assert_close(a, e, **tolerance)
    if dtype == torch.float64:
        small = [t.detach()[:5, :6].clone().requires_grad_() if t.dim() == 2 else t for t in (x, w)]
        small_b = b.detach()[:5].clone().requires_grad_() if bias else None
        assert torch.autograd.gradcheck(lambda *a: ops.linear(*a), (small[0], small[1], small_b))
    torch.library.opcheck(ops.linear, (x.detach(), w.detach(), b.detach() if bias else None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_weight_grads_match_float64(device, dtype):
    torch.manual_seed(0)
    x = torch.randn(300, 2, 40, device=device, dtype=dtype)[:, 0, :37]  # strided rows
    grad = torch.randn(300, 517, device=device, dtype=dtype)
    d_w, d_b = ops.linear_weight_grads(x, grad, True)
    tolerance = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(d_w, (grad.double().t() @ x.double()).to(dtype), **tolerance)
    torch.testing.assert_close(d_b, grad.double().sum(0).to(dtype), **tolerance)
    d_w_alone, no_bias = ops.linear_weight_grads(x, grad, False)
    torch.testing.assert_close(d_w_alone, d_w, **tolerance)
    assert no_bias.numel() == 0
    torch.library.opcheck(ops.linear_weight_grads, (x, grad, True))
    torch.library.opcheck(ops.linear_weight_grads, (x, grad, False))
    with pytest.raises(RuntimeError, match="same rows"):
        ops.linear_weight_grads(x, grad[:5], True)
    with pytest.raises(RuntimeError, match="grad_output must be"):
        ops.linear_weight_grads(x, grad.int(), True)


def test_linear_bias_gradient_with_a_frozen_weight():
    x = torch.randn(50, 7, requires_grad=True)
    w = torch.randn(9, 7)
    b = torch.randn(9, requires_grad=True)
    grad = torch.randn(50, 9)
    got = torch.autograd.grad(ops.linear(x, w, b), (x, b), grad)
    want = torch.autograd.grad(torch.nn.functional.linear(x, w, b), (x, b), grad)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows_of_w", [3, 130, 517])  # serial, split unevenly over threads
@pytest.mark.parametrize("strided", [False, True])
def test_single_row_products_match_float64(rows_of_w, strided):
    # One row times a weight used transposed runs the CPU's own GEMV (csrc/cpu/gemv.h):
    # the input projection here, and every forward recurrent product at batch 1.
    torch.manual_seed(0)
    big = torch.randn(rows_of_w, 50)
    w = big[:, 3:40] if strided else big[:, :37].contiguous()  # K = 37: a SIMD tail
    x = torch.randn(1, 37)
    b = torch.randn(rows_of_w)
    want = x.double() @ w.double().t() + b.double()
    torch.testing.assert_close(ops.linear(x, w, b).double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ops.linear(x, w, None).double(), want - b.double(), atol=1e-5,
                               rtol=1e-5)
    layer = fastrnn.GRU(37, rows_of_w)  # batch 1: the recurrent product of every step too
    with torch.no_grad():
        sequence = torch.randn(5, 1, 37)
        reference = fastrnn.to_torch(copy.deepcopy(layer)).double()
        torch.testing.assert_close(layer(sequence)[0].double(), reference(sequence.double())[0],
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rows,width,ld", [(37, 13, 20), (300, 45, 45), (4099, 259, 261)])
def test_weight_grads_transpose_their_input(rows, width, ld):
    # linear_weight_grads starts from x^T (cpu::transpose: the SIMD level's register tiles,
    # a scalar rim where the sizes are no multiple of a tile, over the threads from 1 M
    # elements up as in the last case; x's rows ld apart). 13 + 1 rows go to the BLAS, the
    # others through brgemm.
    torch.manual_seed(0)
    x = torch.randn(rows, ld)[:, :width]
    grad = torch.randn(rows, 24)
    d_weight, d_bias = ops.linear_weight_grads(x, grad, True)
    torch.testing.assert_close(d_weight.double(), grad.double().t() @ x.double(), atol=1e-3,
                               rtol=1e-4)
    torch.testing.assert_close(d_bias.double(), grad.double().sum(0), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("rows,width", [(2100, 300), (4500, 1100)])
def test_weight_grads_of_long_products_over_row_blocks(rows, width):
    # A weight gradient's product is long (K = rows >= 4 M, M = width + 1 with the bias
    # row): on two threads two row blocks read the unpacked grad_output (N = 517, three
    # column blocks, the last 5 wide), each copying its depth slices (the last one short)
    # into its thread's scratch.
    torch.manual_seed(0)
    x = torch.randn(rows, width)
    grad = torch.randn(rows, 517)
    d_weight, d_bias = ops.linear_weight_grads(x, grad, True)
    torch.testing.assert_close(d_weight.double(), grad.double().t() @ x.double(), atol=1e-3,
                               rtol=1e-4)
    torch.testing.assert_close(d_bias.double(), grad.double().sum(0), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("rows,width", [(64, 31), (1000, 40), (2100, 300)])
def test_weight_grads_of_an_input_whose_rows_are_apart(rows, width):
    # brgemm transposes [x^T; 1] tile by tile straight from x (rows x.stride(0) apart, here
    # wider than a row), the bias's row of ones in the last row block's last tile.
    torch.manual_seed(0)
    x = torch.randn(rows, width + 37)[:, 5:5 + width]
    grad = torch.randn(rows, 300)
    d_weight, d_bias = ops.linear_weight_grads(x, grad, True)
    torch.testing.assert_close(d_weight.double(), grad.double().t() @ x.double(), atol=1e-3,
                               rtol=1e-4)
    torch.testing.assert_close(d_bias.double(), grad.double().sum(0), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("rows", [2, 31, 32, 129, 300])
@pytest.mark.parametrize("features", [300, 600])
def test_linear_of_few_and_many_rows(rows, features):
    # Fewer rows than kBrgemmMinProductRows go to the BLAS, more through brgemm with W^T
    # packed straight from W (N = 300: a 256 and a 44 wide column block; K = 45). N = 600
    # over one row block (129 rows) is three tasks: on two threads, four narrower blocks.
    torch.manual_seed(0)
    x, w, b = torch.randn(rows, 45), torch.randn(features, 45), torch.randn(features)
    want = x.double() @ w.double().t() + b.double()
    torch.testing.assert_close(ops.linear(x, w, b).double(), want, atol=1e-5, rtol=1e-5)


def test_linear_checks_its_arguments():
    with pytest.raises(RuntimeError, match=r"weight must be \[N, 4\]"):
        ops.linear(torch.randn(3, 4), torch.randn(5, 3), None)
    with pytest.raises(RuntimeError, match=r"bias must be \[5\]"):
        ops.linear(torch.randn(3, 4), torch.randn(5, 4), torch.randn(4))
    with pytest.raises(RuntimeError, match="weight must be Float"):
        ops.linear(torch.randn(3, 4), torch.randn(5, 4, dtype=torch.float64), None)


# ---- inference through a whole stack in one call (stack_forward)

STACK_KINDS = ["lstm", "lstm_proj", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]


def _stack_layer(kind, dtype, bidirectional, bias=True):
    torch.manual_seed(0)
    if kind == "gru_reset_before":
        return fastrnn.GRU(6, 8, num_layers=3, bidirectional=bidirectional, bias=bias,
                           reset_after=False, dtype=dtype)
    from helpers import KINDS
    _, cls, extra = KINDS[kind]
    return cls(6, 8, num_layers=3, bidirectional=bidirectional, bias=bias, dtype=dtype,
               **extra)


@cpu_backend_only
@pytest.mark.parametrize("kind", STACK_KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_in_one_call_equals_the_layer_by_layer_path(monkeypatch, bf16_kernels, kind,
                                                              bidirectional, packed, dtype):
    """Under no_grad a CPU stack runs as one stack_forward call: the same operators in the
    same order as the layer-by-layer path, so the same bits (batch of one and T=1 too)."""
    from fastrnn import functional
    layer = _stack_layer(kind, dtype, bidirectional, bias=kind != "rnn_relu").eval()
    calls = []
    original = functional._runs_in_one_call

    def spy(*args):  # the real decision, recorded
        calls.append(original(*args))
        return calls[-1]
    monkeypatch.setattr(functional, "_runs_in_one_call", spy)
    for T, B in [(7, 5), (1, 1)]:
        torch.manual_seed(T)
        x = torch.randn(T, B, 6, dtype=dtype)
        if packed and B > 1:
            x = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([7, 3, 5, 1, 7]),
                                                        enforce_sorted=False)
        with torch.no_grad():
            one_call = layer(x)
            monkeypatch.setattr(functional, "_runs_in_one_call", lambda *a: False)
            layer_by_layer = layer(x)
            monkeypatch.setattr(functional, "_runs_in_one_call", spy)
        flat = lambda r: [r[0].data if packed and B > 1 else r[0],
                          *(r[1] if isinstance(r[1], tuple) else (r[1],))]
        for got, want in zip(flat(one_call), flat(layer_by_layer)):
            assert torch.equal(got, want)
    assert calls == [True, True]  # the one-call path did run


@cpu_backend_only
def test_what_runs_in_one_call():
    from fastrnn.functional import LayerWeights, _runs_in_one_call
    weights = [LayerWeights(torch.randn(15, 4), torch.randn(15, 5), None, None, None)]
    x = torch.randn(3, 2, 4)
    assert _runs_in_one_call(x, weights, 0.0, True)
    assert _runs_in_one_call(x, weights, 0.5, False)  # eval: no dropout
    assert not _runs_in_one_call(x, weights, 0.5, True)  # dropout drawn between layers
    assert not _runs_in_one_call(x.double(), weights, 0.0, False)  # F.linear projects
    assert not _runs_in_one_call(x[:, :0], weights, 0.0, False)  # empty batch
    long = torch.empty(1, 1, 4).expand(1 << 20, 16, 4)  # 1 GB of projected gates: chunks
    assert not _runs_in_one_call(long, weights, 0.0, False)


@pytest.mark.parametrize("mode,gates", [("LSTM", 4), ("GRU", 3), ("RNN_TANH", 1)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_opcheck_stack_forward(mode, gates, bidirectional):
    torch.manual_seed(0)
    D, L, T, B, I, H = (2 if bidirectional else 1), 2, 4, 3, 5, 6
    weights = []
    for layer in range(L):
        for _ in range(D):
            width = I if layer == 0 else D * H
            weights += [torch.randn(gates * H, width), torch.randn(gates * H, H),
                        torch.randn(gates * H), torch.randn(gates * H), None]
    h0 = torch.randn(L * D, B, H)
    c0 = torch.randn(L * D, B, H) if mode == "LSTM" else None
    args = [mode, torch.randn(T, B, I), h0, c0, weights, L, bidirectional,
            torch.tensor([4, 2, 3]), True]
    torch.library.opcheck(ops.stack_forward, args)
