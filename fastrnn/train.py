"""Train, evaluate and sample the handout's three example models.

    python -m fastrnn.train classify                 # sentiment of the VADER texts
    python -m fastrnn.train charlm                   # character model of Python's docstrings
    python -m fastrnn.train sort                     # learn to sort 32 numbers in 1..32
    python -m fastrnn.train evaluate runs/classify/checkpoint.pt
    python -m fastrnn.train generate runs/charlm/checkpoint.pt --length 400
    torchrun --nproc_per_node=2 -m fastrnn.train sort   # several processes (DDP)

The defaults show a real result within minutes on two CPU cores; --seed-sizes gives the
handout's own sizes (512 units, 4/3/4 layers). --torch-layers builds the same network from
torch.nn's layers instead of fastrnn's, to compare the two.
"""
import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .data import (DataError, E_DIM, encode_batch, load_corpus, load_labelled_csv,
                   load_vader, sorting_batch)
from .models import CharLanguageModel, SentimentClassifier, Sorter

try:
    from tqdm import tqdm
except ImportError:  # progress bars are a nicety
    tqdm = None


# ---------------------------------------------------------------- distributed helpers

@dataclass
class Context:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self):
        return self.rank == 0


def setup_context(device_name):
    """One process, or one of several started by torchrun (WORLD_SIZE > 1): gloo on the CPU,
    NCCL on GPUs, one GPU per process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(device_name)
    if world == 1:
        return Context(device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(device, rank, world)


def wrap(model, ctx):
    if ctx.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[ctx.device.index]
                                   if ctx.device.type == "cuda" else None)


def step_generator(seed, step, rank=0):
    """Each step's random draw depends only on (seed, step, rank), so a resumed run draws
    exactly what the uninterrupted one would have."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + rank)


# ---------------------------------------------------------------- the three tasks

