"""Train, evaluate and sample the handout's three example models.

    python -m fastrnn.train classify                 # sentiment of the VADER texts
    python -m fastrnn.train charlm                   # character model of Python's docstrings
    python -m fastrnn.train sort                     # learn to sort 32 numbers in 1..32
    python -m fastrnn.train evaluate runs/classify/checkpoint.pt
    python -m fastrnn.train generate runs/charlm/checkpoint.pt --length 400
    python -m fastrnn.train sort --torch-layers      # the same recipe on torch.nn's layers
    python -m fastrnn.train compare runs/sort runs/sort-torch   # time to 0.9 per element
    torchrun --nproc_per_node=2 -m fastrnn.train sort   # several processes (DDP)

The defaults are the best recipes found for two CPU cores (each under 30 minutes there);
--quick is a two-minute demonstration, --handout-sizes the handout's own sizes (512 units,
4/3/4 layers). Every run writes metrics.csv (a row per held-out evaluation) and curve.png
beside its checkpoint. --torch-layers builds the same network from
torch.nn's layers instead of fastrnn's, to compare the two.
"""
import argparse
import dataclasses
import os
import sys
import time

import torch
import torch.distributed as dist

from . import TASKS
from .charlm import CharLanguageModel
from .common import (Context, carry_for_rank, gather_carry, load_checkpoint, save_checkpoint,
                     setup_context, unwrap, wrap)
from .curves import (MetricsLog, compare_runs, learning_rate_factor, reached, read_metrics,
                     save_curve_png)
from .data import DataError

try:
    from tqdm import tqdm
except ImportError:  # progress bars are a nicety
    tqdm = None

# The settings that choose the data rather than the network: `evaluate` takes them from the
# checkpoint, and a flag given to it overrides.
DATA_FIELDS = ("data", "max_len", "non_ascii", "text", "seq", "length", "values")


def settings_from_args(task_cls, args):
    """The task's settings dataclass from the parsed flags (file paths made absolute, so a
    checkpoint can be evaluated from another folder)."""
    fields = {f.name for f in dataclasses.fields(task_cls.Settings)}
    values = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    for name in ("data", "text"):
        if values.get(name):
            values[name] = os.path.abspath(values[name])
    return task_cls.Settings(**values)


def settings_from_checkpoint(state):
    """The settings a checkpoint was trained with."""
    task_cls = TASKS[state["task"]]
    fields = {f.name for f in dataclasses.fields(task_cls.Settings)}
    saved = {k: v for k, v in state.get("settings", {}).items() if k in fields}
    config = state["config"]  # checkpoints from before settings were saved
    saved.setdefault("hidden", config.get("hidden_size"))
    saved.setdefault("layers", config.get("num_layers"))
    for name in ("steps", "batch", "lr"):
        saved.setdefault(name, 0)
    return task_cls.Settings(**saved)


# ---------------------------------------------------------------- training

