"""fastrnn.LayerNormLSTM (or LayerNormGRU) against the loop a user writes without it (the
input side hoisted out of the loop, F.layer_norm per step: fastrnn.cell_loops), that loop
with its step compiled, and fastrnn's own plain LSTM (GRU) of the same size, forward and
forward+backward, timed interleaved in one process:

    python bench/layernorm.py                      # T=256 B=64 I=128 H=512, one layer
    python bench/layernorm.py --cell gru --layers 3 --bidirectional --repeats 5
    python bench/layernorm.py --compiled --seq 32  # the whole loop under torch.compile too

Prints each side's median time with its fastest and slowest repeat, and the ratios.
"""
import argparse
import statistics
import time

import torch

import fastrnn
from fastrnn.cell_loops import CellLoop


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", default="lstm", choices=["lstm", "gru", "gru_reset_before"])
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compiled", action="store_true",
                        help="also time the whole loop under torch.compile, which unrolls every "
                             "step (at T=256 compiling takes over a quarter of an hour on two "
                             "cores)")
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = dict(num_layers=args.layers, bidirectional=args.bidirectional)
    if args.cell == "lstm":
        name = "fastrnn.LayerNormLSTM"
        fused = fastrnn.LayerNormLSTM(args.input, args.hidden, **shape)
        plain = fastrnn.LSTM(args.input, args.hidden, **shape)
    else:
        reset = dict(reset_after=args.cell == "gru")
        name = "fastrnn.LayerNormGRU" + ("" if reset["reset_after"] else " (reset before)")
        fused = fastrnn.LayerNormGRU(args.input, args.hidden, **shape, **reset)
        plain = fastrnn.GRU(args.input, args.hidden, **shape, **reset)
    sides = {name: fused, "user's loop": CellLoop(fused),
             "user's loop, step compiled": CellLoop(fused, compiled=True),
             f"{type(plain).__name__} (no LN)": plain}
    if args.compiled:
        sides["user's loop, all compiled"] = torch.compile(CellLoop(fused))
    x = torch.randn(args.seq, args.batch, args.input)
    print(f"T={args.seq} B={args.batch} I={args.input} H={args.hidden} layers={args.layers} "
          f"bidirectional={args.bidirectional}, {torch.get_num_threads()} threads, "
          f"medians of {args.repeats}")

    def output(module, inp):
        result = module(inp)
        return result[0] if isinstance(result, tuple) else result

    def forward(module):
        with torch.no_grad():
            output(module, x)

    def training(module):
        inp = x.clone().requires_grad_()
        output(module, inp).sum().backward()

    for module in sides.values():  # warm-up (and compilation)
        forward(module)
        training(module)
    results = {}
    for kind, run in (("forward", forward), ("forward+backward", training)):
        times = {side: [] for side in sides}
        for _ in range(args.repeats):  # interleaved: each repeat times every side once
            for side, module in sides.items():
                times[side].append(timed(lambda: run(module)))
        results[kind] = {side: statistics.median(t) for side, t in times.items()}
        print(f"\n{kind}")
        for side, t in times.items():
            print(f"  {side:28s} {1e3 * statistics.median(t):9.1f} ms "
                  f"({1e3 * min(t):.1f}-{1e3 * max(t):.1f})")
        base = results[kind][name]
        for side, median in results[kind].items():
            if side != name:
                print(f"  {side} / {name}: {median / base:.2f}x")


if __name__ == "__main__":
    main()
