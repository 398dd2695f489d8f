"""bfloat16 on the CPU: bf16 inputs, outputs, weights and saved states; float32 gates, cell
state, state gradients and GEMM accumulation (oneDNN's bf16 micro-kernel where the processor
has it). Conformance is the relative-error rule: fastrnn's error against a float64
reference (the same bf16-rounded weights and inputs, computed in float64) is at most twice
torch.nn's own bfloat16 error, plus a small atol, for the outputs, the final states and
every gradient."""
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import _ops
from fastrnn.testing import reference_rnn
from helpers import KINDS, cpu_backend_only, make_pair

ATOL = 2e-3  # as on CUDA: a few bf16 roundings of values near 1
runs_fastrnn = pytest.mark.usefixtures("bf16_kernels")  # conftest.py: on every processor


def run(module, x, state, packed_lengths=None):
    """Outputs, final states and the gradients of the input, the initial state and every
    parameter, for a fixed random output gradient; all as float64."""
    module.zero_grad()
    x = x.detach().requires_grad_()
    state = [s.detach().requires_grad_() for s in state]
    hx = tuple(state) if len(state) == 2 else state[0]
    inp = x if packed_lengths is None else pack_padded_sequence(x, packed_lengths,
                                                                enforce_sorted=False)
    out, final = module(inp, hx)
    if packed_lengths is not None:
        out = pad_packed_sequence(out)[0]
    finals = list(final) if isinstance(final, tuple) else [final]
    torch.manual_seed(7)
    grads = [torch.randn(t.shape, dtype=torch.float64).to(t.dtype) for t in [out, *finals]]
    torch.autograd.backward([out, *finals], grads)
    results = {"output": out, **{f"state {i}": f for i, f in enumerate(finals)},
               "input grad": x.grad, **{f"state {i} grad": s.grad for i, s in enumerate(state)}}
    results.update({f"{name} grad": p.grad for name, p in module.named_parameters()})
    return {k: v.detach().double() for k, v in results.items()}


def bf16_copies(kind, hidden, **kwargs):
    """(float64 reference, torch.nn bf16, fastrnn bf16) with the same bf16-rounded weights."""
    reference, fast = make_pair(kind, 12, hidden, "cpu", torch.float64, **kwargs)
    fast = fast.to(torch.bfloat16)
    reference.load_state_dict({k: v.double() for k, v in fast.state_dict().items()})
    torch_bf16 = KINDS[kind][0](12, hidden, dtype=torch.bfloat16,
                                **{**KINDS[kind][2], **kwargs})
    torch_bf16.load_state_dict(fast.state_dict())
    return reference, torch_bf16, fast


def inputs(module, T=9, B=5):
    torch.manual_seed(3)
    x = torch.randn(T, B, 12).bfloat16()
    D = 2 if module.bidirectional else 1
    P = getattr(module, "proj_size", 0) or module.hidden_size
    state = [torch.randn(module.num_layers * D, B, P).bfloat16()]
    if module.mode == "LSTM":
        state.append(torch.randn(module.num_layers * D, B, module.hidden_size).bfloat16())
    return x, state


