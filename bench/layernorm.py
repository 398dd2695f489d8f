"""fastrnn.LayerNormLSTM against the loop a user writes without it (nn.Linear + nn.LayerNorm
per step, the input side hoisted out of the loop) and against fastrnn's own plain LSTM of
the same size, forward and forward+backward, timed interleaved in one process:

    python bench/layernorm.py                      # T=256 B=64 I=128 H=512, one layer
    python bench/layernorm.py --layers 3 --bidirectional --repeats 5
    python bench/layernorm.py --compiled --seq 32  # the loop under torch.compile as well

Prints each side's median time with its fastest and slowest repeat, and the ratios.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import fastrnn


class LoopLayerNormLSTM(nn.Module):
    """The same mathematics as fastrnn.LayerNormLSTM, written as a user would."""

    def __init__(self, reference):
        super().__init__()
        self.reference = reference  # a fastrnn.LayerNormLSTM: the parameters are its own

    def forward(self, x):
        layer = self.reference
        D = 2 if layer.bidirectional else 1
        H, eps = layer.hidden_size, layer.eps
        for k in range(layer.num_layers):
            outs = []
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                p = lambda name: getattr(layer, name + sfx, None)  # noqa: E731
                xs = F.layer_norm(x @ p("weight_ih").t(), (4 * H,), p("layer_norm_ih_weight"),
                                  p("layer_norm_ih_bias"), eps)
                h = c = x.new_zeros(x.shape[1], H)
                steps = [None] * x.shape[0]
                for t in (reversed(range(x.shape[0])) if d else range(x.shape[0])):
                    a = xs[t] + F.layer_norm(h @ p("weight_hh").t(), (4 * H,),
                                             p("layer_norm_hh_weight"), p("layer_norm_hh_bias"),
                                             eps)
                    i, f, g, o = a.chunk(4, dim=1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(F.layer_norm(
                        c, (H,), p("layer_norm_cell_weight"), p("layer_norm_cell_bias"), eps))
                    steps[t] = h
                outs.append(torch.stack(steps))
            x = torch.cat(outs, dim=2)
        return x


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compiled", action="store_true",
                        help="also time the loop under torch.compile, which unrolls every step (at "
                             "T=256 compiling takes over a quarter of an hour on two cores)")
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = dict(num_layers=args.layers, bidirectional=args.bidirectional)
    fused = fastrnn.LayerNormLSTM(args.input, args.hidden, **shape)
    plain = fastrnn.LSTM(args.input, args.hidden, **shape)
    sides = {"fastrnn.LayerNormLSTM": fused, "user's loop": LoopLayerNormLSTM(fused),
             "fastrnn.LSTM (no LN)": plain}
    if args.compiled:
        sides["user's loop, compiled"] = torch.compile(LoopLayerNormLSTM(fused))
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

    for name, module in sides.items():  # warm-up (and compilation)
        forward(module)
        training(module)
    results = {}
    for kind, run in (("forward", forward), ("forward+backward", training)):
        times = {name: [] for name in sides}
        for _ in range(args.repeats):  # interleaved: each repeat times every side once
            for name, module in sides.items():
                times[name].append(timed(lambda: run(module)))
        results[kind] = {name: statistics.median(t) for name, t in times.items()}
        print(f"\n{kind}")
        for name, t in times.items():
            print(f"  {name:26s} {1e3 * statistics.median(t):9.1f} ms "
                  f"({1e3 * min(t):.1f}-{1e3 * max(t):.1f})")
        base = results[kind]["fastrnn.LayerNormLSTM"]
        for name, median in results[kind].items():
            if name != "fastrnn.LayerNormLSTM":
                print(f"  {name} / fastrnn.LayerNormLSTM: {median / base:.2f}x")


if __name__ == "__main__":
    main()
