"""fastrnn: fused LSTM, GRU and Elman RNN kernels for PyTorch, as drop-in torch.nn layers."""
from ._build_check import check_build

check_build()  # before loading the extension: a clear error for a missing or mismatched build

from . import _ops  # noqa: E402
from .modules import GRU, LSTM, RNN, convert, to_torch  # noqa: E402

__version__ = "0.1.0"


def build_info():
    """Which backends this build of fastrnn holds kernels for, e.g.
    ``{'cpu': True, 'cuda': False}`` (a CPU-only build). A device without kernels runs
    torch.nn's implementation.

    >>> import fastrnn
    >>> fastrnn.build_info()["cpu"]
    True
    """
    return {"cpu": _ops.has_kernel("cpu"), "cuda": _ops.has_kernel("cuda")}


__all__ = ["LSTM", "GRU", "RNN", "convert", "to_torch", "build_info"]
