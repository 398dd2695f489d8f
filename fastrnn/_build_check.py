"""Checks, before the compiled extension is loaded, that it exists and matches the torch (and
CUDA) it was compiled against. A mismatch is an ImportError that says how to rebuild, not a
crash or an undefined symbol. (The CPU's SIMD level needs no check: the CPU kernels are
compiled for every level and the extension picks one when it loads.)"""
import glob
import os

import torch

REBUILD = ("rebuild it against the torch you have: pip install --no-build-isolation "
           "--force-reinstall --no-deps <fastrnn source folder> (or, in a source checkout, "
           "pip install --no-build-isolation -e .)")


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
