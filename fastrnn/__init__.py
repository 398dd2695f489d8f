"""fastrnn: fused LSTM, GRU and Elman RNN kernels for PyTorch, as drop-in torch.nn layers."""
from ._build_check import check_build

check_build()  # before loading the extension: a clear error for a missing or mismatched build

import torch  # noqa: E402

from . import _ops  # noqa: E402
from .modules import GRU, LSTM, RNN, convert, to_torch  # noqa: E402

__version__ = "0.1.0"


def build_info():
    """Which backends this build of fastrnn holds kernels for, and the SIMD level its CPU
    kernels run at here, e.g. ``{'cpu': True, 'cuda': False, 'cpu_simd': 'avx512'}`` (a
    CPU-only build on an AVX-512 processor). A device without kernels runs torch.nn's
    implementation. The level ('avx512', 'avx2' or 'portable') is the one torch runs its
    own CPU kernels at: ``ATEN_CPU_CAPABILITY=avx2`` (or ``default``), set before torch is
    imported, lowers both.

    >>> import fastrnn
    >>> fastrnn.build_info()["cpu"]
    True
    """
    return {"cpu": _ops.has_kernel("cpu"), "cuda": _ops.has_kernel("cuda"),
            "cpu_simd": torch.ops.fastrnn.cpu_simd_level()}


__all__ = ["LSTM", "GRU", "RNN", "convert", "to_torch", "build_info"]