def check_within_twice_torch(reference, torch_bf16, fast, packed_lengths=None, T=9, B=5):
    x, state = inputs(fast, T, B)
    exact = run(reference, x.double(), [s.double() for s in state], packed_lengths)
    baseline = run(torch_bf16, x, state, packed_lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to torch.nn
        got = run(fast, x, state, packed_lengths)
    assert got.keys() == exact.keys()
    for name in exact:
        fast_err = (got[name] - exact[name]).abs().max().item()
        torch_err = (baseline[name] - exact[name]).abs().max().item()
        assert fast_err <= 2 * torch_err + ATOL, (name, fast_err, torch_err)


@runs_fastrnn
@pytest.mark.parametrize("kind", list(KINDS))
def test_layers_within_twice_torch_error(kind):
    check_within_twice_torch(*bf16_copies(kind, 32, num_layers=2, bidirectional=True))


@runs_fastrnn
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_packed_input(kind):
    check_within_twice_torch(*bf16_copies(kind, 32), packed_lengths=torch.tensor([9, 4, 7, 1, 9]))


@runs_fastrnn
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru"])
@pytest.mark.parametrize("T", [1, 9])
def test_batch_of_one(kind, T):
    # a single row: dot products with the weights' rows (gemv.h), the input projection's
    # too when T = 1 (a generation step)
    check_within_twice_torch(*bf16_copies(kind, 32, num_layers=2), T=T, B=1)


@runs_fastrnn
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("hidden", [72, 300])
def test_wide_layers(kind, hidden):
    # weights packed in column blocks of at most 256 that never cross a gate (brgemm.h): a
    # 300-wide gate holds blocks of 256 and 44, a 72-wide backward product 64 and 8
    check_within_twice_torch(*bf16_copies(kind, hidden),
                             packed_lengths=torch.tensor([9, 4, 7, 1, 9]))


@runs_fastrnn
@pytest.mark.parametrize("hidden", [72, 300])
def test_wide_reset_before_gru(hidden):
    # W_hn multiplies r * h alone: its block starts at a gate. Against fastrnn's float64
    # layer (the BLAS path, itself checked against the reference) with the same weights.
    torch.manual_seed(0)
    gru = fastrnn.GRU(12, hidden, reset_after=False, dtype=torch.bfloat16)
    x, (h0,) = inputs(gru)
    exact = run(gru.double(), x.double(), [h0.double()])
    got = run(gru.bfloat16(), x, [h0])
    for name in exact:  # bf16 storage: a few roundings of values near 1
        err = (got[name] - exact[name]).abs().max().item()
        scale = exact[name].abs().max().item()
        assert err <= 0.02 * scale + ATOL, (name, err, scale)


@runs_fastrnn
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_relu"])
def test_odd_hidden_size_takes_the_widened_products(kind):
    # K odd has no VNNI layout: those products are widened to float32 (gemm_bf16_widened)
    check_within_twice_torch(*bf16_copies(kind, 33))


@runs_fastrnn
def test_reset_before_gru():
    # torch.nn has no such GRU: the bound is the float64 reference's scale
    torch.manual_seed(0)
    gru = fastrnn.GRU(12, 32, num_layers=2, bidirectional=True, reset_after=False,
                      dtype=torch.bfloat16)
    x = torch.randn(9, 5, 12).bfloat16().requires_grad_()
    exact = reference_rnn(gru.double(), x.double())[0]
    gru = gru.bfloat16()
    out = gru(x)[0]
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert gru.weight_hh_l0.grad.dtype == torch.bfloat16
    assert (out.double() - exact).abs().max().item() <= 10 * ATOL


@runs_fastrnn
def test_dtypes_follow_torch():
    reference, torch_bf16, fast = bf16_copies("lstm_proj", 32)
    x, state = inputs(fast)
    for module in (torch_bf16, fast):
        out, (h, c) = module(x, tuple(state))
        assert (out.dtype, h.dtype, c.dtype) == (torch.bfloat16,) * 3


@runs_fastrnn
def test_inference_matches_training_forward():
    # inference (nothing saved, one call for the layer) and training run the same products
    _, _, fast = bf16_copies("gru", 32, num_layers=2)
    x, state = inputs(fast)
    with torch.no_grad():
        inference = fast(x, state[0])[0]
    training = fast(x.requires_grad_(), state[0])[0]
    assert torch.equal(inference, training.detach())


def test_operators_run_bfloat16_everywhere():
    # the operators themselves take bf16 on any processor (widened products where there is
    # no bf16 instruction); only the layers choose torch.nn there
    torch.manual_seed(0)
    T, B, H = 4, 3, 8
    ig = torch.randn(T, B, 4 * H).bfloat16()
    h0, c0 = torch.randn(B, H).bfloat16(), torch.randn(B, H).bfloat16()
    w = torch.randn(4 * H, H).bfloat16() * 0.3
    out, h, c = _ops.ops.lstm_forward(ig, h0, c0, w, None, None, None, False, False)[:3]
    ref_out, (ref_h, ref_c) = _lstm_steps(ig.double(), h0.double(), c0.double(), w.double())
    assert out.dtype == torch.bfloat16
    assert (out.double() - ref_out).abs().max().item() < 2e-2
    assert (c.double() - ref_c).abs().max().item() < 2e-2


@pytest.mark.parametrize("rows,width,apart", [(2100, 300, 0), (4502, 1100, 0), (1000, 40, 37)])
def test_weight_grads_of_long_products(rows, width, apart):
    # A weight gradient's product is long (K = rows >= 4 M, M = width + 1 with the bias
    # row): its grad_output [rows, 517] is not packed but read in depth slices that each task
    # interleaves into VNNI pairs (two row blocks on two threads; three column blocks, the
    # last 5 wide; the last slice short), and [x^T; 1] is transposed tile by tile from x
    # (its rows `apart` elements more than a row apart). Accumulated in float32 and rounded
    # once, each element is the float64 product of the same bf16 values within a rounding.
    torch.manual_seed(0)
    x = torch.randn(rows, width + apart).bfloat16()[:, :width]
    grad = torch.randn(rows, 517).bfloat16()
    d_weight, d_bias = _ops.ops.linear_weight_grads(x, grad, True)
    assert d_weight.dtype == d_bias.dtype == torch.bfloat16
    torch.testing.assert_close(d_weight.double(), grad.double().t() @ x.double(), atol=0.05,
                               rtol=2**-7)
    torch.testing.assert_close(d_bias.double(), grad.double().sum(0), atol=0.05, rtol=2**-7)


def _lstm_steps(input_gates, h, c, w_hh):
    outs = []
    for gates in input_gates:
        i, f, g, o = (gates + h @ w_hh.t()).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), (h, c)


@cpu_backend_only  # the CUDA back-end (and its emulation) has no such fallback
def test_layers_without_bf16_instructions_run_torch(monkeypatch):
    monkeypatch.setattr(_ops, "CPU_BF16_GEMM", False)
    reference = torch.nn.LSTM(4, 6, dtype=torch.bfloat16)
    lstm = fastrnn.LSTM(4, 6, dtype=torch.bfloat16)
    lstm.load_state_dict(reference.state_dict())
    x = torch.randn(3, 2, 4, dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="no bfloat16 GEMM instructions"):
        out, _ = lstm(x)
    torch.testing.assert_close(out, reference(x)[0])
