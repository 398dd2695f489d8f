"""Many-to-one: a bidirectional GRU that classifies the sentiment of a text, read one
character at a time (the handout's first example, its section 7.1)."""
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .common import TrainSettings, recurrent_layer
from .data import E_DIM, encode_batch, load_labelled_csv, load_vader
from .report import format_confusion, save_confusion_png


class SentimentClassifier(nn.Module):
    """Many-to-one (the handout's 7.1): one-hot characters, a bidirectional GRU stack, the forward
    direction's output at each text's last character and the backward direction's output at
    its first character, each projected to E_DIM and summed, then projected to the classes.
    The texts go in packed with their true lengths, so padding never dilutes the summary.

    >>> import torch
    >>> from fastrnn.examples import SentimentClassifier
    >>> model = SentimentClassifier(num_classes=3, hidden_size=16, num_layers=1)
    >>> codes = torch.randint(0, 128, (2, 10))  # two texts of up to 10 characters
    >>> model(codes, torch.tensor([10, 4])).shape
    torch.Size([2, 3])
    """

    def __init__(self, num_classes, hidden_size=512, num_layers=4, e_dim=E_DIM,
                 use_torch=False, reset_after=True, dropout=0.0, layer_norm=False,
                 zoneout=0.0):
        super().__init__()
        self.e_dim = e_dim
        self.rnn = recurrent_layer("gru", e_dim, hidden_size, num_layers, use_torch,
                                   reset_after, layer_norm, zoneout, bidirectional=True,
                                   batch_first=True,
                                   dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)  # on the final states too: a 1-layer stack has none
        self.project_forward = nn.Linear(hidden_size, e_dim)
        self.project_backward = nn.Linear(hidden_size, e_dim)
        self.classify = nn.Linear(e_dim, num_classes)

    def forward(self, codes, lengths):
        """codes: [B, T] int64; lengths: [B] (CPU int64). Returns logits [B, classes]."""
        x = F.one_hot(codes, self.e_dim).to(self.classify.weight.dtype)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.rnn(packed)
        # The last layer's final states: forward at the last character, backward at the first.
        h_n = self.drop(h_n)
        summary = self.project_forward(h_n[-2]) + self.project_backward(h_n[-1])
        return self.classify(summary)


@dataclass
class ClassifySettings(TrainSettings):
    data: Optional[str] = None  # a CSV with columns text,label; None: the VADER texts
    max_len: int = 256          # texts are cut to this many characters
    non_ascii: str = "error"    # or "replace"
    dropout: float = 0.0        # between the GRU layers and on the final states


class ClassifyTask:
    name = "classify"
    Settings = ClassifySettings
    defaults = dict(hidden=128, layers=2, steps=6000, batch=32, lr=3e-3, warmup=200,
                    eval_every=0, dropout=0.3)
    quick = dict(steps=1200)  # --quick: about two minutes on two CPU cores
    handout_layers = 4
    metric, higher_is_better = "accuracy", True  # the held-out figure of metrics.csv
    compare_target = 0.55  # what `compare` times by default

    def __init__(self, settings: ClassifySettings):
        self.settings = s = settings
        if s.data:
            texts, labels, self.classes = load_labelled_csv(s.data, non_ascii=s.non_ascii)
        else:
            texts, labels, self.classes, _ = load_vader()
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(1234))
        held = max(1, len(texts) // 10)
        self.test = [(texts[i][:s.max_len], labels[i]) for i in order[:held].tolist()]
        self.train = [(texts[i][:s.max_len], labels[i]) for i in order[held:].tolist()]
        self.batches_per_epoch = len(self.epoch_batches(0))  # the same count every epoch
        self.config = dict(num_classes=len(self.classes), hidden_size=s.hidden,
                           num_layers=s.layers, reset_after=s.reset_after,
                           dropout=s.dropout, layer_norm=s.layer_norm, zoneout=s.zoneout)

    @staticmethod
    def build(config, use_torch=False):
        return SentimentClassifier(use_torch=use_torch, **config)

    def batch(self, examples, device):
        codes, lengths = encode_batch([text for text, _ in examples])
        labels = torch.tensor([label for _, label in examples])
        return codes.to(device), lengths, labels.to(device)

    def epoch_batches(self, epoch):
        """One pass over the training texts in batches of similar length, so that little of
        each step is padding: shuffled, sorted by length within pools of 50 batches, cut into
        batches, the batches shuffled. Depends only on (seed, epoch), so a resumed run draws
        what the uninterrupted one would have."""
        if getattr(self, "_epoch", None) != epoch:  # the last epoch's batches are kept
            size = self.settings.batch
            g = torch.Generator().manual_seed(self.settings.seed * 7919 + epoch)
            order = torch.randperm(len(self.train), generator=g).tolist()
            pool = 50 * size
            batches = []
            for i in range(0, len(order), pool):
                chunk = sorted(order[i:i + pool], key=lambda k: len(self.train[k][0]))
                batches += [chunk[j:j + size] for j in range(0, len(chunk), size)]
            batches = [b for b in batches if len(b) == size] or batches  # no ragged tails
            self._batches = [batches[k] for k in torch.randperm(len(batches),
                                                                  generator=g).tolist()]
            self._epoch = epoch
        return self._batches

    def loss(self, model, step, ctx, carry):
        per_epoch = self.batches_per_epoch
        picks = self.epoch_batches(step // per_epoch)[step % per_epoch]
        mine = picks[ctx.rank::ctx.world]
        codes, lengths, labels = self.batch([self.train[i] for i in mine], ctx.device)
        return F.cross_entropy(model(codes, lengths), labels), carry

    @torch.no_grad()
    def evaluate(self, model, ctx, out_dir=None, final=True):
        model.eval()
        n = len(self.classes)
        confusion = torch.zeros(n, n, dtype=torch.int64)
        by_length = sorted(self.test, key=lambda example: len(example[0]))  # little padding
        for i in range(0, len(by_length), 128):
            codes, lengths, labels = self.batch(by_length[i:i + 128], ctx.device)
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
            png = os.path.join(out_dir, "confusion.png")
            if save_confusion_png(confusion, self.classes, accuracy, png):
                report += f"\nconfusion matrix drawn in {png}"
        return {"accuracy": accuracy, "f1": dict(zip(self.classes, f1)),
                "confusion": confusion.tolist()}, report
