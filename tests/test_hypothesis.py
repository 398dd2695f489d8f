"""Random shapes and options, fastrnn against torch.nn in float64."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import DEVICES, KINDS, assert_close, flat_state, make_pair, random_state


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(KINDS)), T=st.integers(1, 9), B=st.integers(1, 5),
       I=st.integers(1, 7), H=st.integers(4, 19), num_layers=st.integers(1, 3),
       bidirectional=st.booleans(), batch_first=st.booleans(), bias=st.booleans(),
       with_state=st.booleans(), seed=st.integers(0, 2**16))
def test_random_configurations(device, kind, T, B, I, H, num_layers, bidirectional,
                               batch_first, bias, with_state, seed):
    reference, fast = make_pair(kind, I, H, device=device, num_layers=num_layers, seed=seed,
                                bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), device=device,
                    dtype=torch.float64, requires_grad=True)
    state = random_state(reference, B, device, torch.float64) if with_state else None
    ref_out, ref_final = reference(x, state)
    out, final = fast(x, state)
    assert_close(out, ref_out, torch.float64, "output")
    for a, e in zip(flat_state(final), flat_state(ref_final)):
        assert_close(a, e, torch.float64, "final state")
    leaves = [x] + list(fast.parameters())
    got = torch.autograd.grad(out.sum() + sum(f.sum() for f in flat_state(final)), leaves)
    ref_leaves = [x] + list(reference.parameters())
    want = torch.autograd.grad(ref_out.sum() + sum(f.sum() for f in flat_state(ref_final)),
                               ref_leaves)
    for a, e in zip(got, want):
        assert_close(a, e, torch.float64, "gradient")
