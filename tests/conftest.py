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


def pytest_report_header(config):
    return f"fastrnn: {fastrnn.build_info()}"  # the CPU kernels' SIMD level among it
