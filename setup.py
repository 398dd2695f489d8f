"""Builds fastrnn._C: the CPU kernels always, the CUDA kernels when torch has CUDA and nvcc
is found (set FASTRNN_CPU_ONLY=1 to skip them). Install without build isolation so that the
extension compiles against the torch already installed:

    pip install --no-build-isolation .
"""
import glob
import os
import platform

import shutil

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def find_cuda_home():
    """The CUDA toolkit folder (the one holding include/cuda_runtime_api.h), or None.

    torch guesses it from nvcc's location, which is wrong when nvcc on the PATH is a wrapper
    script (as in /usr/local/bin here); so look at the usual places first.
    """
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda",
                  nvcc and os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))]
    for folder in candidates:
        if folder and os.path.exists(os.path.join(folder, "include", "cuda_runtime_api.h")):
            return folder
    return None


if "CUDA_HOME" not in os.environ and find_cuda_home():
    os.environ["CUDA_HOME"] = find_cuda_home()  # read by torch.utils.cpp_extension on import

from torch.utils import cpp_extension  # noqa: E402


def cpu_supports(*flags):
    """True when this machine's CPU lists every flag in /proc/cpuinfo (Linux x86)."""
    try:
        with open("/proc/cpuinfo") as f:
            present = set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return all(flag in present for flag in flags)


SIMD_FLAGS = {
    # ATen's Vectorized<float> picks its width from CPU_CAPABILITY_*; tanh/exp then map to
    # SLEEF's routines of that width, which libtorch exports.
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "avx2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
    "off": [],
}


def simd_level():
    """The kernels compile on the machine that runs them, so they use its SIMD width.
    FASTRNN_SIMD=avx512|avx2|off overrides (for a build that must run elsewhere)."""
    wanted = os.environ.get("FASTRNN_SIMD", "auto")
    if wanted != "auto":
        if wanted not in SIMD_FLAGS:
            raise SystemExit(f"FASTRNN_SIMD must be auto, {', '.join(SIMD_FLAGS)}; got {wanted}")
        return wanted
    if platform.machine() not in ("x86_64", "AMD64"):
        return "off"
    if cpu_supports("avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"):
        return "avx512"
    return "avx2" if cpu_supports("avx2", "fma") else "off"


def cxx_flags():
    # torch picks the C++ standard; -fopenmp makes at::parallel_for run in parallel (it is a
    # header-only OpenMP loop) on the libgomp torch itself loads.
    return ["-O3", "-fopenmp", "-Wno-unknown-pragmas", "-Wno-psabi"] + SIMD_FLAGS[simd_level()]


def want_cuda():
    if os.environ.get("FASTRNN_CPU_ONLY", "0") == "1":
        return False
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def nvidia_package_dirs(subdir):
    """Folders of torch's pip-installed NVIDIA packages (nvidia/*/include or */lib)."""
    import torch

    site = os.path.dirname(os.path.dirname(torch.__file__))
    return sorted(glob.glob(os.path.join(site, "nvidia", "*", subdir)))


def cuda_build_settings():
    """Include and link settings for cuBLAS and the CUDA runtime.

    A pip-installed CUDA torch brings cuBLAS (headers and libcublas.so.N) in its nvidia
    packages, and a bare nvcc install may hold neither the cuBLAS headers nor an unversioned
    libcudart.so. The linker needs unversioned names, so they are made as links in the build
    folder, pointing at the versioned libraries torch itself loads at run time.
    """
    cuda_home = cpp_extension.CUDA_HOME
    include_dirs, library_dirs, rpaths = [], [], []
    def link(target, folder, name):
        path = os.path.join(folder, name)
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(target, path)

    # The math-library headers torch's CUDA headers include (cuBLAS, cuSPARSE, cuSOLVER...)
    # may be missing from a bare toolkit: link in just those from torch's nvidia packages
    # (the whole folder would shadow the toolkit's own runtime headers).
    header_dir = os.path.join(ROOT, "build", "cuda-include")
    os.makedirs(header_dir, exist_ok=True)
    toolkit_headers = set(os.listdir(os.path.join(cuda_home, "include")))
    for folder in nvidia_package_dirs("include"):
        for header in glob.glob(os.path.join(folder, "*.h")):
            if os.path.basename(header) not in toolkit_headers:
                link(header, header_dir, os.path.basename(header))
    include_dirs.append(header_dir)
    link_dir = os.path.join(ROOT, "build", "cuda-link")
    os.makedirs(link_dir, exist_ok=True)
    for name in ("cublas", "cudart"):
        if glob.glob(os.path.join(cuda_home, "lib64", f"lib{name}.so")):
            continue
        for lib_dir in nvidia_package_dirs("lib"):
            found = sorted(glob.glob(os.path.join(lib_dir, f"lib{name}.so.*")))
            if found:
                link(found[0], link_dir, f"lib{name}.so")
                rpaths.append(lib_dir)
                break
    library_dirs.append(link_dir)
    return include_dirs, library_dirs, sorted(set(rpaths))


def extension():
    # csrc/*.cpp: the schemas and the device-independent drivers; csrc/cpu: the CPU back-end
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
    kwargs = dict(
        name="fastrnn._C",
        sources=sources,
        extra_compile_args={"cxx": cxx_flags()},
        extra_link_args=["-fopenmp"],
        include_dirs=[os.path.join(ROOT, "csrc")],
    )
    if not (cuda_sources and want_cuda()):
        return cpp_extension.CppExtension(**kwargs)
    # With no GPU visible torch would build for every architecture it knows; name the ones
    # fastrnn targets (Ampere and Hopper) unless the user chose. With a GPU visible, torch
    # builds for that GPU.
    import torch

    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    include_dirs, library_dirs, rpaths = cuda_build_settings()
    kwargs["sources"] = sources + cuda_sources
    kwargs["include_dirs"] += include_dirs
    kwargs["library_dirs"] = library_dirs
    kwargs["libraries"] = ["cublas"]
    kwargs["extra_link_args"] += [f"-Wl,-rpath,{d}" for d in rpaths]
    # No --use_fast_math: it turns tanhf into an approximation (relative error ~1e-5), far
    # above cuDNN's float32 error, and the memory-bound point-wise kernels gain nothing.
    kwargs["extra_compile_args"]["nvcc"] = ["-O3"]
    return cpp_extension.CUDAExtension(**kwargs)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
