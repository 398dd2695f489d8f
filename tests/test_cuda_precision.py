"""float16 and bfloat16 through the CUDA back-end: fastrnn's error against the float64
reference is bounded by twice torch.nn's own error at that precision (cuDNN's on a GPU; under
FASTRNN_EMULATE_CUDA=1 torch's CPU layers, or their bfloat16 where a cell has no float16)
plus a small atol (the flash-attention habit)."""
import pytest
import torch

import fastrnn
from helpers import EMULATED_CUDA, KINDS, make_pair
from fastrnn.testing import reference_rnn

ON_GPU = torch.cuda.is_available() and fastrnn.build_info()["cuda"]
DEVICE = "cuda" if ON_GPU else "cpu"  # the CPU runs the CUDA back-end when emulated
pytestmark = pytest.mark.skipif(
    not (ON_GPU or EMULATED_CUDA),
    reason="needs a GPU and fastrnn's CUDA kernels, or FASTRNN_EMULATE_CUDA=1")

ATOL = {torch.float16: 2e-3, torch.bfloat16: 2e-2}


def output_and_input_grad(module, x):
    x = x.detach().requires_grad_()
    out, _ = module(x)
    torch.manual_seed(7)
    grad = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, grad)
    return out.double(), dx.double()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", list(KINDS))
def test_low_precision_within_twice_torch_error(kind, dtype):
    reference, fast = make_pair(kind, 16, 32, DEVICE, torch.float64, num_layers=2,
                                bidirectional=True)
    x = torch.randn(20, 4, 16, device=DEVICE, dtype=torch.float64)
    exact_out, exact_dx = output_and_input_grad(fast, x)
    try:
        cudnn_out, cudnn_dx = output_and_input_grad(reference.to(dtype), x.to(dtype))
    except RuntimeError:  # no such torch.nn kernel on the CPU: its bfloat16 bounds it
        reference = make_pair(kind, 16, 32, DEVICE, torch.float64, num_layers=2,
                              bidirectional=True)[0].to(torch.bfloat16)
        cudnn_out, cudnn_dx = output_and_input_grad(reference, x.to(torch.bfloat16))
    fast_out, fast_dx = output_and_input_grad(fast.to(dtype), x.to(dtype))
    for name, got, base, exact in (("output", fast_out, cudnn_out, exact_out),
                                   ("input gradient", fast_dx, cudnn_dx, exact_dx)):
        fast_err = (got - exact).abs().max().item()
        cudnn_err = (base - exact).abs().max().item()
        assert fast_err <= 2 * cudnn_err + ATOL[dtype], (name, fast_err, cudnn_err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_reset_before_gru(dtype):
    torch.manual_seed(0)
    gru = fastrnn.GRU(16, 32, num_layers=2, reset_after=False, device=DEVICE,
                      dtype=torch.float64)
    x = torch.randn(20, 4, 16, device=DEVICE, dtype=torch.float64)
    exact = reference_rnn(gru, x)[0]
    got = gru.to(dtype)(x.to(dtype))[0].double()
    assert (got - exact).abs().max().item() <= 10 * ATOL[dtype]


def test_gradcheck_whole_layer_float64():
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, device=DEVICE,
                        dtype=torch.float64)
    x = torch.randn(5, 2, 3, device=DEVICE, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: lstm(inp)[0], (x,))


@pytest.mark.skipif(not ON_GPU, reason="CUDA autocast needs a GPU")
def test_autocast_runs_in_the_autocast_dtype():
    torch.manual_seed(0)
    gru = fastrnn.GRU(8, 16, device="cuda")
    x = torch.randn(5, 2, 8, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, h = gru(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert gru.weight_hh_l0.grad.dtype == torch.float32 and x.grad is not None
