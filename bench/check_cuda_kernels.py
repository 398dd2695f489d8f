"""Static checks of fastrnn's compiled CUDA kernels, no GPU needed.

Reads the kernels' resource usage from the built extension with ``cuobjdump
--dump-resource-usage`` and fails on any kernel with a stack frame or local memory (where
register spills would go: a point-wise kernel that spills has gone wrong), prints each
kernel's registers per architecture, and checks what the library holds: machine code for
every architecture it names and the PTX of the newest one, which the driver compiles for
any newer GPU (Blackwell's sm_100 and sm_120 among them) instead of failing with "no kernel
image is available". Exit status 0 when all hold, 1 otherwise, 2 when it cannot check.

    python bench/check_cuda_kernels.py [path/to/_C.so]

cuobjdump comes with a full CUDA toolkit, or from PyPI: ``pip install nvidia-cuda-cuobjdump``.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The kernels each architecture must hold: 15 kernel templates (LSTM 4, GRU 6, Elman RNN
# 5 with tanh and relu apart, the output-gradient kernel among them) for 4 type pairs.
KERNELS_PER_ARCH = 60


def find_cuobjdump():
    candidates = [shutil.which("cuobjdump")]
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            candidates.append(os.path.join(home, "bin", "cuobjdump"))
    for site in sys.path:  # the PyPI package: nvidia/cu*/bin/cuobjdump
        candidates += glob.glob(os.path.join(site, "nvidia", "*", "bin", "cuobjdump"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_extension():
    found = sorted(glob.glob(os.path.join(ROOT, "fastrnn", "_C*.so")))
    if found:
        return found[0]
    import fastrnn._C  # an installed build
    return fastrnn._C.__file__


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.splitlines()
        return out if len(out) == len(names) else names
    except (OSError, subprocess.CalledProcessError):
        return names


def short_name(demangled):
    """'void fastrnn::cuda::gpu::(anonymous namespace)::lstm_forward_kernel<float, float>(...)'
    -> 'lstm_forward_kernel<float, float>'"""
    name = demangled.replace("(anonymous namespace)::", "").split("(")[0].split("::")[-1]
    return name.replace("__nv_bfloat16", "bf16").replace("__half", "half")


def resource_usage(cuobjdump, library):
    """{arch: {mangled kernel: {REG, STACK, SHARED, LOCAL}}} from the library's cubins."""
    text = subprocess.run([cuobjdump, "--dump-resource-usage", library], capture_output=True,
                          text=True, check=True).stdout
    usage = defaultdict(dict)
    arch, kernel = None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.startswith("Function "):
            kernel = line[len("Function "):].rstrip(":")
        elif kernel and line.startswith("REG:"):
            fields = dict(re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line))
            usage[arch][kernel] = {k: int(fields.get(k, 0))
                                   for k in ("REG", "STACK", "SHARED", "LOCAL")}
            kernel = None
    return usage


def listed(cuobjdump, library, what):
    out = subprocess.run([cuobjdump, f"--list-{what}", library], capture_output=True,
                         text=True).stdout
    return sorted(set(re.findall(r"\.(sm_\d+a?)\.(?:cubin|ptx)", out)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", nargs="?", help="the built extension (default: fastrnn/_C*.so)")
    args = parser.parse_args(argv)
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        print("check_cuda_kernels: cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
        return 2
    library = args.library or find_extension()
    usage = resource_usage(cuobjdump, library)
    if not usage:
        print(f"check_cuda_kernels: {library} holds no CUDA kernels (a CPU-only build)")
        return 2
    failures = []
    archs = sorted(usage)
    names = sorted(set().union(*[set(k) for k in usage.values()]))
    readable = dict(zip(names, demangle(names)))
    names.sort(key=lambda n: short_name(readable[n]))
    print(f"{library}\n{'kernel':<52}" + "".join(f"{a:>16}" for a in archs))
    for name in names:
        cells = []
        for arch in archs:
            u = usage[arch].get(name)
            if u is None:
                cells.append("missing")
                failures.append(f"{readable[name]}: no {arch} code")
                continue
            cells.append(f"{u['REG']} reg" + (f" {u['STACK']}B stack" if u["STACK"] else "")
                         + (f" {u['LOCAL']}B local" if u["LOCAL"] else ""))
            if u["STACK"] or u["LOCAL"]:
                failures.append(f"{readable[name]} on {arch}: stack {u['STACK']} B, local "
                                f"{u['LOCAL']} B (spills or local arrays)")
        print(f"{short_name(readable[name]):<52}" + "".join(f"{c:>16}" for c in cells))
    for arch in archs:
        if len(usage[arch]) != KERNELS_PER_ARCH:
            failures.append(f"{arch}: {len(usage[arch])} kernels, expected {KERNELS_PER_ARCH}")
    machine_code, ptx = listed(cuobjdump, library, "elf"), listed(cuobjdump, library, "ptx")
    print(f"machine code for {', '.join(machine_code) or 'nothing'}; "
          f"PTX for {', '.join(ptx) or 'nothing'}")
    newest = max(machine_code, key=lambda a: int(re.sub(r"\D", "", a)), default=None)
    if not ptx:
        failures.append("no PTX embedded: GPUs newer than "
                        f"{newest} would find no kernel image")
    elif newest and max(int(re.sub(r"\D", "", a)) for a in ptx) < int(re.sub(r"\D", "", newest)):
        failures.append(f"the PTX ({', '.join(ptx)}) is older than the newest machine code "
                        f"({newest})")
    print(f"{len(names)} kernels on {len(archs)} architectures checked: "
          f"{'no stack, no local memory' if not failures else f'{len(failures)} problems'}")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
