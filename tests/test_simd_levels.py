"""The CPU kernels' SIMD levels (csrc/cpu/kernels.h): every level is compiled into the one
library, the level is the one torch runs at (ATEN_CPU_CAPABILITY lowers both), each level
computes the same layers, and no AVX instruction sits where a lower level could run it."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import fastrnn

# torch's capability -> the level fastrnn runs at (the library holds all three on x86-64).
LEVEL_OF_CAPABILITY = {"AVX512": "avx512", "AVX2": "avx2", "DEFAULT": "portable"}
ORDER = ["portable", "avx2", "avx512"]
NATIVE = LEVEL_OF_CAPABILITY.get(torch.backends.cpu.get_cpu_capability(), "portable")
# The levels this processor can run below its own (ATEN_CPU_CAPABILITY names them so).
LOWER = ORDER[:ORDER.index(NATIVE)]
FORCE = {"avx2": "avx2", "portable": "default"}

# Forward and backward of each cell with H = 20 (a SIMD body and a scalar tail), lengths
# (finished rows) and both dtypes; printed as one tensor per line for the parent test.
SCRIPT = r"""
import json, torch, fastrnn
print(fastrnn.build_info()["cpu_simd"])
for kind, cls, extra in [("lstm", fastrnn.LSTM, {}), ("gru", fastrnn.GRU, {}),
                         ("gru_cho", fastrnn.GRU, {"reset_after": False}),
                         ("rnn_relu", fastrnn.RNN, {"nonlinearity": "relu"})]:
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        layer = cls(5, 20, num_layers=2, bidirectional=True, dtype=dtype, **extra)
        x = torch.randn(6, 3, 5, dtype=dtype, requires_grad=True)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, [6, 4, 1], enforce_sorted=False)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(layer(packed)[0])
        out.square().sum().backward()
        for t in [out.detach(), x.grad] + [p.grad for p in layer.parameters()]:
            print(kind, dtype, json.dumps(t.flatten().tolist()))
"""


def run_level(capability=None):
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    level, *lines = done.stdout.splitlines()
    return level, lines


def test_level_is_the_one_torch_runs_at():
    assert fastrnn.build_info()["cpu_simd"] == NATIVE


@pytest.mark.parametrize("level", LOWER)
def test_forced_level_computes_what_the_native_one_does(level):
    native_level, native = run_level()
    forced_level, forced = run_level(FORCE[level])
    assert (native_level, forced_level) == (NATIVE, level)
    assert len(native) == len(forced) > 0
    for a, b in zip(native, forced):
        kind_a, dtype_a, values_a = a.split(" ", 2)
        assert b.split(" ", 2)[:2] == [kind_a, dtype_a]
        expected = torch.tensor(json.loads(values_a), dtype=torch.float64)
        got = torch.tensor(json.loads(b.split(" ", 2)[2]), dtype=torch.float64)
        # exp and tanh differ between levels (SLEEF's vector routines or libm's), and so
        # do torch's own kernels (the loss's reductions) when the level is forced
        tolerance = dict(rtol=1e-4, atol=1e-5) if dtype_a == "torch.float32" else \
            dict(rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(got, expected, **tolerance, msg=f"{kind_a} {dtype_a}")


def library_functions_using(extension_path):
    """{function name: set of 'vex'/'evex'} for the extension's functions that use VEX
    (AVX, AVX2, FMA) or EVEX (AVX-512) encoded instructions."""
    listing = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", extension_path],
                             capture_output=True, text=True, check=True).stdout
    found, function = {}, None
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            function = header.group(1)
            continue
        fields = line.split("\t")
        if function is None or len(fields) < 2:
            continue
        instruction = re.sub(r"<.*>", "", fields[1]).strip()  # drop the symbol of a call
        mnemonic = instruction.split(" ")[0]
        if re.search(r"zmm|%k[0-7]|\{", instruction):
            found.setdefault(function, set()).add("evex")
        elif mnemonic.startswith("v") and mnemonic not in ("verr", "verw"):
            found.setdefault(function, set()).add("vex")
    return found


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
@pytest.mark.skipif(not re.match(r"x86_64|AMD64", os.uname().machine), reason="x86-64 only")
def test_no_avx_instruction_outside_its_level():
    # The linker keeps one copy of each inline function; an AVX-512 copy serving the AVX2
    # or portable code would crash an AVX2 processor. AVX code must sit in functions of its
    # level: fastrnn::cpu::avx512 / avx2, or ATen's Vectorized of that level.
    path = fastrnn._C.__file__
    found = library_functions_using(path)
    levels = {"avx512": 0, "avx2": 0}
    misplaced = []
    for function, kinds in found.items():
        if re.search(r"avx512|AVX512", function):
            levels["avx512"] += 1
        elif re.search(r"avx2|AVX2", function) and kinds == {"vex"}:
            levels["avx2"] += 1
        else:
            misplaced.append(f"{sorted(kinds)} {function[:160]}")
    assert not misplaced, "AVX code outside its level:\n" + "\n".join(misplaced[:20])
    assert levels["avx512"] > 0 and levels["avx2"] > 0, levels  # the levels were built
