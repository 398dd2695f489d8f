"""fastrnn's benchmark: fastrnn layers against torch.nn, measured in the same run.

    python -m fastrnn.bench                       # the quick default grid (fastrnn-bench too)
    python -m fastrnn.bench --preset seed         # the handout's three models' layer stacks
    python -m fastrnn.bench --cells lstm --seq 512 --batch 64 --input 128 --hidden 512
    python -m fastrnn.bench --json results.json --png results.png
    python -m fastrnn.bench --device cuda --preset device   # against cuDNN, CUDA events

Each case times torch.nn and fastrnn alternately (interleaved, so drifts in machine load
hit both), after warm-up, and reports the median of the repeats, the speed-up
torch.nn time / fastrnn time (above 1: fastrnn is faster) and the peak memory of one run
(from torch's profiler on the CPU, from the caching allocator on CUDA).

With onnxruntime installed (pip install "fastrnn[onnx]"), the CPU's inference cases (forward
and generation, unpacked) also time ONNX Runtime, the engine CPU inference often runs on:
the torch.nn layer exported with torch.onnx.export, run by its CPU execution provider on
torch's thread count, in the same interleaved loop ("vs ORT": ORT time / fastrnn time).
"""
import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import textwrap
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch._C._autograd import DeviceType
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

CELLS = {
    # name: (torch.nn class, fastrnn class, extra kwargs for both, extra kwargs for fastrnn)
    "lstm": (torch.nn.LSTM, fastrnn.LSTM, {}, {}),
    "gru": (torch.nn.GRU, fastrnn.GRU, {}, {}),
    # torch.nn has no reset_after=False GRU: its own GRU is the nearest baseline
    "gru_reset_after_false": (torch.nn.GRU, fastrnn.GRU, {}, {"reset_after": False}),
    "rnn": (torch.nn.RNN, fastrnn.RNN, {"nonlinearity": "tanh"}, {}),
    # torch.nn has no layer-normalised cells: the baseline is the step loop a user writes
    # (fastrnn.cell_loops), eager and with its step compiled; asked for by name only
    "layernorm_lstm": (None, fastrnn.LayerNormLSTM, {}, {}),
    "layernorm_gru": (None, fastrnn.LayerNormGRU, {}, {}),
}
TORCH_CELLS = ("lstm", "gru", "gru_reset_after_false", "rnn")  # the default grid's
LOOP_BASELINES = ("eager loop", "compiled step loop")


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
    packed: bool = False      # a PackedSequence, lengths drawn between T/2 and T
    baseline: str = "torch.nn"  # or, for the layer-normalised cells, one of LOOP_BASELINES

    def describe(self):
        if self.generation:
            return (f"{self.cell} generate {self.seq} steps B={self.batch} I={self.input} "
                    f"H={self.hidden} L={self.layers}")
        return (f"{self.cell} T={self.seq} B={self.batch} I={self.input} H={self.hidden} "
                f"L={self.layers}{' bi' if self.bidirectional else ''}"
                f"{' packed' if self.packed else ''}"
                f"{'' if self.baseline == 'torch.nn' else ' vs ' + self.baseline}")

    def flops(self, mode):
        """The GEMM work of one call (the point-wise part is small beside it): forward,
        2 (input + hidden) G per row and step, for every layer and direction; backward about
        twice the forward; a generation step has one row per batch entry."""
        gates = {"lstm": 4, "layernorm_lstm": 4, "rnn": 1}.get(self.cell, 3) * self.hidden
        directions = 2 if self.bidirectional else 1
        steps = 1 if self.generation else self.seq
        rows = self.batch * (0.75 if self.packed else 1.0)  # mean length 3T/4
        total = 0.0
        for layer in range(self.layers):
            layer_input = self.input if layer == 0 else directions * self.hidden
            total += directions * 2.0 * steps * rows * (layer_input + self.hidden) * gates
        return total * (3.0 if mode == "forward+backward" else 1.0)


