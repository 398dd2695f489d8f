"""Builds fastrnn._C: the CPU kernels always, the CUDA kernels when torch has CUDA and nvcc
is found (set FASTRNN_CPU_ONLY=1 to skip them). Install without build isolation so that the
extension compiles against the torch already installed:

    pip install --no-build-isolation .
"""
import glob
import os
import platform

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def cpu_supports(*flags):
    """True when this machine's CPU lists every flag in /proc/cpuinfo (Linux x86)."""
    try:
        with open("/proc/cpuinfo") as f:
            present = set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return all(flag in present for flag in flags)


def cxx_flags():
    flags = ["-O3", "-Wno-unknown-pragmas", "-Wno-psabi"]  # torch picks the C++ standard
    # The kernels compile on the machine that runs them, so use its SIMD width: ATen's
    # Vectorized<float> then maps tanh/exp to SLEEF's AVX2 routines (exported by libtorch).
    want_simd = os.environ.get("FASTRNN_SIMD", "auto")
    if platform.machine() in ("x86_64", "AMD64") and want_simd != "off":
        if want_simd == "avx2" or (want_simd == "auto" and cpu_supports("avx2", "fma")):
            flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    return flags


def want_cuda():
    if os.environ.get("FASTRNN_CPU_ONLY", "0") == "1":
        return False
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def extension():
    sources = ["csrc/python_module.cpp", "csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
    kwargs = dict(
        name="fastrnn._C",
        sources=sources,
        extra_compile_args={"cxx": cxx_flags()},
        include_dirs=[os.path.join(ROOT, "csrc")],
    )
    if cuda_sources and want_cuda():
        kwargs["sources"] = sources + cuda_sources
        kwargs["extra_compile_args"]["nvcc"] = ["-O3", "--use_fast_math"]
        kwargs["define_macros"] = [("FASTRNN_WITH_CUDA", None)]
        return cpp_extension.CUDAExtension(**kwargs)
    return cpp_extension.CppExtension(**kwargs)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