def train(args):
    task_cls = TASKS[args.task]
    settings = settings_from_args(task_cls, args)
    ctx = setup_context(args.device)
    torch.manual_seed(settings.seed)
    out_dir = args.out or os.path.join("runs", args.task + ("-torch" if args.torch_layers
                                                            else ""))
    path = os.path.join(out_dir, "checkpoint.pt")
    os.makedirs(out_dir, exist_ok=True)
    start, carry, state, seconds = 0, None, None, 0.0
    if args.resume and not os.path.exists(path) and ctx.main:
        print(f"--resume: no checkpoint at {path} yet; starting a fresh run")
    if args.resume and os.path.exists(path):
        state = load_checkpoint(path)
        # the run goes on with the checkpoint's network and data, and this call's step count
        saved = settings_from_checkpoint(state)
        differ = [f"--{name.replace('_', '-')}" for name, value in
                  dataclasses.asdict(settings).items()
                  if name != "steps" and value != getattr(saved, name)]
        if differ and ctx.main:
            print(f"resuming with the checkpoint's settings; these flags differ from them and "
                  f"are not used: {', '.join(differ)}")
        settings = dataclasses.replace(saved, steps=settings.steps)
    task = task_cls(settings)
    config = state["config"] if state is not None else task.config
    model = task.build(config, use_torch=args.torch_layers).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, carry = state["step"], carry_for_rank(state.get("carry"), ctx)
        seconds = state.get("seconds", 0.0)
        if ctx.main:
            print(f"resumed {path} at step {start}")
    model = wrap(model, ctx)
    amp = ctx.device.type == "cuda" and not args.no_amp
    eval_every = settings.eval_every or max(1, settings.steps // 25)
    warmup = min(settings.warmup, settings.steps // 5)  # a short run still reaches --lr
    log = MetricsLog(os.path.join(out_dir, "metrics.csv"),
                     resume_step=start if state is not None else None) if ctx.main else None
    layers = "torch.nn" if args.torch_layers else "fastrnn"
    title = f"{args.task}, {layers} layers, {settings.hidden} units x {settings.layers}"

    def save(done):
        carries = gather_carry(carry, ctx)  # every rank takes part
        if ctx.main:
            save_checkpoint(path, {"task": args.task, "config": config,
                                   "settings": dataclasses.asdict(settings),
                                   "model": unwrap(model).state_dict(),
                                   "optimizer": optimizer.state_dict(), "step": done,
                                   "carry": carries, "seconds": seconds,
                                   "torch_layers": args.torch_layers})

    def held_out(done, loss_mean, final):
        """Evaluates (rank 0 only), logs the metric and redraws the curve."""
        metrics, report = task.evaluate(unwrap(model), ctx, out_dir if final else None,
                                        final=final)
        value = metrics[task.metric]
        log.add(done, seconds, loss_mean, task.metric, value)
        save_curve_png(read_metrics(log.path), os.path.join(out_dir, "curve.png"), title)
        return metrics, report

    bar = tqdm(total=settings.steps, initial=start, desc=args.task, disable=not ctx.main,
               dynamic_ncols=True) if tqdm else None
    step, last_saved, losses, metrics, report, stop = start, start, [], None, None, None
    try:
        for step in range(start, settings.steps):
            began = time.perf_counter()
            factor = learning_rate_factor(step, settings.steps, warmup, settings.schedule)
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * factor
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss, carry = task.loss(model, step, ctx, carry)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            seconds += time.perf_counter() - began
            done = step + 1
            if bar:
                bar.update(1)
                bar.set_postfix({"loss": f"{sum(losses[-50:]) / len(losses[-50:]):.3f}",
                                 **({task.metric: f"{metrics[task.metric]:.3f}"}
                                    if metrics is not None else {})})
            last = done == settings.steps
            if ctx.main and (done % eval_every == 0 or last):
                metrics, report = held_out(done, sum(losses) / len(losses), final=last)
                losses = []
                if args.stop_at is not None and not last and reached(
                        metrics[task.metric], args.stop_at, task.higher_is_better):
                    stop = done
            if ctx.world > 1 and args.stop_at is not None:  # every rank stops at one step
                flag = torch.tensor([stop or 0])
                dist.broadcast(flag, 0)
                stop = int(flag) or None
            if done % settings.save_every == 0 or last or stop:
                save(done)
                last_saved = done
            if stop:
                break
    except KeyboardInterrupt:
        if bar:
            bar.close()
        if ctx.main:
            print(f"\ninterrupted at step {step}; last checkpoint at step {last_saved} "
                  f"({path}); continue with --resume", file=sys.stderr)
        raise SystemExit(130)
    if bar:
        bar.close()
    result = None
    if ctx.main:
        if stop:
            print(f"held-out {task.metric} {metrics[task.metric]:.3f} reached --stop-at "
                  f"{args.stop_at} at step {stop}")
        if stop or report is None:  # report is None: a resumed run that was already done
            metrics, report = task.evaluate(unwrap(model), ctx, out_dir, final=True)
        print(report)
        print(f"trained steps {start}..{stop or settings.steps} in {seconds:.1f} s of training "
              f"(evaluations not counted) on {ctx.device} x {ctx.world}; checkpoint {path}, "
              f"curve {os.path.join(out_dir, 'metrics.csv')}")
        result = metrics
    if ctx.world > 1:
        dist.destroy_process_group()
    return result


def evaluate(args):
    state = load_checkpoint(args.checkpoint)
    settings = settings_from_checkpoint(state)
    # The network comes from the checkpoint, and so do the data settings it was trained
    # with; a data flag given here overrides the saved one.
    changes = {}
    for name in DATA_FIELDS:
        given = getattr(args, name, None)
        if given is not None and hasattr(settings, name):
            if given != getattr(settings, name):
                print(f"evaluating with --{name.replace('_', '-')} {given} (the model was "
                      f"trained with {getattr(settings, name)})")
            changes[name] = os.path.abspath(given) if name in ("data", "text") else given
    settings = dataclasses.replace(settings, **changes)
    ctx = Context(torch.device(args.device))
    task = TASKS[state["task"]](settings)
    model = task.build(state["config"], use_torch=args.torch_layers).to(ctx.device)
    model.load_state_dict(state["model"])
    metrics, report = task.evaluate(model, ctx, os.path.dirname(args.checkpoint))
    print(report)
    return metrics


def compare(args):
    """Reads each run's metrics.csv; the task (and so the metric and its default target) and
    the layers come from the run's checkpoint."""
    runs, task_cls = {}, None
    for folder in args.runs:
        csv_path = os.path.join(folder, "metrics.csv")
        if not os.path.exists(csv_path):
            raise DataError(f"{folder}: no metrics.csv (train with python -m fastrnn.train "
                            "TASK --out FOLDER first)")
        rows = read_metrics(csv_path)
        if not rows:
            raise DataError(f"{csv_path}: no evaluations yet")
        state = load_checkpoint(os.path.join(folder, "checkpoint.pt"))
        if task_cls is not None and TASKS[state["task"]] is not task_cls:
            raise DataError(f"{folder}: a {state['task']} run; the others are {task_cls.name}")
        task_cls = TASKS[state["task"]]
        layers = "torch.nn" if state.get("torch_layers") else "fastrnn"
        runs[f"{layers} ({folder})"] = rows
    target = args.target if args.target is not None else task_cls.compare_target
    lines = compare_runs(runs, target, task_cls.higher_is_better, args.png)
    print("\n".join(lines))
    return lines


def generate(args):
    state = load_checkpoint(args.checkpoint)
    if state["task"] != "charlm":
        raise DataError(f"{args.checkpoint}: a {state['task']} checkpoint; generate needs a "
                        "charlm one")
    model = CharLanguageModel(use_torch=args.torch_layers, **state["config"]).to(args.device)
    model.load_state_dict(state["model"])
    model.eval()  # no dropout while sampling
    text = model.generate(args.length, args.prompt, args.temperature,
                          torch.Generator().manual_seed(args.seed))
    print(args.prompt + text)
    return text


# ---------------------------------------------------------------- command line

def parser():
    p = argparse.ArgumentParser(prog="python -m fastrnn.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    shown = dict(formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    def common(q):
        q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                       help="where to run: cpu, cuda or cuda:N")
        q.add_argument("--seed", type=int, default=0,
                       help="seed of the initial weights and of every step's random draw")
        q.add_argument("--torch-layers", action="store_true",
                       help="build the network from torch.nn's layers instead of fastrnn's")

    def non_ascii(q, default):
        q.add_argument("--non-ascii", choices=["error", "replace"], default=default,
                       help="what to do with non-ASCII characters in your own data")

    for name, task_cls in TASKS.items():
        q = sub.add_parser(name, help=f"train the {name} model", **shown)
        common(q)
        d, quick = task_cls.defaults, {**task_cls.defaults, **task_cls.quick}

        def recipe(flag, kind, text):
            name = flag[2:].replace("-", "_")
            q.add_argument(flag, type=kind, default=argparse.SUPPRESS,  # from the recipe
                           help=f"{text} (default {d[name]}; --quick: {quick[name]})")
        recipe("--hidden", int, "units per recurrent layer")
        recipe("--layers", int, "recurrent layers")
        recipe("--steps", int, "training steps in all")
        recipe("--batch", int, "examples per step (split over the processes under torchrun)")
        recipe("--lr", float, "Adam's peak learning rate")
        recipe("--warmup", int, "steps of linear learning-rate warm-up (at most a fifth of "
               "the run)")
        q.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                       help="after the warm-up: cosine decay to a tenth of --lr, or constant")
        recipe("--eval-every", int, "held-out evaluation (a row of metrics.csv) every this "
               "many steps; 0: a 25th of the run")
        q.add_argument("--quick", action="store_true",
                       help="a demonstration of about two minutes on two CPU cores")
        q.add_argument("--stop-at", type=float, metavar="VALUE",
                       help=f"stop once the held-out {task_cls.metric} reaches VALUE "
                            "(for time-to-accuracy runs)")
        q.add_argument("--handout-sizes", "--seed-sizes", action="store_true",
                       help=f"the handout's sizes: 512 units, {task_cls.handout_layers} layers")
        q.add_argument("--reset-after", action=argparse.BooleanOptionalAction, default=True,
                       help="GRU form: --no-reset-after is the handout's GRU (reset gate "
                            "before the recurrent product, fastrnn.GRU(reset_after=False))")
        q.add_argument("--layer-norm", action="store_true",
                       help="layer-normalised recurrent layers (fastrnn.LayerNormLSTM/GRU)")
        q.add_argument("--zoneout", type=float, default=0.0, metavar="P",
                       help="zoneout: each recurrent unit keeps its previous state with "
                            "probability P in training (fastrnn's zoneout=P)")
        q.add_argument("--out", help=f"folder for the checkpoint, metrics.csv and curve.png "
                       f"(default runs/{name}, runs/{name}-torch with --torch-layers)")
        q.add_argument("--resume", action="store_true", help="continue from the checkpoint")
        q.add_argument("--save-every", type=int, default=100,
                       help="write the checkpoint every this many steps")
        q.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
        if name == "classify":
            q.add_argument("--data", help="CSV with columns text,label (default: VADER)")
            q.add_argument("--max-len", type=int, default=256,
                           help="texts are cut to this many characters")
            recipe("--dropout", float, "dropout between the GRU layers and on the final states")
            non_ascii(q, "error")
        if name == "charlm":
            q.add_argument("--text", help="a text file (default: the stdlib's docstrings)")
            q.add_argument("--cell", choices=["lstm", "gru"], default=task_cls.Settings.cell,
                           help="the recurrent cell")
            recipe("--dropout", float, "dropout between the layers and on the last one's output")
            q.add_argument("--seq", type=int, default=128,
                           help="characters per truncated back-propagation chunk")
            non_ascii(q, "error")
        if name == "sort":
            q.add_argument("--length", type=int, default=32, help="numbers per sequence")
            q.add_argument("--values", type=int, default=32,
                           help="numbers are drawn from 1..values")
    q = sub.add_parser("evaluate", help="evaluate a checkpoint (on the data settings it was "
                       "trained with, unless given here)", **shown)
    q.add_argument("checkpoint", help="a checkpoint.pt written by training")
    common(q)
    non_ascii(q, None)
    saved = "(default: the checkpoint's)"
    q.add_argument("--data", help=f"classify: the CSV to evaluate on {saved}")
    q.add_argument("--text", help=f"charlm: the text file {saved}")
    q.add_argument("--max-len", type=int, help=f"classify: characters per text {saved}")
    q.add_argument("--seq", type=int, help=f"charlm: characters per chunk {saved}")
    q.add_argument("--length", type=int, help=f"sort: numbers per sequence {saved}")
    q.add_argument("--values", type=int, help=f"sort: largest number {saved}")
    q = sub.add_parser("compare", help="time to a held-out target of two or more runs (say "
                       "fastrnn's and --torch-layers'), their curves in one picture", **shown)
    q.add_argument("runs", nargs="+", help="run folders (each with metrics.csv)")
    q.add_argument("--target", type=float,
                   help="the held-out metric to reach (default: the task's own, e.g. sort 0.9)")
    q.add_argument("--png", default="compare.png", help="where to draw the curves")
    q = sub.add_parser("generate", help="sample text from a charlm checkpoint", **shown)
    q.add_argument("checkpoint", help="a charlm checkpoint.pt")
    common(q)
    q.add_argument("--length", type=int, default=400, help="characters to generate")
    q.add_argument("--prompt", default="The ", help="the text the model continues")
    q.add_argument("--temperature", type=float, default=0.8,
                   help="below 1: likelier characters; above 1: more varied")
    return p


def apply_recipe(args):
    """Fills the flags not given from the task's recipe (its --quick one if asked);
    --handout-sizes sets the size."""
    task_cls = TASKS[args.command]
    if args.handout_sizes:
        args.hidden, args.layers = 512, task_cls.handout_layers
    recipe = {**task_cls.defaults, **(task_cls.quick if args.quick else {})}
    for name, value in recipe.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def main(argv=None):
    args = parser().parse_args(argv)
    device = torch.device(getattr(args, "device", "cpu"))  # compare has no device
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device}: no CUDA GPU is visible to torch on this "
              "machine; use --device cpu", file=sys.stderr)
        raise SystemExit(2)
    try:
        if args.command == "evaluate":
            return evaluate(args)
        if args.command == "generate":
            return generate(args)
        if args.command == "compare":
            return compare(args)
        args.task = args.command
        apply_recipe(args)
        return train(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