@dataclass
class Result:
    case: Case
    mode: str  # "forward", "forward+backward" or "generate"
    torch_ms: float
    fastrnn_ms: float
    torch_peak_mb: float = float("nan")
    fastrnn_peak_mb: float = float("nan")
    torch_range: tuple = (float("nan"), float("nan"))    # fastest and slowest repeat, ms
    fastrnn_range: tuple = (float("nan"), float("nan"))
    fastrnn_gflops: float = float("nan")  # the case's GEMM work over fastrnn's median time
    read_bound_ms: float = float("nan")   # generation: reading the weights once, per step
    onnx_ms: float = float("nan")         # ONNX Runtime, where it ran this case
    onnx_range: tuple = (float("nan"), float("nan"))
    speedup: float = field(init=False)

    def __post_init__(self):
        self.speedup = self.torch_ms / self.fastrnn_ms


def make_layers(case, device, dtype):
    """The baseline and the fastrnn layer of a case, with the same parameters."""
    torch_cls, fast_cls, common, fast_only = CELLS[case.cell]
    kwargs = dict(num_layers=case.layers, bidirectional=case.bidirectional, device=device,
                  dtype=dtype, **common)
    fast = fast_cls(case.input, case.hidden, **kwargs, **fast_only)
    if torch_cls is None:
        from .cell_loops import CellLoop
        return CellLoop(fast, compiled=case.baseline == "compiled step loop"), fast
    reference = torch_cls(case.input, case.hidden, **kwargs)
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


def peak_memory_mb(fn, device):
    """Peak memory that one call of fn holds at once beyond what existed before, in MB:
    on CUDA the caching allocator's peak; on the CPU the running total of the allocations
    and frees torch's profiler records, in time order (torch's CPU allocator and fastrnn's
    buffer cache report to it), inside operators too: a buffer an operator allocates and
    frees before it returns (the input gates of fastrnn's whole-stack inference, a
    workspace of torch.nn's) counts while it lives."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with _stderr_silenced(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:  # every allocation and free with its time, those inside an operator too
        changes = sorted((e.start_ns(), e.nbytes())
                         for e in prof.profiler.kineto_results.events()
                         if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
    except AttributeError:  # a torch without these: each operator's net change only
        changes = sorted((e.time_range.start, e.self_cpu_memory_usage)
                         for e in prof.events() if e.self_cpu_memory_usage)
    total = peak = 0
    for _, nbytes in changes:
        total += nbytes
        peak = max(peak, total)
    return peak / 2**20


@contextlib.contextmanager
def _stderr_silenced():
    """The profiler's native code prints a line on stderr at every start and stop (USDT
    profiler_start/stop): keep them out of the table."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _spin():
    while True:
        pass


def start_busy_processes(count):
    """`count` processes that keep a core busy until terminated: the shared machine under
    which per-step thread synchronisation (torch.nn's and fastrnn's alike) suffers."""
    import multiprocessing
    processes = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for process in processes:
        process.start()
    return processes


def gemm_peak_gflops(device, dtype, rows=64, repeats=20):
    """The rate of a plain product in this run, 64 x 512 x 2048 (a recurrent step's shape,
    its output staying in cache) through the fastest GEMM fastrnn has here (brgemm on the
    CPU in float32 and bfloat16, torch.mm otherwise): each case's useful GFLOP/s over it is
    an efficiency that does not depend on the machine. (fastrnn's own CPU product: 1024
    rows, as it packs or copies its B at every call, which a layer does once per sequence;
    at 64 rows that copy made the "peak" slower than the layers' own steps.)"""
    own_product = device.type == "cpu" and (
        dtype == torch.float32 or (dtype == torch.bfloat16 and fastrnn._ops.CPU_BF16_GEMM))
    if own_product:
        rows = 1024
    a = torch.randn(rows, 512, device=device, dtype=dtype)
    # W^T stored by rows (as fastrnn packs a recurrent weight), so no copy is timed
    w = torch.randn(512, 2048, device=device, dtype=dtype).t()
    run = timer(device)
    one = (lambda: fastrnn._ops.ops.linear(a, w, None)) if own_product else (lambda: a @ w.t())

    def product():
        for _ in range(repeats):
            one()
    product()
    synchronize(device)
    seconds = statistics.median(run(product) for _ in range(7)) / 1e3 / repeats
    return 2.0 * rows * 512 * 2048 / seconds / 1e9


