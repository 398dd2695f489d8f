"""fastrnn layers against torch.nn: outputs, final states and every gradient."""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import KINDS, assert_close, flat_state, make_pair, random_state


def run_and_backward(module, x, state, grads_out):
    """Forward, then backward with fixed random output gradients; returns all results."""
    out, final = module(x, state)
    out_data = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
    finals = flat_state(final)
    loss = (out_data * grads_out[0]).sum() + sum((f * g).sum() for f, g in zip(finals, grads_out[1:]))
    leaves = [x.data if hasattr(x, "batch_sizes") else x] + flat_state(state)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    return [out_data] + finals, grads


def compare(reference, fast, x, state, dtype):
    ref_out, ref_final = reference(x, state)
    ref_values = [ref_out.data if hasattr(ref_out, "batch_sizes") else ref_out] + flat_state(ref_final)
    torch.manual_seed(1)
    grads_out = [torch.randn_like(v) for v in ref_values]
    expected, expected_grads = run_and_backward(reference, x, state, grads_out)
    actual, actual_grads = run_and_backward(fast, x, state, grads_out)
    for name, a, e in zip(["output", "h_n", "c_n"], actual, expected):
        assert_close(a, e, dtype, name)
    names = ["grad input"] + [f"grad state {i}" for i in range(len(flat_state(state)))] + [
        f"grad {n}" for n, _ in fast.named_parameters()]
    for name, a, e in zip(names, actual_grads, expected_grads):
        assert_close(a, e, dtype, name)


