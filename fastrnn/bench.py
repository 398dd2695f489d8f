"""fastrnn's benchmark: fastrnn layers against torch.nn, measured in the same run.

    python -m fastrnn.bench                       # the quick default grid
    python -m fastrnn.bench --cells lstm --seq 512 --batch 64 --input 128 --hidden 512
    python -m fastrnn.bench --json results.json

Each case times torch.nn and fastrnn alternately (interleaved, so drifts in machine load
hit both), after warm-up, and reports the median of the repeats and the speed-up
torch.nn time / fastrnn time (above 1: fastrnn is faster).
"""
import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

import fastrnn

CELLS = {
    # name: (torch.nn class, fastrnn class, extra kwargs for both, extra kwargs for fastrnn)
    "lstm": (torch.nn.LSTM, fastrnn.LSTM, {}, {}),
    "gru": (torch.nn.GRU, fastrnn.GRU, {}, {}),
    # torch.nn has no reset-before GRU: its reset-after GRU is the nearest baseline
    "gru_cho": (torch.nn.GRU, fastrnn.GRU, {}, {"reset_after": False}),
    "rnn": (torch.nn.RNN, fastrnn.RNN, {"nonlinearity": "tanh"}, {}),
}


@dataclass
class Case:
    cell: str
    seq: int
    batch: int
    input: int
    hidden: int
    layers: int = 1
    bidirectional: bool = False
    generation: bool = False  # one step at a time, state carried across calls
    label: str = ""

    def describe(self):
        if self.generation:
            return (f"{self.cell} generate {self.seq} steps B={self.batch} I={self.input} "
                    f"H={self.hidden} L={self.layers}")
        return (f"{self.cell} T={self.seq} B={self.batch} I={self.input} H={self.hidden} "
                f"L={self.layers}{' bi' if self.bidirectional else ''}")


@dataclass
class Result:
    case: Case
    mode: str  # "forward", "forward+backward" or "generate"
    torch_ms: float
    fastrnn_ms: float
    speedup: float = field(init=False)

    def __post_init__(self):
        self.speedup = self.torch_ms / self.fastrnn_ms


def make_layers(case, device, dtype):
    torch_cls, fast_cls, common, fast_only = CELLS[case.cell]
    kwargs = dict(num_layers=case.layers, bidirectional=case.bidirectional, device=device,
                  dtype=dtype, **common)
    reference = torch_cls(case.input, case.hidden, **kwargs)
    fast = fast_cls(case.input, case.hidden, **kwargs, **fast_only)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timer(device):
    """Returns a function that runs fn once and gives its time in milliseconds."""
    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
    else:
        def run(fn):
            begin = time.perf_counter()
            fn()
            return (time.perf_counter() - begin) * 1e3
    return run


def workloads(case, module, device, dtype):
    """The functions to time for one module: {mode: fn}."""
    if case.generation:
        x = torch.randn(1, case.batch, case.input, device=device, dtype=dtype)

        def generate():
            state = None
            with torch.no_grad():
                for _ in range(case.seq):
                    _, state = module(x, state)
        return {"generate": generate}

    x = torch.randn(case.seq, case.batch, case.input, device=device, dtype=dtype)
    x_grad = x.clone().requires_grad_()

    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        out, _ = module(x_grad)
        out.sum().backward()
    return {"forward": forward, "forward+backward": forward_backward}


def run_case(case, device, dtype, repeats, warmup, modes):
    reference, fast = make_layers(case, device, dtype)
    ref_work = workloads(case, reference, device, dtype)
    fast_work = workloads(case, fast, device, dtype)
    measure = timer(device)
    results = []
    for mode in ref_work:
        if mode not in modes and not case.generation:
            continue
        for _ in range(warmup):
            ref_work[mode]()
            fast_work[mode]()
        synchronize(device)
        ref_times, fast_times = [], []
        for r in range(repeats):  # interleaved, alternating which goes first
            pair = [(ref_work[mode], ref_times), (fast_work[mode], fast_times)]
            for fn, times in (pair if r % 2 == 0 else pair[::-1]):
                times.append(measure(fn))
        scale = 1.0 / case.seq if case.generation else 1.0  # per generated step
        results.append(Result(case, mode, statistics.median(ref_times) * scale,
                              statistics.median(fast_times) * scale))
    return results


def preset_cases(preset, cells):
    """The grids: 'quick' (the default), 'device' (the GPU check against cuDNN)."""
    if preset == "device":
        cases = []
        for cell in cells:
            cases += [Case(cell, 256, 64, 128, 512, 1, True), Case(cell, 256, 64, 128, 512, 4, True),
                      Case(cell, 256, 1, 128, 512), Case(cell, 256, 8, 128, 512)]
        return cases
    cases = [Case(cell, 256, 64, 128, 512) for cell in cells]
    cases += [Case(cell, 32, 1, 128, 512, 3, generation=True)
              for cell in cells if cell in ("lstm", "gru")]
    return cases


def select_cases(args):
    cells = args.cells.split(",") if args.cells else (
        ["lstm", "gru"] if args.preset == "device" else list(CELLS))
    for cell in cells:
        if cell not in CELLS:
            raise SystemExit(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
    if args.seq or args.batch or args.hidden or args.input or args.layers:
        return [Case(cell, args.seq or 256, args.batch or 64, args.input or 128,
                     args.hidden or 512, args.layers or 1, args.bidirectional)
                for cell in cells]
    return preset_cases(args.preset, cells)


def format_table(results, title):
    header = f"{'case':<44} {'mode':<17} {'torch.nn ms':>12} {'fastrnn ms':>11} {'speed-up':>9}"
    lines = [title, header, "-" * len(header)]
    for r in results:
        unit = "/step" if r.mode == "generate" else ""
        lines.append(f"{r.case.describe():<44} {r.mode:<17} {r.torch_ms:>10.3f}{unit:<2} "
                     f"{r.fastrnn_ms:>9.3f}{unit:<2} {r.speedup:>8.2f}x")
    return "\n".join(lines)


def machine_description(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads "
            f"({platform.node()})")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastrnn.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", help="comma-separated, from: " + ",".join(CELLS))
    parser.add_argument("--preset", default="quick", choices=["quick", "device"],
                        help="the grid of cases when no size flag is given")
    parser.add_argument("--seq", type=int, help="sequence length T")
    parser.add_argument("--batch", type=int, help="batch size B")
    parser.add_argument("--input", type=int, help="input size I")
    parser.add_argument("--hidden", type=int, help="hidden size H")
    parser.add_argument("--layers", type=int, help="number of layers")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--modes", default="forward,forward+backward")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64",
                                                                "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    results = []
    for case in select_cases(args):
        results += run_case(case, device, dtype, args.repeats, args.warmup,
                            args.modes.split(","))
        print(f"  done: {case.describe()}", flush=True)
    title = (f"fastrnn {fastrnn.__version__} vs torch {torch.__version__} on "
             f"{machine_description(device)}, {args.dtype}, median of {args.repeats}")
    print(format_table(results, title))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"title": title, "results": [
                {**asdict(r.case), "mode": r.mode, "torch_ms": r.torch_ms,
                 "fastrnn_ms": r.fastrnn_ms, "speedup": r.speedup} for r in results]}, f,
                indent=2)
    return results


if __name__ == "__main__":
    main()
