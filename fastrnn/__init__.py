"""fastrnn: fused LSTM, GRU and Elman RNN kernels for PyTorch, as drop-in torch.nn layers."""
from ._build_check import check_build

check_build()  # before loading the extension: a clear error for a missing or mismatched build

import torch  # noqa: E402

from . import _ops  # noqa: E402
from .modules import (GRU, LSTM, RNN, IncompatibleTensorError, InvalidShapeError,  # noqa: E402
                      NotAStatePairError, NotATensorError, convert, to_torch)
from .layernorm import LayerNormGRU, LayerNormLSTM  # noqa: E402

torch.ops.fastrnn.cpu_cache_stats()  # a bad FASTRNN_CPU_CACHE_MB is an error here, not later

__version__ = "0.1.0"


def build_info():
    """Which backends this build of fastrnn holds kernels for, and the SIMD level its CPU
    kernels run at here, e.g. ``{'cpu': True, 'cuda': False, 'cpu_simd': 'avx512'}`` (a
    CPU-only build on an AVX-512 processor). A device without kernels runs torch.nn's
    implementation. The level ('avx512', 'avx2' or 'portable') is the one torch runs its
    own CPU kernels at: ``ATEN_CPU_CAPABILITY=avx2`` (or ``default``), set before torch is
    imported, lowers both. ``cpu_bf16_gemm`` says whether this processor multiplies
    bfloat16 natively (AVX512_BF16 or AMX): where it does not, bfloat16 layers on the CPU run
    torch.nn's implementation. ``cuda_emulated`` is True when ``FASTRNN_EMULATE_CUDA=1``
    was set at import: CPU tensors then run the CUDA back-end's kernels and cuBLAS calls
    through their emulation on the CPU (a test of the CUDA code, slow, no GPU needed).

    >>> import fastrnn
    >>> fastrnn.build_info()["cpu"]
    True
    """
    return {"cpu": _ops.has_kernel("cpu"), "cuda": _ops.has_kernel("cuda"),
            "cpu_simd": torch.ops.fastrnn.cpu_simd_level(), "cpu_bf16_gemm": _ops.CPU_BF16_GEMM,
            "cuda_emulated": _ops.EMULATED_CUDA}


def cpu_cache_info():
    """fastrnn's CPU buffer cache: large buffers (1 MB or more: outputs, saved gates,
    gradients) go back to it when their last tensor is freed, and the next call of the same
    shapes reuses them, already in memory, instead of paying the page faults of fresh memory
    again (a fifth to a third of a layer's time on the development machine).

    Returns a dict: ``limit_bytes`` (the most bytes of free buffers kept), ``cached_bytes``
    (kept now), ``in_use_bytes`` (held by tensors now), ``peak_in_use_bytes`` (the most they
    ever held at once), ``hits`` and ``misses`` (allocations served from a kept buffer, and
    those that needed new memory). By default the limit is automatic: twice the peak in
    use (a training step's forward and backward use different buffers), at most a quarter
    of the machine's memory; when new memory is needed, kept buffers are released first
    until kept and in use fit the limit. ``FASTRNN_CPU_CACHE_MB`` or :func:`set_cpu_cache_limit` fix it (0
    turns the cache off); :func:`empty_cache` releases the kept buffers.

    >>> import fastrnn
    >>> sorted(fastrnn.cpu_cache_info())
    ['cached_bytes', 'hits', 'in_use_bytes', 'limit_bytes', 'misses', 'peak_in_use_bytes']
    """
    limit, cached, in_use, peak, hits, misses = torch.ops.fastrnn.cpu_cache_stats()
    return {"limit_bytes": limit, "cached_bytes": cached, "in_use_bytes": in_use,
            "peak_in_use_bytes": peak, "hits": hits, "misses": misses}


def set_cpu_cache_limit(limit_bytes):
    """Keep at most ``limit_bytes`` of free CPU buffers (0: none; ``None``: the automatic
    limit, see :func:`cpu_cache_info`), releasing the least recently freed ones over it now.
    Overrides ``FASTRNN_CPU_CACHE_MB``."""
    if limit_bytes is not None and (isinstance(limit_bytes, bool)
                                    or not isinstance(limit_bytes, int) or limit_bytes < 0):
        raise ValueError(f"set_cpu_cache_limit: limit_bytes must be an int >= 0 or None "
                         f"(automatic), got {limit_bytes!r}")
    torch.ops.fastrnn.cpu_cache_set_limit(limit_bytes)


def empty_cache():
    """Release the free CPU buffers fastrnn keeps (see cpu_cache_info); buffers still held
    by tensors are released when those are freed, as usual."""
    torch.ops.fastrnn.cpu_cache_release()


__all__ = ["LSTM", "GRU", "RNN", "LayerNormLSTM", "LayerNormGRU", "IncompatibleTensorError",
           "InvalidShapeError", "NotATensorError", "NotAStatePairError",
           "convert", "to_torch", "build_info",
           "cpu_cache_info", "set_cpu_cache_limit", "empty_cache"]