GRID = list(itertools.product(KINDS, [1, 2, 3], [False, True], [False, True], [True, False]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,bias", GRID)
def test_matches_torch_nn(device, dtype, kind, num_layers, bidirectional, batch_first, bias):
    reference, fast = make_pair(kind, 4, 6, device, dtype, num_layers=num_layers,
                                bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    T, B = 5, 3
    x = torch.randn((B, T, 4) if batch_first else (T, B, 4), device=device, dtype=dtype,
                    requires_grad=True)
    compare(reference, fast, x, random_state(reference, B, device, dtype), dtype)


@pytest.mark.parametrize("kind", list(KINDS))
def test_default_state(device, kind):
    reference, fast = make_pair(kind, 4, 6, device, num_layers=2)
    x = torch.randn(7, 2, 4, device=device, dtype=torch.float64)
    ref_out, ref_state = reference(x)
    out, state = fast(x)
    assert_close(out, ref_out, torch.float64, "output")
    for a, e in zip(flat_state(state), flat_state(ref_state)):
        assert_close(a, e, torch.float64, "state")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_sequence(device, dtype, kind, bidirectional, enforce_sorted):
    reference, fast = make_pair(kind, 4, 6, device, dtype, num_layers=2,
                                bidirectional=bidirectional)
    lengths = torch.tensor([7, 5, 5, 2, 1] if enforce_sorted else [2, 7, 1, 5, 5])
    padded = torch.randn(7, 5, 4, device=device, dtype=dtype)
    packed = pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)
    packed.data.requires_grad_(True)
    compare(reference, fast, packed, random_state(reference, 5, device, dtype), dtype)


@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_output_is_packed_like_torch(device, kind):
    reference, fast = make_pair(kind, 4, 6, device)
    packed = pack_padded_sequence(torch.randn(6, 3, 4, device=device, dtype=torch.float64),
                                  torch.tensor([3, 6, 4]), enforce_sorted=False)
    out, _ = fast(packed)
    ref_out, _ = reference(packed)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
    assert torch.equal(out.sorted_indices.cpu(), ref_out.sorted_indices.cpu())
    assert torch.equal(out.unsorted_indices.cpu(), ref_out.unsorted_indices.cpu())


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unbatched_input(device, kind, bidirectional):
    reference, fast = make_pair(kind, 4, 6, device, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(5, 4, device=device, dtype=torch.float64, requires_grad=True)
    state = random_state(reference, None, device, torch.float64, unbatched=True)
    compare(reference, fast, x, state, torch.float64)


def test_eval_mode_dropout_matches_torch(device):
    reference, fast = make_pair("lstm", 4, 6, device, num_layers=3, dropout=0.5)
    reference.eval()
    fast.eval()
    x = torch.randn(5, 2, 4, device=device, dtype=torch.float64)
    assert_close(fast(x)[0], reference(x)[0], torch.float64, "output")


def test_training_mode_dropout_between_layers(device):
    _, fast = make_pair("gru", 4, 32, device, num_layers=2, dropout=0.5)
    x = torch.randn(5, 8, 4, device=device, dtype=torch.float64)
    fast.eval()
    without = fast(x)[0]
    fast.train()
    torch.manual_seed(3)
    with_dropout = fast(x)[0]
    torch.manual_seed(3)
    again = fast(x)[0]
    assert not torch.allclose(with_dropout, without)
    torch.testing.assert_close(with_dropout, again)
    # One layer: torch.nn applies no dropout (after the last layer there is none).
    _, single = make_pair("gru", 4, 32, device, num_layers=1)
    single.dropout = 0.5
    single.train()
    single_eval = single.eval()(x)[0]
    torch.testing.assert_close(single.train()(x)[0], single_eval)


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_round_trip(kind):
    reference, fast = make_pair(kind, 4, 6, num_layers=2, bidirectional=True)
    assert list(fast.state_dict()) == list(reference.state_dict())
    fresh_torch = type(reference)(4, 6, num_layers=2, bidirectional=True, dtype=torch.float64,
                                  **KINDS[kind][2])
    fresh_torch.load_state_dict(fast.state_dict())
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    assert_close(fresh_torch(x)[0], fast(x)[0], torch.float64, "output")
    assert isinstance(fast, torch.nn.RNNBase)


def test_non_contiguous_input_and_state(device):
    reference, fast = make_pair("lstm", 4, 6, device, num_layers=2)
    big = torch.randn(9, 6, 8, device=device, dtype=torch.float64)
    x = big[::2, ::2, ::2]  # a strided slice of a larger tensor
    h0 = torch.randn(2, 6, 6, device=device, dtype=torch.float64)[:, ::2]
    c0 = torch.randn(2, 3, 12, device=device, dtype=torch.float64)[..., ::2]
    x.requires_grad_()
    h0.requires_grad_()
    c0.requires_grad_()
    ref = reference(x, (h0, c0))
    out = fast(x, (h0, c0))
    assert_close(out[0], ref[0], torch.float64, "output")
    assert_close(out[1][0], ref[1][0], torch.float64, "h_n")
    assert_close(out[1][1], ref[1][1], torch.float64, "c_n")
    loss = lambda o: o[0].square().sum() + o[1][0].sum() + o[1][1].sum()  # noqa: E731
    want = torch.autograd.grad(loss(ref), [x, h0, c0] + list(reference.parameters()))
    got = torch.autograd.grad(loss(out), [x, h0, c0] + list(fast.parameters()))
    for name, a, e in zip(["x", "h0", "c0"] + [n for n, _ in fast.named_parameters()], got,
                          want):
        assert_close(a, e, torch.float64, f"gradient of {name}")


@pytest.mark.parametrize("T", [1, 129, 151])
def test_odd_lengths(device, T):
    reference, fast = make_pair("gru", 3, 5, device, bidirectional=True)
    x = torch.randn(T, 2, 3, device=device, dtype=torch.float64, requires_grad=True)
    compare(reference, fast, x, random_state(reference, 2, device, torch.float64),
            torch.float64)


def test_backward_is_deterministic(device):
    _, fast = make_pair("lstm", 8, 16, device, num_layers=2, bidirectional=True,
                        dtype=torch.float32)
    x = torch.randn(20, 4, 8, device=device, dtype=torch.float32, requires_grad=True)
    grads = []
    for _ in range(2):
        out, _ = fast(x)
        grads.append(torch.autograd.grad(out.square().sum(), [x] + list(fast.parameters())))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_inference_saves_nothing():
    """Under no_grad the operators return no saved tensors."""
    import fastrnn
    _, fast = make_pair("lstm", 4, 6)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    with torch.no_grad():
        gates = torch.nn.functional.linear(x, fast.weight_ih_l0, fast.bias_ih_l0)
        result = fastrnn._ops.ops.lstm_forward(gates, x.new_zeros(2, 6), x.new_zeros(2, 6),
                                               fast.weight_hh_l0, fast.bias_hh_l0, None, None,
                                               False, False)
    assert all(t.numel() == 0 for t in result[3:])


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("packed", [False, True])
def test_chunked_inference_matches_torch(device, kind, packed, monkeypatch):
    """Without grad, layers run over chunks of time steps; force chunks of a few steps."""
    import fastrnn.functional
    monkeypatch.setattr(fastrnn.functional, "INFERENCE_CHUNK_BYTES", 64)
    reference, fast = make_pair(kind, 4, 6, device, num_layers=2, bidirectional=True)
    x = torch.randn(11, 3, 4, device=device, dtype=torch.float64)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([4, 11, 7]), enforce_sorted=False)
    state = random_state(reference, 3, device, torch.float64)
    with torch.no_grad():
        out, final = fast(x, state)
        ref_out, ref_final = reference(x, state)
    out = out.data if packed else out
    ref_out = ref_out.data if packed else ref_out
    assert_close(out, ref_out, torch.float64, "output")
    for a, e in zip(flat_state(final), flat_state(ref_final)):
        assert_close(a, e, torch.float64, "final state")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_activations_accuracy(bf16_kernels, dtype):
    # The CPU's float activations are a fitted rational tanh (csrc/cpu/simd.h; the sigmoid
    # through it): one step of an Elman RNN and of an LSTM from a zero state, with
    # pre-activations from -12 to 12 spread over the SIMD body and the scalar tail, against
    # the exact functions of the same float32 pre-activations.
    import fastrnn
    pre = torch.linspace(-12, 12, 75)
    rnn = fastrnn.RNN(1, 75, bias=False)
    lstm = fastrnn.LSTM(1, 75, bias=False)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(pre[:, None])
        rnn.weight_hh_l0.zero_()
        lstm.weight_ih_l0.copy_(pre.repeat(4)[:, None])
        lstm.weight_hh_l0.zero_()
        x = torch.ones(1, 1, 1)
        h = rnn.to(dtype)(x.to(dtype))[0].double().flatten()
        out, (_, c) = lstm.to(dtype)(x.to(dtype))
    exact = pre.to(dtype).double()
    tolerance = 1e-6 if dtype == torch.float32 else 4e-3  # bf16 outputs: rounded to 8 bits
    torch.testing.assert_close(h, torch.tanh(exact), atol=0, rtol=tolerance)
    assert h[0].item() == -1.0 and h[-1].item() == 1.0  # saturated exactly, as torch
    c_exact = torch.sigmoid(exact) * torch.tanh(exact)
    torch.testing.assert_close(c.double().flatten(), c_exact, atol=5e-7, rtol=tolerance)
    torch.testing.assert_close(out.double().flatten(), torch.sigmoid(exact) * torch.tanh(c_exact),
                               atol=5e-7, rtol=tolerance)
