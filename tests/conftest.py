import pytest
import torch

import fastrnn

from helpers import DEVICES

# Compare like with like on the GPU: no TF32 in cuDNN's RNNs or in cuBLAS.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def bf16_kernels(monkeypatch):
    """fastrnn's CPU bf16 kernels and products on every processor: without bf16 GEMM
    instructions the layers prefer torch.nn and F.linear (fastrnn would widen every product
    to float32, slower), but fastrnn's run there too and must be as right."""
    import fastrnn.functional
    monkeypatch.setattr(fastrnn._ops, "CPU_BF16_GEMM", True)
    monkeypatch.setattr(fastrnn.functional, "CPU_BF16_GEMM", True)


def pytest_report_header(config):
    return f"fastrnn: {fastrnn.build_info()}"  # the CPU kernels' SIMD level among it
