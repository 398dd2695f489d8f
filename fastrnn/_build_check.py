"""Checks, before the compiled extension is loaded, that it exists and matches what it runs
on: the torch it was compiled against and the CPU's SIMD level (the CPU kernels are compiled
for the building machine's). A mismatch is an ImportError that says how to rebuild, not a
crash, an undefined symbol or an illegal instruction."""
import glob
import os

import torch

REBUILD = ("rebuild it against the torch you have: pip install --no-build-isolation "
           "--force-reinstall --no-deps <fastrnn source folder> (or, in a source checkout, "
           "pip install --no-build-isolation -e .)")
# The CPU flags code compiled for each of fastrnn's SIMD levels needs (setup.py's flags).
NEEDS = {"avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"},
         "avx2": {"avx2", "fma"}, "off": set()}


def cpu_flags():
    """This CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration, IndexError):
        return None


def check_build():
    here = os.path.dirname(os.path.abspath(__file__))
    if not glob.glob(os.path.join(here, "_C.*")):
        raise ImportError(
            f"fastrnn's compiled extension (fastrnn/_C) is missing in {here}: this is a source "
            "folder that was never built. Build it with: pip install --no-build-isolation -e . "
            "(from the source folder, with torch installed first), or install fastrnn with pip.")
    try:
        from . import _build_record as record
    except ImportError:
        return  # built by other means (CMake): nothing recorded to compare
    if record.TORCH_VERSION != torch.__version__:
        raise ImportError(
            f"fastrnn was compiled against torch {record.TORCH_VERSION} but torch "
            f"{torch.__version__} is installed; {REBUILD}")
    if record.CUDA_VERSION is not None and torch.version.cuda != record.CUDA_VERSION:
        raise ImportError(
            f"fastrnn's CUDA kernels were compiled against CUDA {record.CUDA_VERSION} but this "
            f"torch has CUDA {torch.version.cuda}; {REBUILD}")
    flags = cpu_flags()
    missing = sorted(NEEDS.get(record.SIMD, set()) - flags) if flags is not None else []
    if missing:
        raise ImportError(
            f"fastrnn's CPU kernels were compiled for {record.SIMD.upper()}, and this CPU "
            f"lacks {', '.join(missing)}: build it on this machine, or build a portable one "
            f"with FASTRNN_SIMD=avx2 (or off): {REBUILD}")