class ClassifyTask:
    name = "classify"

    def __init__(self, args):
        if args.data:
            texts, labels, self.classes = load_labelled_csv(args.data, non_ascii=args.non_ascii)
        else:
            texts, labels, self.classes, _ = load_vader()
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(1234))
        held = max(1, len(texts) // 10)
        self.test = [(texts[i][:args.max_len], labels[i]) for i in order[:held].tolist()]
        self.train = [(texts[i][:args.max_len], labels[i]) for i in order[held:].tolist()]
        self.config = dict(num_classes=len(self.classes), hidden_size=args.hidden,
                           num_layers=args.layers, reset_after=not args.reset_before)

    def build(self, config, use_torch=False):
        return SentimentClassifier(use_torch=use_torch, **config)

    def batch(self, examples, device):
        codes, lengths = encode_batch([text for text, _ in examples])
        labels = torch.tensor([label for _, label in examples])
        return codes.to(device), lengths, labels.to(device)

    def loss(self, model, step, args, ctx, carry):
        g = step_generator(args.seed, step)
        picks = torch.randint(len(self.train), (args.batch,), generator=g).tolist()
        mine = picks[ctx.rank::ctx.world]
        codes, lengths, labels = self.batch([self.train[i] for i in mine], ctx.device)
        return F.cross_entropy(model(codes, lengths), labels), carry

    @torch.no_grad()
    def evaluate(self, model, args, ctx, out_dir=None):
        model.eval()
        n = len(self.classes)
        confusion = torch.zeros(n, n, dtype=torch.int64)
        for i in range(0, len(self.test), 128):
            codes, lengths, labels = self.batch(self.test[i:i + 128], ctx.device)
            predicted = model(codes, lengths).argmax(-1)
            for t, p in zip(labels.tolist(), predicted.tolist()):
                confusion[t, p] += 1
        model.train()
        accuracy = confusion.diag().sum().item() / confusion.sum().item()
        f1 = []
        for k in range(n):
            tp = confusion[k, k].item()
            precision = tp / max(1, confusion[:, k].sum().item())
            recall = tp / max(1, confusion[k].sum().item())
            f1.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
        report = format_confusion(confusion, self.classes)
        report += f"\naccuracy {accuracy:.3f} on {confusion.sum().item()} held-out texts; F1 " + \
            ", ".join(f"{c} {v:.3f}" for c, v in zip(self.classes, f1))
        if out_dir:
            save_confusion_png(confusion, self.classes, accuracy,
                               os.path.join(out_dir, "confusion.png"))
        return {"accuracy": accuracy, "f1": dict(zip(self.classes, f1)),
                "confusion": confusion.tolist()}, report


class CharLMTask:
    name = "charlm"

    def __init__(self, args):
        codes = torch.tensor(load_corpus(args.text, non_ascii=args.non_ascii))
        held = max(args.seq + 1, len(codes) // 20)
        if len(codes) < 4 * held:
            raise DataError(f"{args.text or 'corpus'}: {len(codes)} characters is too short "
                            f"for sequences of {args.seq}")
        self.train_codes, self.test_codes = codes[:-held], codes[-held:]
        self.config = dict(cell=args.cell, hidden_size=args.hidden, num_layers=args.layers,
                           reset_after=not args.reset_before)

    def build(self, config, use_torch=False):
        return CharLanguageModel(use_torch=use_torch, **config)

    def loss(self, model, step, args, ctx, carry):
        """Truncated BPTT: the batch is `batch` parallel streams through the corpus; step k
        reads chunk k of each, and the state is carried from chunk to chunk, detached."""
        streams = args.batch
        stream_len = len(self.train_codes) // streams
        chunks = (stream_len - 1) // args.seq
        k = step % chunks
        if k == 0:
            carry = None  # wrapped around: start the streams afresh
        starts = torch.arange(streams) * stream_len + k * args.seq
        mine = starts[ctx.rank::ctx.world]
        window = torch.stack([self.train_codes[s:s + args.seq + 1] for s in mine.tolist()])
        window = window.to(ctx.device)
        logits, state = model(window[:, :-1], carry)
        carry = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits.reshape(-1, E_DIM).float(), window[:, 1:].reshape(-1))
        return loss, carry

    @torch.no_grad()
    def evaluate(self, model, args, ctx, out_dir=None):
        model.eval()
        total, count, state = 0.0, 0, None
        codes = self.test_codes.to(ctx.device)
        for i in range(0, len(codes) - 1, 1024):
            chunk = codes[i:i + 1025]
            logits, state = model(chunk[None, :-1], state)
            total += F.cross_entropy(logits[0].float(), chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
        model.train()
        bpc = total / count / math.log(2)
        sample = unwrap(model).generate(300, prompt="The ", temperature=0.8,
                                        generator=torch.Generator().manual_seed(0))
        report = (f"bits per character {bpc:.3f} on {count} held-out characters\n"
                  f"sample (temperature 0.8): The {sample}")
        return {"bits_per_char": bpc, "sample": sample}, report


class SortTask:
    name = "sort"

    def __init__(self, args):
        self.length, self.values = args.length, args.values
        self.config = dict(n_values=args.values, hidden_size=args.hidden,
                           num_layers=args.layers, reset_after=not args.reset_before)

    def build(self, config, use_torch=False):
        return Sorter(use_torch=use_torch, **config)

    def loss(self, model, step, args, ctx, carry):
        inputs, targets = sorting_batch(args.batch, self.length, self.values,
                                        step_generator(args.seed, step))
        inputs, targets = inputs[ctx.rank::ctx.world], targets[ctx.rank::ctx.world]
        logits = model(inputs.to(ctx.device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                               targets.to(ctx.device).reshape(-1))
        return loss, carry

    @torch.no_grad()
    def evaluate(self, model, args, ctx, out_dir=None):
        model.eval()
        inputs, targets = sorting_batch(1000, self.length, self.values,
                                        torch.Generator().manual_seed(99))
        predicted = model(inputs.to(ctx.device)).argmax(-1).cpu()
        model.train()
        per_element = (predicted == targets).float().mean().item()
        per_sequence = (predicted == targets).all(dim=1).float().mean().item()
        shows = "\n".join(f"  in  {inputs[i].tolist()}\n  out {predicted[i].tolist()}"
                          for i in range(3))
        report = (f"accuracy per element {per_element:.3f}, per whole sequence "
                  f"{per_sequence:.3f} (1000 fresh sequences)\n{shows}")
        return {"per_element": per_element, "per_sequence": per_sequence}, report


TASKS = {"classify": ClassifyTask, "charlm": CharLMTask, "sort": SortTask}
# The flags that choose a task's data, saved in its checkpoints so that `evaluate` sees the
# data the model was trained on; the values are the defaults of checkpoints without them.
DATA_FLAGS = {
    "classify": dict(data=None, max_len=256, non_ascii="error"),
    "charlm": dict(text=None, seq=128, non_ascii="error"),
    "sort": dict(length=32, values=32),
}


def data_settings(args):
    """The task's data flags as given, with file paths made absolute."""
    settings = {name: getattr(args, name) for name in DATA_FLAGS[args.task]}
    for name in ("data", "text"):
        if settings.get(name):
            settings[name] = os.path.abspath(settings[name])
    return settings
DEFAULTS = {  # a few minutes each on two cores; --seed-sizes gives the handout's sizes
    "classify": dict(hidden=128, layers=2, steps=1500, batch=32, lr=3e-3, seed_layers=4),
    "charlm": dict(hidden=256, layers=2, steps=1500, batch=32, lr=3e-3, seed_layers=3),
    "sort": dict(hidden=128, layers=2, steps=3000, batch=64, lr=2e-3, seed_layers=4),
}


# ---------------------------------------------------------------- reporting

def format_confusion(confusion, classes):
    """Laid out as in the seed: one row per true class, one column per predicted class."""
    width = max(10, max(len(c) for c in classes) + 2)
    lines = [" " * width + "".join(f"{c.capitalize():>{width}}" for c in classes)]
    for name, row in zip(classes, confusion.tolist()):
        lines.append(f"{name.capitalize():<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines) + "\n(rows: true class, columns: predicted)"


def save_confusion_png(confusion, classes, accuracy, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(confusion[i, j].item()), ha="center", va="center")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {accuracy:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def unwrap(model):
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------- checkpoints

def gather_carry(carry, ctx):
    """Every rank's carried state (truncated BPTT), on the CPU, as a list indexed by rank:
    each rank reads its own streams, so each carries its own state. A collective: all ranks
    call it."""
    def to_cpu(c):
        if c is None:
            return None
        return tuple(t.cpu() for t in c) if isinstance(c, (list, tuple)) else c.cpu()
    if ctx.world == 1:
        return [to_cpu(carry)]
    gathered = [None] * ctx.world
    dist.all_gather_object(gathered, to_cpu(carry))
    return gathered


def carry_for_rank(saved, ctx):
    """This rank's carried state from a checkpoint, on its device; None (start the streams
    afresh) when the checkpoint was written by a different number of processes."""
    if saved is None:
        return None
    if not isinstance(saved, list):  # a checkpoint from before per-rank states: rank 0's
        saved = [saved]
    if len(saved) != ctx.world:
        if ctx.main:
            print(f"the checkpoint carries state for {len(saved)} process(es), this run has "
                  f"{ctx.world}: the truncated-BPTT state starts afresh")
        return None
    carry = saved[ctx.rank]
    if carry is None:
        return None
    if isinstance(carry, (list, tuple)):
        return tuple(c.to(ctx.device) for c in carry)
    return carry.to(ctx.device)


def save_checkpoint(path, payload):
    """Written to a temporary file first, then renamed: never a half-written checkpoint."""
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: no such checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- training

def train(args):
    ctx = setup_context(args.device)
    torch.manual_seed(args.seed)
    task = TASKS[args.task](args)
    out_dir = args.out or os.path.join("runs", args.task)
    path = os.path.join(out_dir, "checkpoint.pt")
    os.makedirs(out_dir, exist_ok=True)
    start, carry, state = 0, None, None
    if args.resume and os.path.exists(path):
        state = load_checkpoint(path)
        task.config = state["config"]
    model = task.build(task.config, use_torch=args.torch_layers).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, carry = state["step"], carry_for_rank(state.get("carry"), ctx)
        if ctx.main:
            print(f"resumed {path} at step {start}")
    model = wrap(model, ctx)
    amp = ctx.device.type == "cuda" and not args.no_amp
    bar = tqdm(total=args.steps, initial=start, desc=args.task, disable=not ctx.main,
               dynamic_ncols=True) if tqdm else None
    began, loss_avg = time.time(), None
    for step in range(start, args.steps):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss, carry = task.loss(model, step, args, ctx, carry)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_avg:.3f}")
        done = step + 1
        if done % args.save_every == 0 or done == args.steps:
            carries = gather_carry(carry, ctx)  # every rank takes part
            if ctx.main:
                save_checkpoint(path, {"task": args.task, "config": task.config,
                                       "data": data_settings(args),
                                       "model": unwrap(model).state_dict(),
                                       "optimizer": optimizer.state_dict(), "step": done,
                                       "carry": carries, "seed": args.seed})
    if bar:
        bar.close()
    result = None
    if ctx.main:
        metrics, report = task.evaluate(model, args, ctx, out_dir)
        print(report)
        print(f"trained steps {start}..{args.steps} in {time.time() - began:.1f} s on "
              f"{ctx.device} x {ctx.world}; checkpoint {path}")
        result = metrics
    if ctx.world > 1:
        dist.destroy_process_group()
    return result


def evaluate(args):
    state = load_checkpoint(args.checkpoint)
    args.task = state["task"]
    # The network's sizes come from the checkpoint, and so do the data flags it was trained
    # with; a flag given here overrides the saved one.
    saved = {**DATA_FLAGS[args.task], **state.get("data", {})}
    for name, value in saved.items():
        given = getattr(args, name, None)
        if given is not None and given != value:
            print(f"evaluating with --{name.replace('_', '-')} {given} (the model was trained "
                  f"with {value})")
        setattr(args, name, value if given is None else given)
    for name, default in (("hidden", 0), ("layers", 0), ("reset_before", False),
                          ("cell", "lstm")):
        setattr(args, name, getattr(args, name, default))
    ctx = Context(torch.device(args.device))
    task = TASKS[args.task](args)
    model = task.build(state["config"], use_torch=args.torch_layers).to(ctx.device)
    model.load_state_dict(state["model"])
    metrics, report = task.evaluate(model, args, ctx, os.path.dirname(args.checkpoint))
    print(report)
    return metrics


def generate(args):
    state = load_checkpoint(args.checkpoint)
    if state["task"] != "charlm":
        raise DataError(f"{args.checkpoint}: a {state['task']} checkpoint; generate needs a "
                        "charlm one")
    model = CharLanguageModel(use_torch=args.torch_layers, **state["config"]).to(args.device)
    model.load_state_dict(state["model"])
    text = model.generate(args.length, args.prompt, args.temperature,
                          torch.Generator().manual_seed(args.seed))
    print(args.prompt + text)
    return text


def parser():
    p = argparse.ArgumentParser(prog="python -m fastrnn.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(q, non_ascii_default="error"):
        q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--torch-layers", action="store_true",
                       help="build the network from torch.nn's layers instead of fastrnn's")
        q.add_argument("--non-ascii", choices=["error", "replace"], default=non_ascii_default,
                       help="what to do with non-ASCII characters in your own data")

    for name in TASKS:
        q = sub.add_parser(name, help=f"train the {name} model")
        common(q)
        d = DEFAULTS[name]
        q.add_argument("--hidden", type=int, default=d["hidden"])
        q.add_argument("--layers", type=int, default=d["layers"])
        q.add_argument("--steps", type=int, default=d["steps"])
        q.add_argument("--batch", type=int, default=d["batch"])
        q.add_argument("--lr", type=float, default=d["lr"])
        q.add_argument("--seed-sizes", action="store_true",
                       help=f"the handout's sizes: 512 units, {d['seed_layers']} layers")
        q.add_argument("--reset-before", action="store_true",
                       help="the handout's GRU (reset gate before the recurrent product)")
        q.add_argument("--out", help=f"folder for the checkpoint (default runs/{name})")
        q.add_argument("--resume", action="store_true", help="continue from the checkpoint")
        q.add_argument("--save-every", type=int, default=100)
        q.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
        if name == "classify":
            q.add_argument("--data", help="CSV with columns text,label (default: VADER)")
            q.add_argument("--max-len", type=int, default=256)
        if name == "charlm":
            q.add_argument("--text", help="a text file (default: the stdlib's docstrings)")
            q.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
            q.add_argument("--seq", type=int, default=128)
        if name == "sort":
            q.add_argument("--length", type=int, default=32)
            q.add_argument("--values", type=int, default=32)
    q = sub.add_parser("evaluate", help="evaluate a checkpoint (on the data settings it was "
                       "trained with, unless given here)")
    q.add_argument("checkpoint")
    common(q, non_ascii_default=None)
    q.add_argument("--data")
    q.add_argument("--text")
    q.add_argument("--max-len", type=int)
    q.add_argument("--seq", type=int)
    q.add_argument("--length", type=int)
    q.add_argument("--values", type=int)
    q = sub.add_parser("generate", help="sample text from a charlm checkpoint")
    q.add_argument("checkpoint")
    common(q)
    q.add_argument("--length", type=int, default=400)
    q.add_argument("--prompt", default="The ")
    q.add_argument("--temperature", type=float, default=0.8)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.command == "evaluate":
            return evaluate(args)
        if args.command == "generate":
            return generate(args)
        args.task = args.command
        if args.seed_sizes:
            args.hidden, args.layers = 512, DEFAULTS[args.task]["seed_layers"]
        args.cell = getattr(args, "cell", "lstm")
        return train(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
