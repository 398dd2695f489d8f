"""Many-to-one-to-many: a GRU encoder-decoder that learns to sort a sequence of numbers
(the handout's third example, its section 7.3)."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import TrainSettings, recurrent_layer, step_generator
from .data import sorting_batch


class Sorter(nn.Module):
    """Many-to-one-to-many (the handout's 7.3): a GRU encoder reads the one-hot numbers; a GRU
    decoder fed zeros starts from the encoder's final states and writes the sorted sequence,
    each position projected to the classes (numbers 1..n_values; 0 unused).

    >>> import torch
    >>> from fastrnn.examples import Sorter
    >>> model = Sorter(n_values=8, hidden_size=16, num_layers=1)
    >>> model(torch.randint(1, 9, (4, 6))).shape  # logits over 0..8 for each position
    torch.Size([4, 6, 9])
    """

    def __init__(self, n_values=32, hidden_size=512, num_layers=4, use_torch=False,
                 reset_after=True, layer_norm=False, zoneout=0.0):
        super().__init__()
        self.n_classes = n_values + 1
        self.encoder = recurrent_layer("gru", self.n_classes, hidden_size, num_layers,
                                       use_torch, reset_after, layer_norm, zoneout,
                                       batch_first=True)
        self.decoder = recurrent_layer("gru", self.n_classes, hidden_size, num_layers,
                                       use_torch, reset_after, layer_norm, zoneout,
                                       batch_first=True)
        self.project = nn.Linear(hidden_size, self.n_classes)

    def forward(self, numbers):
        """numbers: [B, T] in 1..n_values; returns logits [B, T, n_values + 1]."""
        x = F.one_hot(numbers, self.n_classes).to(self.project.weight.dtype)
        _, state = self.encoder(x)
        out, _ = self.decoder(torch.zeros_like(x), state)
        return self.project(out)


@dataclass
class SortSettings(TrainSettings):
    length: int = 32  # numbers per sequence
    values: int = 32  # numbers are drawn from 1..values


class SortTask:
    name = "sort"
    Settings = SortSettings
    defaults = dict(hidden=256, layers=2, steps=10000, batch=64, lr=2e-3, warmup=200,
                    eval_every=0)
    quick = dict(hidden=128, steps=3000)  # --quick: about two minutes on two CPU cores
    handout_layers = 4
    metric, higher_is_better = "per_element", True  # the held-out figure of metrics.csv
    compare_target = 0.9  # what `compare` times by default

    def __init__(self, settings: SortSettings):
        self.settings = s = settings
        self.config = dict(n_values=s.values, hidden_size=s.hidden, num_layers=s.layers,
                           reset_after=s.reset_after, layer_norm=s.layer_norm,
                           zoneout=s.zoneout)

    @staticmethod
    def build(config, use_torch=False):
        return Sorter(use_torch=use_torch, **config)

    def loss(self, model, step, ctx, carry):
        s = self.settings
        inputs, targets = sorting_batch(s.batch, s.length, s.values,
                                        step_generator(s.seed, step))
        inputs, targets = inputs[ctx.rank::ctx.world], targets[ctx.rank::ctx.world]
        logits = model(inputs.to(ctx.device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                               targets.to(ctx.device).reshape(-1))
        return loss, carry

    @torch.no_grad()
    def evaluate(self, model, ctx, out_dir=None, final=True):
        s = self.settings
        model.eval()
        inputs, targets = sorting_batch(1000, s.length, s.values,
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
