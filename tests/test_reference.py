"""fastrnn layers against the plain-PyTorch float64 reference (tests/reference.py): the
only check for the reset-before GRU, which torch.nn lacks, and a second opinion on all."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from helpers import KINDS, assert_close, flat_state, make_pair, random_state
from fastrnn.testing import reference_rnn


def compare_with_reference(fast, x, state, lengths=None):
    """x: [T, B, I] time-major, lengths optional (then fed packed to fastrnn)."""
    dtype = x.dtype
    if lengths is not None:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, final = fast(packed, state)
        out = pad_packed_sequence(out, total_length=x.shape[0])[0]
    else:
        out, final = fast(x, state)
    ref_out, ref_h, ref_c = reference_rnn(fast, x, state, lengths)
    assert_close(out, ref_out, dtype, "output")
    expected = [ref_h] + ([ref_c] if ref_c is not None else [])
    for a, e in zip(flat_state(final), expected):
        assert_close(a, e, dtype, "final state")
    torch.manual_seed(5)
    weights = [torch.randn_like(v) for v in [ref_out] + expected]
    leaves = [x] + flat_state(state) + list(fast.parameters())

    def loss(values):
        return sum((v * w).sum() for v, w in zip(values, weights))

    got = torch.autograd.grad(loss([out] + flat_state(final)), leaves, allow_unused=True)
    want = torch.autograd.grad(loss([ref_out] + expected), leaves, allow_unused=True)
    for i, (a, e) in enumerate(zip(got, want)):
        assert_close(a, e, dtype, f"gradient {i}")


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_reset_before_gru(device, num_layers, bidirectional, bias):
    torch.manual_seed(0)
    gru = fastrnn.GRU(4, 6, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                      reset_after=False, device=device, dtype=torch.float64)
    x = torch.randn(6, 3, 4, device=device, dtype=torch.float64, requires_grad=True)
    compare_with_reference(gru, x, random_state(gru, 3, device, torch.float64))


def test_reset_before_differs_from_reset_after(device):
    torch.manual_seed(0)
    before = fastrnn.GRU(4, 6, reset_after=False, device=device, dtype=torch.float64)
    after = fastrnn.GRU(4, 6, device=device, dtype=torch.float64)
    after.load_state_dict(before.state_dict())
    x = torch.randn(5, 2, 4, device=device, dtype=torch.float64)
    assert not torch.allclose(before(x)[0], after(x)[0])
    assert "reset_after=False" in repr(before)


@pytest.mark.parametrize("kind", list(KINDS) + ["gru_reset_before"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_variable_lengths_against_reference(device, kind, bidirectional):
    if kind == "gru_reset_before":
        torch.manual_seed(0)
        fast = fastrnn.GRU(4, 6, num_layers=2, bidirectional=bidirectional, reset_after=False,
                           device=device, dtype=torch.float64)
    else:
        _, fast = make_pair(kind, 4, 6, device, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(7, 4, 4, device=device, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 7, 1, 5])
    compare_with_reference(fast, x, random_state(fast, 4, device, torch.float64), lengths)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_against_float64_reference(device, kind):
    """float32 error is bounded by twice torch.nn's own float32 error plus a small atol."""
    reference, fast = make_pair(kind, 16, 32, device, torch.float32, num_layers=2)
    x = torch.randn(40, 8, 16, device=device)
    exact = reference_rnn(fast.double(), x.double())[0]
    fast.float()
    torch_err = (reference(x)[0].double() - exact).abs().max().item()
    fast_err = (fast(x)[0].double() - exact).abs().max().item()
    assert fast_err <= 2 * torch_err + 1e-6, (fast_err, torch_err)


@pytest.mark.parametrize("kind", list(KINDS) + ["gru_reset_before"])
@pytest.mark.parametrize("hidden", [72, 300, 740])
@pytest.mark.parametrize("lengths", [None, [5, 2, 5, 4]])
@pytest.mark.parametrize("batch", [4, 1])
@pytest.mark.parametrize("steps", [5, 1])
def test_wide_layers_float32(kind, hidden, lengths, batch, steps):
    """The CPU packs each weight into column blocks of at most 256 that never cross a gate
    (csrc/cpu/brgemm.h): a gate 300 wide holds a 256 and a 44 block; a 72-wide backward
    product is split in blocks of 64 and 8 to feed both threads; a weight of 2 MB or more
    at a batch of 32 or less (740: every cell's) goes in blocks of 32, a gate's last block
    4 wide; the reset-before GRU multiplies W_hn alone. At batch 1 every product is a row
    of dot products, the backward's with W^T (its pieces: W_hn, W_hr). float32 against the
    float64 reference, forward and backward, with variable lengths too (fewer rows in a
    step's product). A single step packs nothing: its products go to the BLAS."""
    torch.manual_seed(0)
    if kind == "gru_reset_before":
        fast = fastrnn.GRU(8, hidden, reset_after=False)
    else:
        _, fast = make_pair(kind, 8, hidden, dtype=torch.float32)
    x = torch.randn(steps, batch, 8, dtype=torch.float64)
    state = [s.detach() for s in flat_state(random_state(fast, batch, "cpu", torch.float64))]
    lengths = None if lengths is None else torch.tensor(lengths[:batch]).clamp(max=steps)
    exact_out, *exact_final = reference_rnn(fast.double(), x, tuple(state) if len(state) == 2
                                            else state[0], lengths)
    leaves = [x.float().requires_grad_(), *(s.float().requires_grad_() for s in state)]
    fast.float()
    hx = tuple(leaves[1:]) if len(state) == 2 else leaves[1]
    if lengths is None:
        out, final = fast(leaves[0], hx)
    else:
        packed = pack_padded_sequence(leaves[0], lengths, enforce_sorted=False)
        out, final = fast(packed, hx)
        out = pad_packed_sequence(out, total_length=steps)[0]
    tol = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.double(), exact_out, **tol)
    for a, e in zip(flat_state(final), exact_final):
        torch.testing.assert_close(a.double(), e, **tol)
    # gradients against float64 autograd through the same module
    torch.manual_seed(5)
    weights = [torch.randn_like(exact_out)] + [torch.randn_like(e) for e in exact_final
                                               if e is not None]
    finals = flat_state(final)
    loss = (out * weights[0].float()).sum() + sum((f * w.float()).sum()
                                                  for f, w in zip(finals, weights[1:]))
    got = torch.autograd.grad(loss, leaves + list(fast.parameters()))
    fast.double()
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    hx64 = tuple(leaves64[1:]) if len(state) == 2 else leaves64[1]
    ref_out, ref_h, ref_c = reference_rnn(fast, leaves64[0], hx64, lengths)
    ref_finals = [ref_h] + ([ref_c] if ref_c is not None else [])
    ref_loss = (ref_out * weights[0]).sum() + sum((f * w).sum()
                                                  for f, w in zip(ref_finals, weights[1:]))
    want = torch.autograd.grad(ref_loss, leaves64 + list(fast.parameters()))
    for i, (a, e) in enumerate(zip(got, want)):
        torch.testing.assert_close(a.double(), e, atol=1e-3, rtol=1e-3,
                                   msg=lambda m: f"gradient {i}: {m}")
