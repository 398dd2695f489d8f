"""The same operator calls through the CUDA back-end on a GPU (CUDA tensors) and through its
emulation on the CPU (CPU tensors, FASTRNN_EMULATE_CUDA=1), compared: what the emulated test
suite verified holds for the real kernels, up to cuBLAS's summation order and the device's
expf/tanhf. Every cell (LSTM with and without projection, both GRUs, Elman tanh and relu),
forward and backward, with and without lengths, both directions, in float64, float32 (TF32
off), float16 and bfloat16. One line per case; exit status 1 when any differs by more than
its dtype's tolerance.

    python bench/emulated_vs_gpu.py            (on a GPU machine: bench/device_check.sh)
    python bench/emulated_vs_gpu.py --device cpu   (a rehearsal: both sides emulated)
"""
import argparse
import os
import sys

os.environ["FASTRNN_EMULATE_CUDA"] = "1"  # before fastrnn loads: CPU tensors are emulated

import torch  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn._ops import GATES, ops  # noqa: E402

CASES = [("lstm", {}), ("lstm", {"proj": True}), ("gru", {"reset_after": True}),
         ("gru", {"reset_after": False}), ("rnn", {"nonlinearity": "tanh"}),
         ("rnn", {"nonlinearity": "relu"})]
NAMES = ["lstm", "lstm proj_size", "gru", "gru reset_before", "rnn tanh", "rnn relu"]
# Largest difference allowed, relative to the largest magnitude compared.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2,
             torch.bfloat16: 5e-2}
T, B, H, P = 12, 5, 48, 20


def inputs(cell, options, dtype, lengths, seed):
    gen = torch.Generator().manual_seed(seed)
    g = GATES[cell]
    p = P if options.get("proj") else H

    def rand(*shape, scale=0.5):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    args = [rand(T, B, g * H), rand(B, p)]
    if cell == "lstm":
        args.append(rand(B, H))
    args += [rand(g * H, p, scale=1 / p ** 0.5), rand(g * H)]
    if cell == "lstm":
        args.append(rand(P, H, scale=1 / H ** 0.5) if options.get("proj") else None)
    args.append(torch.tensor([T, 3, 0, T - 1, 7]) if lengths else None)
    return args


def call(cell, options, args, device, reverse):
    """Forward (saving) and backward of one operator on `device`: every output, float64."""
    args = [a.detach().to(device) if isinstance(a, torch.Tensor) else a for a in args]
    leaves = [a.requires_grad_() for a in args[:-1] if a is not None and a.is_floating_point()]
    if cell == "lstm":
        outs = ops.lstm_forward(*args, reverse, True)[:3]
    elif cell == "gru":
        outs = ops.gru_forward(*args, reverse, options["reset_after"], True)[:2]
    else:
        outs = ops.rnn_forward(*args, reverse, options["nonlinearity"], True)[:2]
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype).to(device)
             for o in outs]
    grads_in = torch.autograd.grad(outs, leaves, grads)
    return [t.detach().double().cpu() for t in (*outs, *grads_in)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda",
                        help="where the real kernels run (cpu: a rehearsal, both emulated)")
    args = parser.parse_args()
    if args.device == "cuda" and not (torch.cuda.is_available() and fastrnn.build_info()["cuda"]):
        sys.exit("emulated_vs_gpu: needs a GPU and fastrnn's CUDA kernels (or --device cpu)")
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"fastrnn {fastrnn.build_info()}; real side on {args.device}")
    failures, seed = 0, 0
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        for (cell, options), name in zip(CASES, NAMES):
            for lengths in (False, True):
                for reverse in (False, True):
                    seed += 1
                    data = inputs(cell, options, dtype, lengths, seed)
                    emulated = call(cell, options, data, "cpu", reverse)
                    real = call(cell, options, data, args.device, reverse)
                    scale = max(max(e.abs().max().item() for e in emulated), 1.0)
                    worst = max((e - r).abs().max().item() for e, r in zip(emulated, real))
                    ok = worst <= TOLERANCE[dtype] * scale
                    failures += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} {str(dtype)[6:]:9} {name:17} "
                          f"lengths={lengths!s:5} reverse={reverse!s:5} max diff {worst:.2e}")
    print(f"{failures} of {seed} cases differ beyond tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
