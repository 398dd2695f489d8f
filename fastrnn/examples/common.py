"""What the three example tasks share: the recurrent layer they build from, the process
context (one process or a torchrun rank), per-step random draws, checkpoints and the
settings every training run has."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

import fastrnn

from .data import DataError


def recurrent_layer(cell, input_size, hidden_size, num_layers, use_torch=False,
                    reset_after=True, layer_norm=False, zoneout=0.0, **kwargs):
    """An LSTM or GRU stack from fastrnn (default) or from torch.nn (`use_torch`): the same
    parameters, so a state_dict moves between the two. `layer_norm`: fastrnn's
    LayerNormLSTM/GRU; `zoneout`: fastrnn's zoneout probability (neither has a torch.nn
    layer)."""
    if cell not in ("lstm", "gru"):
        raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
    if use_torch and (layer_norm or zoneout or not reset_after):
        what = ("layer-normalised" if layer_norm else "zoneout" if zoneout
                else "reset_after=False")
        raise ValueError(f"torch.nn has no {what} {cell.upper()}")
    gru = cell == "gru"
    if use_torch:
        return (nn.GRU if gru else nn.LSTM)(input_size, hidden_size, num_layers, **kwargs)
    extra = {"reset_after": reset_after} if gru else {}
    if zoneout:
        extra["zoneout"] = zoneout
    if layer_norm:
        cls = fastrnn.LayerNormGRU if gru else fastrnn.LayerNormLSTM
    else:
        cls = fastrnn.GRU if gru else fastrnn.LSTM
    return cls(input_size, hidden_size, num_layers, **extra, **kwargs)


@dataclass
class TrainSettings:
    """What every training run has; each task's settings add its model and data fields."""
    hidden: int
    layers: int
    steps: int
    batch: int
    lr: float
    reset_after: bool = True  # False: the handout's GRU (reset before the product)
    layer_norm: bool = False    # fastrnn's layer-normalised LSTM/GRU
    zoneout: float = 0.0        # the recurrent layers' zoneout probability
    seed: int = 0
    save_every: int = 100
    warmup: int = 0             # steps of linear learning-rate warm-up
    schedule: str = "cosine"    # then "cosine" decay to a tenth, or "constant"
    eval_every: int = 0         # held-out evaluation every this many steps (0: steps / 25)


# ---------------------------------------------------------------- processes

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


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def step_generator(seed, step, rank=0):
    """Each step's random draw depends only on (seed, step, rank), so a resumed run draws
    exactly what the uninterrupted one would have."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + rank)


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path, payload):
    """Written to a temporary file first, then renamed: never a half-written checkpoint."""
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: no such checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


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
