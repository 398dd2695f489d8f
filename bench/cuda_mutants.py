"""Planted bugs in the CUDA back-end, one at a time, each of which the emulated tests or the
sanitizer harness must catch: a bug they let through means a test is missing.

Copies the working tree (tracked and new files) to a scratch folder, builds it there once
(the Python extension without its GPU part, and the C++ sanitizer harness), checks that the
unchanged copy passes, then for each planted bug: edits one line of the copy's csrc/cuda/,
rebuilds what depends on it, runs the harness (tests/cpp/test_cuda_emulation.cpp) and the
emulated tests (FASTRNN_EMULATE_CUDA=1, the operator, conformance, reference,
low-precision and regularisation files, stopping at the first failure), and restores the line. Writes a table
of what caught each bug to bench/results/cuda-mutants.md.

    python bench/cuda_mutants.py [--only NAME ...] [--keep]

Takes 20-40 minutes on two cores (each bug rebuilds one or two translation units).
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file under csrc/cuda/, the original text (once in the file), the planted bug)
MUTANTS = [
    ("row stride", "lstm_kernels.cu",
     "  A* g = a.gates + b * G;\n  const T* x = a.x + b * G;",
     "  A* g = a.gates + b * H;\n  const T* x = a.x + b * G;"),
    ("block count rounded down", "kernel_utils.cuh",
     "return static_cast<unsigned>((n + kThreads - 1) / kThreads);",
     "return static_cast<unsigned>(n / kThreads);"),
    ("the last thread past the end", "kernel_utils.cuh",
     "if (e >= B * width) return false;", "if (e > B * width) return false;"),
    ("a gate out of bounds", "lstm_kernels.cu",
     "  g[3 * H + j] = o;", "  g[4 * H + j] = o;"),
    ("lengths off by one", "rnn_kernels.cu",
     "  if (!LengthMask{a.step.lengths}.active(b, a.step.t)) {\n    a.h_next[e] = a.h_prev[e];",
     "  if (!LengthMask{a.step.lengths}.active(b, a.step.t + 1)) {\n"
     "    a.h_next[e] = a.h_prev[e];"),
    ("a write to a neighbour's element", "rnn_kernels.cu",
     "  a.h_next[e] = h;\n  a.out[e] = h;",
     "  a.h_next[e] = h;\n  a.out[e] = h;\n  if (j + 1 < H) a.out[e + 1] = h;"),
    ("finished rows lose their cell state", "lstm_kernels.cu",
     "    a.c_next[e] = a.c_prev[e];", "    a.c_next[e] = A(0);"),
    ("the projection's length mask dropped", "lstm_kernels.cu",
     "  if (LengthMask{step.lengths}.active(b, step.t)) {\n    if (zoneout_h.on()) {",
     "  if (true) {\n    if (zoneout_h.on()) {"),
    ("the output gradient's length mask dropped", "rnn_kernels.cu",
     "if (LengthMask{step.lengths}.active(b, step.t)) dh[b * width + j] +=",
     "if (true) dh[b * width + j] +="),
    ("a GRU gate's order", "gru_kernels.cu",
     "  g[j] = r;\n  g[H + j] = z;\n  g[2 * H + j] = n;",
     "  g[j] = z;\n  g[H + j] = r;\n  g[2 * H + j] = n;"),
    ("a bias read from the wrong gate", "gru_kernels.cu",
     "const A hh_n = g[2 * H + j] + load_or_zero<T, A>(a.bias, 2 * H + j);",
     "const A hh_n = g[2 * H + j] + load_or_zero<T, A>(a.bias, H + j);"),
    ("a backward formula's term", "gru_kernels.cu",
     "  a.dhh_n[e] = from_acc<T>(dhh_n);\n  a.dh[e] = dh_direct;",
     "  a.dhh_n[e] = from_acc<T>(dhh_n);\n  a.dh[e] += dh_direct;"),
    ("a transpose", "device.h",
     "handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,",
     "handle, trans_b ? CUBLAS_OP_N : CUBLAS_OP_T,"),
    ("m and n swapped", "device.h",
     "static_cast<int>(N), static_cast<int>(M), static_cast<int>(K)",
     "static_cast<int>(M), static_cast<int>(N), static_cast<int>(K)"),
    ("a leading dimension", "device.h",
     "beta_p, c, c_type, static_cast<int>(ldc), compute",
     "beta_p, c, c_type, static_cast<int>(N), compute"),
    ("the C type", "device.h",
     "const cudaDataType_t c_type = c_acc ? (is_double ? CUDA_R_64F : CUDA_R_32F) : "
     "cuda_type<T>();",
     "const cudaDataType_t c_type = cuda_type<T>();"),
    ("TF32 whatever torch's setting", "device.h",
     "} else if (std::is_same_v<T, float> && allow_tf32) {",
     "} else if (std::is_same_v<T, float>) {"),
    ("zoneout's mask read as its complement", "kernel_utils.cuh",
     "return z.mask != nullptr ? A(load(z.mask, e)) : A(z.p);",
     "return z.mask != nullptr ? A(1) - A(load(z.mask, e)) : A(z.p);"),
    ("zoneout's share of the gradient skipped", "gru_kernels.cu",
     "da_r, da_z, dx_n, dhh_n, dh_direct);\n  if (a.zoneout_h.on()) dh_direct += keep * dh;",
     "da_r, da_z, dx_n, dhh_n, dh_direct);"),
    ("the cell sequence's finished rows", "lstm_kernels.cu",
     "if (a.cells_out != nullptr) a.cells_out[e] = zero<T>();",
     "if (a.cells_out != nullptr) a.cells_out[e] = from_acc<T>(a.c_prev[e]);"),
]

TESTS = ["tests/test_emulated_cuda.py", "tests/test_ops.py", "tests/test_conformance.py",
         "tests/test_reference.py", "tests/test_cpu_bfloat16.py", "tests/test_cuda_precision.py",
         "tests/test_regularization.py"]


def run(cmd, cwd, env=None, timeout=1800):
    started = time.time()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    return result, time.time() - started


def copy_tree(destination):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        source = os.path.join(ROOT, name)
        if not os.path.isfile(source):
            continue  # deleted in the working tree
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)


class Copy:
    """The scratch copy: its builds and its two checks."""

    def __init__(self, folder, python):
        self.src = os.path.join(folder, "src")
        self.build = os.path.join(folder, "cmake-build")
        self.python = python
        self.env = {**os.environ, "FASTRNN_CPU_ONLY": "1", "MAX_JOBS": "2"}

    def compile(self):
        result, _ = run([self.python, "setup.py", "build_ext", "--inplace"], self.src, self.env)
        if result.returncode != 0:
            return "extension build failed: " + first_error(result.stdout + result.stderr)
        if not os.path.exists(os.path.join(self.build, "build.ninja")):
            result, _ = run(["cmake", "-S", self.src, "-B", self.build, "-G", "Ninja"], self.src)
            if result.returncode != 0:
                return "cmake failed: " + result.stderr[-500:]
        result, _ = run(["cmake", "--build", self.build, "-j2", "--target",
                         "fastrnn_cuda_emulation_test"], self.src)
        if result.returncode != 0:
            return "harness build failed: " + first_error(result.stdout + result.stderr)
        return None

    def harness(self):
        env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0",
               "UBSAN_OPTIONS": "print_stacktrace=1"}
        result, seconds = run([os.path.join(self.build, "fastrnn_cuda_emulation_test")],
                              self.build, env, timeout=600)
        if result.returncode == 0:
            return None, seconds
        text = result.stdout + result.stderr
        asan = re.search(r"AddressSanitizer: ([\w-]+)", text)
        if asan:
            where = re.search(r"#0 0x[0-9a-f]+ in (.+) (\S+:\d+)", text)
            place = f" in {where.group(1)} ({os.path.basename(where.group(2))})" if where else ""
            return f"ASan: {asan.group(1)}{place}", seconds
        ubsan = re.search(r"([\w./]+:\d+:\d+: runtime error: [^\n]+)", text)
        if ubsan:
            return "UBSan: " + ubsan.group(1).split("/")[-1], seconds
        failed = re.findall(r"^FAILED: (.*)$", text, re.M)
        if failed:
            return f"{len(failed)} checks, first: {failed[0][:150]}", seconds
        return "exit status " + str(result.returncode), seconds

    def tests(self):
        env = {**self.env, "FASTRNN_EMULATE_CUDA": "1", "PYTHONPATH": self.src}
        result, seconds = run([self.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-m", "not slow", "-rf", *TESTS], self.src, env)
        if result.returncode == 0:
            return None, seconds
        if result.returncode < 0:  # killed by a signal: the first test that ran into it
            frame = re.search(r'File "[^"]*/(tests/[^"]+)", line \d+ in (test_\w+)',
                              result.stderr)
            return (f"crashed ({signal.Signals(-result.returncode).name})"
                    + (f" in {frame.group(1)}::{frame.group(2)}" if frame else "")), seconds
        failed = re.search(r"^FAILED (\S+)", result.stdout, re.M)
        reason = re.search(r"^E\s+(.+)$", result.stdout, re.M)
        what = failed.group(1) if failed else "pytest exit " + str(result.returncode)
        return what + (f": {reason.group(1)[:110]}" if reason else ""), seconds


def first_error(text):
    match = re.search(r"error: [^\n]+", text)
    return match.group(0)[:200] if match else text[-300:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="names of the bugs to plant (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                      "cuda-mutants.md"))
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or m[0] in args.only]
    folder = tempfile.mkdtemp(prefix="fastrnn-mutants-")
    copy = Copy(folder, sys.executable)
    commit = git_commit()  # what is copied
    copy_tree(copy.src)
    print(f"scratch copy in {folder}; building it", flush=True)
    problem = copy.compile()
    if problem:
        sys.exit(f"the unchanged copy does not build: {problem}")
    where = subprocess.run([sys.executable, "-c", "import fastrnn; print(fastrnn.__file__)"],
                           cwd=copy.src, env={**copy.env, "PYTHONPATH": copy.src},
                           capture_output=True, text=True).stdout.strip()
    if not where.startswith(copy.src):
        sys.exit(f"the tests would import {where or 'no fastrnn'}, not the copy's build")
    for check in (copy.harness, copy.tests):
        caught, _ = check()
        if caught:
            sys.exit(f"the unchanged copy fails its checks: {caught}")
    rows = []
    for name, filename, original, planted in mutants:
        path = os.path.join(copy.src, "csrc", "cuda", filename)
        text = open(path).read()
        if text.count(original) != 1:
            sys.exit(f"{name}: the original text is not once in csrc/cuda/{filename}")
        with open(path, "w") as f:
            f.write(text.replace(original, planted))
        started = time.time()
        problem = copy.compile()
        if problem:
            harness = tests = f"refused to build ({problem})"
        else:
            harness, _ = copy.harness()
            tests, _ = copy.tests()
        with open(path, "w") as f:
            f.write(text)
        rows.append((name, filename, harness, tests))
        verdict = "CAUGHT" if harness or tests else "NOT CAUGHT"
        print(f"{verdict:10} {name} ({time.time() - started:.0f} s)\n"
              f"           harness: {harness or '-'}\n           tests:   {tests or '-'}",
              flush=True)
    write_table(args.out, rows, commit)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    missed = [r[0] for r in rows if not (r[2] or r[3])]
    print(f"{len(rows) - len(missed)} of {len(rows)} planted bugs caught"
          + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


def write_table(path, rows, commit):
    caught = sum(1 for r in rows if r[2] or r[3])
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    field = lambda name: (re.search(rf"^{name}:\s*(.+)$", cpu, re.M) or [None, "?"])[1].strip()
    machine = (f"{os.cpu_count()} cores of an {field('Model name')} (family "
               f"{field('CPU family')}, model {field('Model')})" if cpu else platform.machine())
    with open(path, "w") as f:
        f.write(f"# Planted bugs in the CUDA back-end ({datetime.date.today()})\n\n"
                f"`python bench/cuda_mutants.py` on {machine}"
                f" (commit {commit}): {caught} of {len(rows)} caught. Each bug is one edit\n"
                "of a copy of `csrc/cuda/`; *harness* is the sanitizer harness\n"
                "(`tests/cpp/test_cuda_emulation.cpp` under ASan and UBSan), *tests* the first\n"
                "failing emulated test (`FASTRNN_EMULATE_CUDA=1 pytest -x` over the operator,\n"
                "conformance, reference, low-precision and regularisation files). The\n"
                "harness looks for memory errors, unwritten outputs, dependence on the\n"
                "thread order and drift from float64, not for wrong mathematics: that is\n"
                "the tests' part.\n\n"
                "| planted bug | file | harness | tests |\n|---|---|---|---|\n")
        for name, filename, harness, tests in rows:
            cell = lambda s: (s or "passed (not caught here)").replace("|", "\\|")
            f.write(f"| {name} | {filename} | {cell(harness)} | {cell(tests)} |\n")


def git_commit():
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "csrc", "tests"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
