"""Builds fastrnn._C: the CPU kernels always, the CUDA kernels when torch has CUDA and nvcc
is found (set FASTRNN_CPU_ONLY=1 to skip them; DEBUG=1 builds without optimisation, with
debug information and assertions). Install without build isolation so that the
extension compiles against the torch already installed:

    pip install --no-build-isolation .
"""
import glob
import os
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


CUDA_HOME = find_cuda_home()
if CUDA_HOME and "CUDA_HOME" not in os.environ:
    os.environ["CUDA_HOME"] = CUDA_HOME  # read by torch.utils.cpp_extension on import

NO_ISOLATION = (
    "fastrnn compiles against the torch you have installed, so it must be built without "
    "pip's build isolation. Install torch first, then run:\n"
    "    pip install --no-build-isolation .        (or -e . for a source checkout)")
try:
    import torch  # noqa: E402
except ImportError:  # pip's isolated build environment holds no torch (pyproject.toml)
    raise SystemExit(NO_ISOLATION)
if "pip-build-env" in torch.__file__:
    # an isolated environment given a torch anyway: the extension would be compiled against
    # it (and link CUDA libraries from a folder pip deletes) and fail beside the user's torch
    raise SystemExit(NO_ISOLATION)
from torch.utils import cpp_extension  # noqa: E402

DEBUG = os.environ.get("DEBUG", "0") == "1"  # DEBUG=1: -O0 -g, assertions on

def cxx_flags():
    # torch picks the C++ standard; -fopenmp makes at::parallel_for run in parallel (it is a
    # header-only OpenMP loop) on the libgomp torch itself loads.
    optimise = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3"]
    # No SIMD flags: the whole library is compiled for the baseline processor, and the CPU
    # kernels once more per SIMD level (csrc/cpu/kernels_<level>.cpp switch their
    # instructions on themselves); the level is chosen at run time.
    return optimise + ["-fopenmp", "-Wno-unknown-pragmas", "-Wno-psabi"]


def want_cuda():
    if os.environ.get("FASTRNN_CPU_ONLY", "0") == "1":
        return False
    return torch.version.cuda is not None and CUDA_HOME is not None


def nvidia_package_dirs(subdir):
    """Folders of torch's pip-installed NVIDIA packages (nvidia/*/include or */lib)."""
    site = os.path.dirname(os.path.dirname(torch.__file__))
    return sorted(glob.glob(os.path.join(site, "nvidia", "*", subdir)))


def cuda_build_settings():
    """Include and link settings for cuBLAS and the CUDA runtime.

    A pip-installed CUDA torch brings cuBLAS (headers and libcublas.so.N) in its nvidia
    packages, and a bare nvcc install may hold neither the cuBLAS headers nor an unversioned
    libcudart.so. The linker needs unversioned names, so they are made as links in the build
    folder, pointing at the versioned libraries torch itself loads at run time.
    """
    cuda_home = CUDA_HOME
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
    # csrc/*.cpp: the schemas and the device-independent drivers; csrc/cpu: the CPU back-end;
    # csrc/cuda_emu: the CUDA back-end's sources built for the CPU (FASTRNN_EMULATE_CUDA=1)
    sources = (sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
               + sorted(glob.glob("csrc/cuda_emu/*.cpp")))
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
    # fastrnn targets (Ampere and Hopper machine code, and Hopper's PTX, which the driver
    # compiles for any newer GPU: Blackwell's sm_100 and sm_120) unless the user chose.
    # With a GPU visible, torch builds for that GPU.
    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
    include_dirs, library_dirs, rpaths = cuda_build_settings()
    kwargs["sources"] = sources + cuda_sources
    kwargs["include_dirs"] += include_dirs
    kwargs["library_dirs"] = library_dirs
    kwargs["libraries"] = ["cublas"]
    kwargs["extra_link_args"] += [f"-Wl,-rpath,{d}" for d in rpaths]
    # No --use_fast_math: it turns tanhf into an approximation (relative error ~1e-5), far
    # above cuDNN's float32 error, and the memory-bound point-wise kernels gain nothing.
    # ptxas warns of any register spill or local memory (bench/check_cuda_kernels.py fails
    # on them in the built library).
    kwargs["extra_compile_args"]["nvcc"] = (["-O0", "-g", "-lineinfo"] if DEBUG else ["-O3"]) + [
        "-Xptxas=-warn-spills,-warn-lmem-usage"]
    return cpp_extension.CUDAExtension(**kwargs)


def write_build_record(folder, with_cuda):
    """_build_record.py beside the built extension: what it was compiled against, checked at
    import (fastrnn/_build_check.py) so that a mismatch is a clear error, not a crash."""
    with open(os.path.join(folder, "_build_record.py"), "w") as f:
        f.write("# Written by setup.py when fastrnn._C was built; read by _build_check.py.\n")
        f.write(f"TORCH_VERSION = {torch.__version__!r}\n")
        f.write(f"CUDA_VERSION = {torch.version.cuda if with_cuda else None!r}\n")


class BuildExtension(cpp_extension.BuildExtension.with_options(use_ninja=True)):
    """torch's build_ext (ninja), then the build record next to each built extension: in
    the source tree for an in-place (editable) build, in the wheel's folder otherwise."""

    def build_extensions(self):
        super().build_extensions()
        self._write_records()

    def copy_extensions_to_source(self):  # in-place builds: the extension lands in the tree
        super().copy_extensions_to_source()
        self._write_records()

    def _write_records(self):
        for ext in self.extensions:
            folder = os.path.dirname(self.get_ext_fullpath(ext.name))
            write_build_record(folder, any(src.endswith(".cu") for src in ext.sources))


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
