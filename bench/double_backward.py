"""Gradient-penalty steps (a gradient taken with create_graph=True, then differentiated
again), torch.nn against fastrnn, interleaved in one process.

fastrnn's fused backward kernels are first-order; under create_graph=True its autograd
formulas replay the forward with differentiable ATen ops (csrc/replay.cpp). This measures
that path beside a plain forward and backward.

    python bench/double_backward.py [--repeats 7] [--threads 2]
"""
import argparse
import statistics
import time

import torch

import fastrnn

CASES = [("LSTM", 50, 16, 128), ("GRU", 50, 16, 128), ("RNN", 50, 16, 128),
         ("LSTM", 100, 64, 256), ("GRU", 100, 64, 256)]


def penalty_step(layer, x):
    grad, = torch.autograd.grad(layer(x)[0].square().sum(), x, create_graph=True)
    grad.square().sum().backward()


def plain_step(layer, x):
    layer(x)[0].square().sum().backward()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, fastrnn {fastrnn.build_info()}")
    for cell, T, B, H in CASES:
        torch.manual_seed(0)
        reference = getattr(torch.nn, cell)(H, H)
        fast = getattr(fastrnn, cell)(H, H)
        fast.load_state_dict(reference.state_dict())
        x = torch.randn(T, B, H, requires_grad=True)
        for label, step in (("penalty", penalty_step), ("plain", plain_step)):
            times = {"torch": [], "fastrnn": []}
            for layer in (reference, fast):
                step(layer, x)  # warm-up
            for _ in range(args.repeats):
                for name, layer in (("torch", reference), ("fastrnn", fast)):
                    start = time.perf_counter()
                    step(layer, x)
                    times[name].append(time.perf_counter() - start)
            ratios = [t / f for t, f in zip(times["torch"], times["fastrnn"])]
            print(f"{cell:4} T={T:3} B={B:2} H={H}  {label:7}  "
                  f"torch.nn {statistics.median(times['torch']) * 1e3:7.1f} ms  "
                  f"fastrnn {statistics.median(times['fastrnn']) * 1e3:7.1f} ms  "
                  f"torch.nn/fastrnn {statistics.median(ratios):.2f}x "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}]", flush=True)


if __name__ == "__main__":
    main()
