"""fastrnn: fused LSTM, GRU and Elman RNN kernels for PyTorch, as drop-in torch.nn layers."""
from ._build_check import check_build

check_build()  # before loading the extension: a clear error for a missing or mismatched build

import torch  # noqa: E402

from . import _ops  # noqa: E402
from .modules import GRU, LSTM, RNN, convert, to_torch  # noqa: E402

torch.ops.fastrnn.cpu_cache_stats()  # a bad FASTRNN_CPU_CACHE_MB is an error here, not later

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


def cpu_cache_info():
    """fastrnn's CPU buffer cache: large buffers (1 MB or more: outputs, saved gates,
    gradients) go back to it when their last tensor is freed, and the next call of the same
    shapes reuses them, already in memory, instead of paying the page faults of fresh memory
    again. Returns ``{'limit_bytes', 'cached_bytes', 'hits', 'misses'}``: at most
    ``limit_bytes`` of free buffers are kept (``FASTRNN_CPU_CACHE_MB``, default 1024; 0 turns
    the cache off), ``cached_bytes`` are kept now.

    >>> import fastrnn
    >>> sorted(fastrnn.cpu_cache_info())
    ['cached_bytes', 'hits', 'limit_bytes', 'misses']
    """
    limit, cached, hits, misses = torch.ops.fastrnn.cpu_cache_stats()
    return {"limit_bytes": limit, "cached_bytes": cached, "hits": hits, "misses": misses}


def set_cpu_cache_limit(limit_bytes: int):
    """Keep at most ``limit_bytes`` of free CPU buffers (0: none), releasing the least
    recently freed ones over it now. Overrides ``FASTRNN_CPU_CACHE_MB``."""
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
        raise ValueError(f"set_cpu_cache_limit: limit_bytes must be an int >= 0, "
                         f"got {limit_bytes!r}")
    torch.ops.fastrnn.cpu_cache_set_limit(limit_bytes)


def empty_cache():
    """Release the free CPU buffers fastrnn keeps (see cpu_cache_info); buffers still held
    by tensors are released when those are freed, as usual."""
    torch.ops.fastrnn.cpu_cache_release()


__all__ = ["LSTM", "GRU", "RNN", "convert", "to_torch", "build_info", "cpu_cache_info",
           "set_cpu_cache_limit", "empty_cache"]
