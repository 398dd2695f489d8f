"""The CUDA back-end's emulation (FASTRNN_EMULATE_CUDA=1, csrc/cuda_emu/): that it is
selected by the environment and nothing else, that the layers really run it, and what only
it can show: each launch's threads run in forward, reverse and shuffled order give the same
bits (a thread that reads another's write would not), and torch's TF32 setting reaches the
cuBLAS calls. The rest of the suite, run under the variable, is the CUDA code's conformance."""
import os
import subprocess
import sys

import pytest
import torch

import fastrnn
from fastrnn._ops import ops
from helpers import EMULATED_CUDA, KINDS, make_pair
from test_ops import CASES, forward_args, forward_op

emulated_only = pytest.mark.skipif(
    not EMULATED_CUDA, reason="runs under FASTRNN_EMULATE_CUDA=1 (pytest tests with it set)")


def run_python(code, **env):
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=300)


@pytest.mark.slow
def test_the_environment_selects_the_emulation():
    code = ("import torch, fastrnn\n"
            "before = torch.ops.fastrnn.emulated_cuda_counters()\n"
            "fastrnn.LSTM(3, 4)(torch.randn(2, 1, 3))[0].sum()\n"
            "after = torch.ops.fastrnn.emulated_cuda_counters()\n"
            "print(fastrnn.build_info()['cuda_emulated'], after[0] > before[0],"
            " after[2] > before[2])\n")
    on = run_python(code, FASTRNN_EMULATE_CUDA="1")
    assert on.returncode == 0, on.stderr
    assert on.stdout.split() == ["True", "True", "True"]  # launches and cuBLAS calls ran
    off = run_python(code, FASTRNN_EMULATE_CUDA="0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["False", "False", "False"]  # the CPU back-end: none
    for name, value in (("FASTRNN_EMULATE_CUDA", "yes"), ("FASTRNN_EMULATE_CUDA_ORDER", "up")):
        bad = run_python("import fastrnn", **{name: value})
        assert bad.returncode != 0 and f"{name}={value!r}: expected one of" in bad.stderr


def test_default_runs_the_cpu_backend():
    if os.environ.get("FASTRNN_EMULATE_CUDA", "") in ("", "0"):
        assert fastrnn.build_info()["cuda_emulated"] is False


@emulated_only
@pytest.mark.parametrize("kind", list(KINDS) + ["gru_reset_before"])
def test_layers_run_the_emulated_kernels(kind):
    """No layer routes around the emulation: its forward and backward launch the CUDA
    kernels and call cuBLAS (and the CPU back-end's own products are not used)."""
    if kind == "gru_reset_before":
        layer = fastrnn.GRU(5, 6, num_layers=2, bidirectional=True, reset_after=False)
    else:
        layer = make_pair(kind, 5, 6, dtype=torch.float32, num_layers=2, bidirectional=True)[1]
    x = torch.randn(4, 3, 5, requires_grad=True)
    before = ops.emulated_cuda_counters()
    with torch.no_grad():
        layer(x)
    inference = ops.emulated_cuda_counters()
    layer(x)[0].sum().backward()
    training = ops.emulated_cuda_counters()
    # per layer and direction at least a launch and a GEMM per step (T=4, 2 layers x 2)
    assert inference[0] - before[0] >= 16 and inference[2] - before[2] >= 16
    assert training[0] - inference[0] >= 32 and training[2] - inference[2] >= 32


def _walk(cell, options, reverse, lengths):
    """Every output of one operator's forward (saving) and of its backward."""
    args = forward_args(cell, options, "cpu", reverse, lengths, dtype=torch.float32)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    outputs = forward_op(cell)(*args)
    n_out = {"lstm": 3, "gru": 2, "rnn": 2}[cell]
    torch.manual_seed(3)
    grads = [torch.randn_like(o) for o in outputs[:n_out]]
    grads_in = torch.autograd.grad(outputs[:n_out], inputs, grads)
    return [o.detach() for o in outputs] + list(grads_in)


@emulated_only
@pytest.mark.parametrize("cell,options", CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [False, "unsorted"])
def test_thread_orders_give_the_same_bits(cell, options, reverse, lengths):
    """Each kernel's threads are independent: run in reverse or shuffled order, every output
    and gradient is bit for bit the forward order's."""
    try:
        ops.emulated_cuda_thread_order("forward")
        want = _walk(cell, options, reverse, lengths)
        for order in ("reverse", "shuffled"):
            ops.emulated_cuda_thread_order(order)
            got = _walk(cell, options, reverse, lengths)
            for i, (g, w) in enumerate(zip(got, want)):
                assert torch.equal(g, w), f"output {i} differs in {order} order"
    finally:
        ops.emulated_cuda_thread_order("forward")


@emulated_only
def test_thread_order_names_are_checked():
    with pytest.raises(RuntimeError, match="order must be 'forward', 'reverse' or 'shuffled'"):
        ops.emulated_cuda_thread_order("sideways")


@emulated_only
def test_tf32_setting_reaches_cublas():
    """torch.backends.cuda.matmul.allow_tf32 makes CudaDevice::gemm ask cuBLAS for TF32
    (inputs rounded to 10 mantissa bits), as torch's own CUDA matmuls do."""
    torch.manual_seed(0)
    reference, layer = make_pair("lstm", 16, 32, dtype=torch.float32)
    x = torch.randn(6, 2, 16)
    exact = reference.double()(x.double())[0]
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        full = layer(x)[0].double()
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = layer(x)[0].double()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    full_err = (full - exact).abs().max().item()
    tf32_err = (tf32 - exact).abs().max().item()
    assert full_err < 1e-5 and 1e-5 < tf32_err < 1e-2, (full_err, tf32_err)
