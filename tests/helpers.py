"""What the tests share: the devices to run on, tolerances, the layer kinds and helpers to
build a torch.nn layer and a fastrnn layer holding the same weights."""
import os

import pytest
import torch

import fastrnn

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and fastrnn.build_info()["cuda"]
                     else [])
# FASTRNN_TEST_DEVICES=cpu,cuda collects the CUDA variants on a machine without a GPU, to
# rehearse a device run's selection (`pytest --collect-only`); running them needs the GPU.
if os.environ.get("FASTRNN_TEST_DEVICES"):
    DEVICES = os.environ["FASTRNN_TEST_DEVICES"].split(",")

# FASTRNN_EMULATE_CUDA=1: CPU tensors run the CUDA back-end's kernels and cuBLAS calls
# through their emulation (csrc/cuda_emu/), so the whole suite tests the CUDA code.
EMULATED_CUDA = fastrnn.build_info()["cuda_emulated"]


def runs_cuda_kernels(device):
    """Whether tensors on `device` run the CUDA back-end: a GPU's, or the CPU's when the
    CUDA back-end is emulated."""
    return device == "cuda" or (device == "cpu" and EMULATED_CUDA)


# Tests of what only the CPU back-end does (its routing, its own products): the emulation
# replaces that back-end, so they have nothing to check there.
cpu_backend_only = pytest.mark.skipif(
    EMULATED_CUDA, reason="checks the CPU back-end, which FASTRNN_EMULATE_CUDA=1 replaces")

# Tolerances against torch.nn on the same device. float64 differs from torch only by the
# order of summation; float32 by that, compounded over a few steps and layers (on CUDA
# also by cuBLAS's choice of algorithm).
TOLERANCES = {("cpu", torch.float64): dict(atol=1e-10, rtol=1e-8),
              ("cpu", torch.float32): dict(atol=2e-5, rtol=1e-4),
              ("cuda", torch.float64): dict(atol=1e-9, rtol=1e-7),
              ("cuda", torch.float32): dict(atol=1e-4, rtol=1e-3)}

# (constructor of the torch.nn layer, of the fastrnn layer, extra keyword arguments)
KINDS = {
    "lstm": (torch.nn.LSTM, fastrnn.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, fastrnn.LSTM, {"proj_size": 3}),
    "gru": (torch.nn.GRU, fastrnn.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, fastrnn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, fastrnn.RNN, {"nonlinearity": "relu"}),
}


def make_pair(kind, input_size, hidden_size, device="cpu", dtype=torch.float64, seed=0,
              **kwargs):
    """A torch.nn layer and a fastrnn layer holding the same weights."""
    torch_cls, fast_cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    reference = torch_cls(input_size, hidden_size, device=device, dtype=dtype,
                          **{**extra, **kwargs})
    fast = fast_cls(input_size, hidden_size, device=device, dtype=dtype, **{**extra, **kwargs})
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def random_state(module, batch, device, dtype, unbatched=False):
    """A random initial state (requires grad) shaped as the module expects."""
    D = 2 if module.bidirectional else 1
    P = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    lead = (module.num_layers * D,) + (() if unbatched else (batch,))
    h0 = torch.randn(lead + (P,), device=device, dtype=dtype, requires_grad=True)
    if module.mode != "LSTM":
        return h0
    c0 = torch.randn(lead + (module.hidden_size,), device=device, dtype=dtype,
                     requires_grad=True)
    return (h0, c0)


def flat_state(state):
    return list(state) if isinstance(state, tuple) else [state]


def assert_close(actual, expected, dtype, what):
    tolerance = TOLERANCES[(actual.device.type, dtype)]
    torch.testing.assert_close(actual, expected, **tolerance, msg=lambda m: f"{what}: {m}")