def read_bound_ms(module, device):
    """A generation step's floor: the time to read the layer's weights once, at the read
    rate of a buffer of their size measured now (a sum over it: from the cache level the
    weights live in, L3 or memory)."""
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    buffer = torch.ones(max(1, nbytes // 4), device=device)
    buffer.sum()
    synchronize(device)
    run = timer(device)
    milliseconds = statistics.median(run(buffer.sum) for _ in range(15))
    return milliseconds * nbytes / (buffer.numel() * 4)


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
    as_input = lambda t: t  # noqa: E731
    if case.packed:
        lengths = torch.randint(case.seq // 2, case.seq + 1, (case.batch,),
                                generator=torch.Generator().manual_seed(0))
        as_input = lambda t: pack_padded_sequence(t, lengths, enforce_sorted=False)  # noqa

    def forward():
        with torch.no_grad():
            module(as_input(x))

    def forward_backward():
        out, _ = module(as_input(x_grad))
        (out.data if case.packed else out).sum().backward()
    return {"forward": forward, "forward+backward": forward_backward}


def onnx_runtime_available():
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_workloads(case, module, dtype):
    """ONNX Runtime running `module` (the torch.nn layer) on the same inputs as
    workloads(): {mode: fn} for forward or generate, or {} where ORT has no such case here
    (packed input; a dtype other than float32; the layer-normalised cells). The export
    keeps the state as inputs and outputs, so generation carries it from step to step as
    the layers do."""
    import onnxruntime
    if case.packed or dtype != torch.float32 or case.baseline != "torch.nn":
        return {}  # (a cell loop is no torch.nn layer: nothing of ORT's to compare)
    steps = 1 if case.generation else case.seq
    x = torch.randn(steps, case.batch, case.input, dtype=dtype)
    directions = 2 if case.bidirectional else 1
    states = [torch.zeros(case.layers * directions, case.batch, case.hidden, dtype=dtype)
              for _ in range(2 if case.cell == "lstm" else 1)]
    state = tuple(states) if case.cell == "lstm" else states[0]  # as the layer takes it
    names = ["x", "h0", "c0"][:1 + len(states)]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _stderr_silenced(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(module, (x, state), buffer, dynamo=False, input_names=names,
                          output_names=["y"] + [f"{n}_n" for n in names[1:]])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # ORT's threads spin after a call by default, holding the cores the next contender in
    # the interleaved loop runs on (measured: fastrnn's generation step 2x slower after it)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(buffer.getvalue(), options,
                                           providers=["CPUExecutionProvider"])
    feeds = dict(zip(names, [t.numpy() for t in [x] + states]))
    with torch.no_grad():  # time nothing that computes something else
        expected = module(x, state)[0]
    got = torch.from_numpy(session.run(None, feeds)[0])
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"{case.describe()}: ONNX Runtime's output differs from torch.nn's "
                           f"by {(got - expected).abs().max().item():.3g}")
    if not case.generation:
        return {"forward": lambda: session.run(None, feeds)}

    def generate():
        step_feeds = dict(feeds)
        for _ in range(case.seq):
            outputs = session.run(None, step_feeds)
            step_feeds.update(zip(names[1:], outputs[1:]))
    return {"generate": generate}


def run_case(case, device, dtype, repeats, warmup, modes, with_onnx=False):
    reference, fast = make_layers(case, device, dtype)
    ref_work = workloads(case, reference, device, dtype)
    fast_work = workloads(case, fast, device, dtype)
    onnx_work = onnx_workloads(case, reference, dtype) if with_onnx else {}
    measure = timer(device)
    results = []
    for mode in ref_work:
        if mode not in modes and not case.generation:
            continue
        contenders = [ref_work[mode], fast_work[mode]] + (
            [onnx_work[mode]] if mode in onnx_work else [])
        for _ in range(warmup):
            for fn in contenders:
                fn()
        synchronize(device)
        times = [[] for _ in contenders]
        for r in range(repeats):  # interleaved, rotating which goes first
            for k in range(len(contenders)):
                which = (r + k) % len(contenders)
                times[which].append(measure(contenders[which]))
        scale = 1.0 / case.seq if case.generation else 1.0  # per generated step
        median = [statistics.median(t) * scale for t in times]
        spread = [(min(t) * scale, max(t) * scale) for t in times]
        result = Result(case, mode, median[0], median[1],
                        peak_memory_mb(ref_work[mode], device),
                        peak_memory_mb(fast_work[mode], device), spread[0], spread[1],
                        case.flops(mode) / (median[1] / 1e3) / 1e9)
        if len(contenders) == 3:
            result.onnx_ms, result.onnx_range = median[2], spread[2]
        if case.generation:
            result.read_bound_ms = read_bound_ms(fast, device)
        results.append(result)
    return results


PRESETS = ("quick", "seed", "long", "device")
MODES = ("forward", "forward+backward")  # generation cases always run their "generate"


def preset_cases(preset, cells):
    """The grids of cases:
    quick   T=256 B=64 I=128 H=512 for each cell, packed input (LSTM, GRU; lengths between
            T/2 and T), and a generation step (B=1, T=1, 3 layers)
    seed    the handout's stacks: its classifier (4-layer bidirectional GRU, I=E_DIM=128),
            character model (3 layers) and sorter (4 layers, T=32), at T=256, B=64, H=512
    long    long sequences: T=2048, B=16, I=128, H=256
    device  the GPU check against cuDNN: LSTM and both GRUs, 1 and 4 bidirectional layers,
            B=1, 8, 64, at T=256, I=128, H=512
    The layer-normalised cells (layernorm_lstm, layernorm_gru), when named, run against the
    user's eager step loop and that loop with its step compiled, at T=256 B=64 I=128 H=512,
    one layer ("quick") or a 3-layer bidirectional stack ("seed").
    """
    loop_cells = [cell for cell in cells if CELLS[cell][0] is None]
    cells = [cell for cell in cells if CELLS[cell][0] is not None]
    loop_cases = [Case(cell, 256, 64, 128, 512, *((3, True) if preset == "seed" else ()),
                       baseline=baseline)
                  for cell in loop_cells for baseline in LOOP_BASELINES]
    cases = []
    if preset == "device":
        cases += [Case(cell, 256, batch, 128, 512, layers, True)
                  for cell in cells for layers in (1, 4) for batch in (1, 8, 64)]
    elif preset == "seed":
        cases += [Case("gru", 256, 64, 128, 512, 4, True, label="classifier"),
                  Case("gru_reset_after_false", 256, 64, 128, 512, 4, True,
                       label="classifier, the handout's GRU"),
                  Case("lstm", 256, 64, 128, 512, 3, label="char model"),
                  Case("gru", 256, 64, 128, 512, 3, label="char model"),
                  Case("gru", 32, 64, 128, 512, 4, label="sorter encoder"),
                  Case("lstm", 64, 1, 128, 512, 3, generation=True, label="char generation"),
                  Case("gru", 64, 1, 128, 512, 3, generation=True, label="char generation")]
        cases = [c for c in cases if c.cell in cells]
    elif preset == "long":
        cases += [Case(cell, 2048, 16, 128, 256) for cell in cells]
    else:
        cases += [Case(cell, 256, 64, 128, 512) for cell in cells]
        cases += [Case(cell, 256, 64, 128, 512, packed=True)
                  for cell in cells if cell in ("lstm", "gru")]
        cases += [Case(cell, 32, 1, 128, 512, 3, generation=True)
                  for cell in cells if cell in ("lstm", "gru")]
    return loop_cases + cases


def select_cases(args):
    cells = args.cells.split(",") if args.cells else (
        ["lstm", "gru", "gru_reset_after_false"] if args.preset == "device" else list(TORCH_CELLS))
    for cell in cells:
        if cell not in CELLS:
            raise SystemExit(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
    if args.seq or args.batch or args.hidden or args.input or args.layers or args.bidirectional:
        return [Case(cell, args.seq or 256, args.batch or 64, args.input or 128,
                     args.hidden or 512, args.layers or 1, args.bidirectional, baseline=baseline)
                for cell in cells
                for baseline in (("torch.nn",) if CELLS[cell][0] else LOOP_BASELINES)]
    return preset_cases(args.preset, cells)


def format_table(results, title, peak_gflops=float("nan")):
    """A Markdown table: medians with the fastest and slowest repeat, the speed-up of the
    medians, fastrnn's efficiency against a plain GEMM, and peak memory ("n/a" where a case
    has none to show). Columns are as wide as their widest entry."""
    def timing(median, spread, unit):
        return f"{median:>9.3f}{unit:<5} {f'({spread[0]:.3f}-{spread[1]:.3f})':<19}"

    def memory(mb):
        return "n/a" if not mb or mb != mb else f"{mb:.1f}"  # nan or 0: nothing measured

    with_onnx = any(r.onnx_ms == r.onnx_ms for r in results)  # any ORT time (not nan)
    baseline = ("torch.nn" if all(r.case.baseline == "torch.nn" for r in results)
                else "baseline")  # the loops of the layer-normalised cells (see the case)
    header = ["case", "mode", f"{baseline} ms (min-max)", "fastrnn ms (min-max)", "speed-up",
              "% of peak", f"peak MB {'torch' if baseline == 'torch.nn' else baseline} / fastrnn"]
    if with_onnx:
        header[5:5] = ["ONNX Runtime ms (min-max)", "vs ORT"]
    rows = []
    for r in results:
        unit = "/step" if r.mode == "generate" else ""
        row = [
            r.case.describe() + (f" ({r.case.label})" if r.case.label else ""), r.mode,
            timing(r.torch_ms, r.torch_range, unit), timing(r.fastrnn_ms, r.fastrnn_range, unit),
            f"{r.speedup:.2f}x",
            f"{100 * r.read_bound_ms / r.fastrnn_ms:.0f}% of read ({r.read_bound_ms:.3f})"
            if r.mode == "generate" else f"{100 * r.fastrnn_gflops / peak_gflops:.0f}%",
            "n/a" if r.mode == "generate"  # one step at a time: nothing to compare
            else f"{memory(r.torch_peak_mb)} / {memory(r.fastrnn_peak_mb)}"]
        if with_onnx:
            ran = r.onnx_ms == r.onnx_ms
            row[5:5] = [timing(r.onnx_ms, r.onnx_range, unit) if ran else "n/a",
                        f"{r.onnx_ms / r.fastrnn_ms:.2f}x" if ran else "n/a"]
        rows.append(row)
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    right = {4, 6, 7, 8} if with_onnx else {4, 5, 6}  # numbers read best right-aligned

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([title, "", line(header), rule] + [line(row) for row in rows])


def draw_chart(results, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.case.describe()}\n{r.mode}" for r in results]
    speedups = [r.speedup for r in results]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(results) + 1.5))
    colors = ["tab:green" if s >= 1 else "tab:red" for s in speedups]
    ax.barh(range(len(results)), speedups, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(results)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up: torch.nn time / fastrnn time (right of 1: fastrnn faster)")
    ax.set_title(textwrap.fill(title, 110), fontsize=7)
    for i, s in enumerate(speedups):
        ax.text(s, i, f" {s:.2f}x", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine_description(device):
    """The card, or the CPU's model, family, the SIMD levels torch and fastrnn run at, and
    the thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model, family = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            info = {key.strip(): value.strip()
                    for key, value in (line.split(":", 1) for line in f if ":" in line)}
        model = info.get("model name", model)
        family = f", family {info.get('cpu family', '?')}"
    except OSError:
        pass
    return (f"{model}{family}, torch {torch.backends.cpu.get_cpu_capability()} / fastrnn "
            f"{fastrnn.build_info()['cpu_simd']} kernels, {torch.get_num_threads()} threads")


def main(argv=None):
    """The command line (also the fastrnn-bench entry point)."""
    run(argv)


def run(argv=None):
    """Parses the flags, runs the grid, prints and saves the results, returns them."""
    parser = argparse.ArgumentParser(prog="python -m fastrnn.bench",
                                     description=__doc__ + "\n" + preset_cases.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", help="comma-separated, from: " + ",".join(CELLS))
    parser.add_argument("--preset", default="quick", choices=PRESETS,
                        help="the grid of cases when no size flag is given (see below)")
    parser.add_argument("--seq", type=int, help="sequence length T")
    parser.add_argument("--batch", type=int, help="batch size B")
    parser.add_argument("--input", type=int, help="input size I")
    parser.add_argument("--hidden", type=int, help="hidden size H")
    parser.add_argument("--layers", type=int, help="number of layers")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--modes", default="forward,forward+backward",
                        help="comma-separated, from: " + ",".join(MODES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tf32", choices=["off", "on"], default="off",
                        help="CUDA float32: TF32 tensor cores for both sides (cuDNN's "
                             "recurrent GEMMs and fastrnn's cuBLAS ones), or for neither")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64",
                                                                "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--png", help="also draw the speed-ups as a chart in this PNG file")
    parser.add_argument("--onnx", choices=["auto", "on", "off"], default="auto",
                        help="time ONNX Runtime too on the CPU's inference cases: auto = "
                             "when onnxruntime and onnx are installed")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="run N competing busy processes during the timings, as on a "
                             "shared machine (both sides are slowed; compare the ratios)")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    from .modules import KERNEL_DTYPES
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch on this machine")
    if not fastrnn.build_info().get(device.type) or dtype not in KERNEL_DTYPES[device.type]:
        parser.error(f"fastrnn has no {args.dtype} kernels on {device.type} in this build "
                     f"(it would run torch.nn's own implementation, so the comparison would "
                     f"compare torch.nn with itself)")
    precision = args.dtype
    if device.type == "cuda":
        # Both sides alike: cuDNN reads the cudnn flag, fastrnn's cuBLAS GEMMs the matmul one.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = \
            args.tf32 == "on"
        if dtype == torch.float32:
            precision += f", TF32 {args.tf32} (cuDNN and cuBLAS)"
    title = (f"fastrnn {fastrnn.__version__} vs torch {torch.__version__} on "
             f"{machine_description(device)}, {precision}, median of {args.repeats}")
    with_onnx = (args.onnx != "off" and device.type == "cpu" and dtype == torch.float32
                 and onnx_runtime_available())
    if args.onnx == "on" and not with_onnx:
        parser.error("--onnx on: needs the CPU, float32 and the packages onnxruntime and onnx "
                     "(pip install \"fastrnn[onnx]\")")
    if with_onnx:
        import onnxruntime
        title += (f"; ONNX Runtime {onnxruntime.__version__} (CPU execution provider, "
                  f"{torch.get_num_threads()} threads)")
    torch.manual_seed(0)
    competitors = start_busy_processes(args.busy)
    if args.busy:
        title += f"; beside {args.busy} busy competing process(es)"
    # measured before the cases and again after them, keeping the faster: a single
    # measurement taken while the shared machine was busy once put cases above 100%
    peak = gemm_peak_gflops(device, dtype)

    def with_peak(peak):
        return title + (
            f"; % of peak: fastrnn's useful GFLOP/s over a plain GEMM's here (the faster of "
            f"two measurements, before and after the cases: {peak:.0f} GFLOP/s), for "
            f"generation the time to read the weights once (ms, at the read rate of a buffer "
            f"their size) over fastrnn's step")
    cases = select_cases(args)
    results = []
    began = time.perf_counter()
    for k, case in enumerate(cases, 1):
        results += run_case(case, device, dtype, args.repeats, args.warmup, modes, with_onnx)
        elapsed = time.perf_counter() - began
        eta = elapsed / k * (len(cases) - k)
        print(f"[{k}/{len(cases)}] {case.describe()}: {elapsed:.0f} s elapsed, "
              f"about {eta:.0f} s to go", flush=True)
        if args.json:  # after every case, so a run cut short still leaves its numbers
            write_json(args.json, with_peak(peak), results, peak)
    peak = max(peak, gemm_peak_gflops(device, dtype))
    for process in competitors:
        process.terminate()
    title = with_peak(peak)
    if args.json:
        write_json(args.json, title, results, peak)
    print(format_table(results, title, peak))
    if args.png:
        draw_chart(results, title, args.png)
    return results


def write_json(path, title, results, peak_gflops):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"title": title, "gemm_peak_gflops": peak_gflops, "results": [
            {**asdict(r.case), "mode": r.mode, "torch_ms": r.torch_ms,
             "fastrnn_ms": r.fastrnn_ms, "speedup": r.speedup,
             "torch_range_ms": list(r.torch_range), "fastrnn_range_ms": list(r.fastrnn_range),
             "fastrnn_gflops": r.fastrnn_gflops, "read_bound_ms": r.read_bound_ms,
             "onnx_ms": r.onnx_ms,
             "onnx_range_ms": list(r.onnx_range),
             "torch_peak_mb": r.torch_peak_mb, "fastrnn_peak_mb": r.fastrnn_peak_mb}
            for r in results]}, f, indent=2)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
