"""Many-to-many: a character language model that learns a text and generates more of it
(the handout's second example, its section 7.2)."""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .common import TrainSettings, recurrent_layer, unwrap
from .data import E_DIM, DataError, load_corpus, printable


class CharLanguageModel(nn.Module):
    """Many-to-many (the handout's 7.2): one-hot characters through an LSTM or GRU stack, projected
    to E_DIM logits for the next character.

    >>> import torch
    >>> from fastrnn.examples import CharLanguageModel
    >>> model = CharLanguageModel("gru", hidden_size=16, num_layers=1)
    >>> logits, state = model(torch.randint(0, 128, (2, 7)))
    >>> logits.shape
    torch.Size([2, 7, 128])
    >>> len(model.generate(5, prompt="The ", generator=torch.Generator().manual_seed(0)))
    5
    """

    def __init__(self, cell="lstm", hidden_size=512, num_layers=3, e_dim=E_DIM,
                 use_torch=False, reset_after=True, dropout=0.0, layer_norm=False,
                 zoneout=0.0):
        super().__init__()
        self.e_dim = e_dim
        self.rnn = recurrent_layer(cell, e_dim, hidden_size, num_layers, use_torch,
                                   reset_after, layer_norm, zoneout, batch_first=True,
                                   dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)  # on the last layer's output too
        self.project = nn.Linear(hidden_size, e_dim)

    def forward(self, codes, state=None):
        """codes: [B, T]; returns (logits [B, T, E_DIM], final state)."""
        x = F.one_hot(codes, self.e_dim).to(self.project.weight.dtype)
        out, state = self.rnn(x, state)
        return self.project(self.drop(out)), state

    @torch.no_grad()
    def generate(self, length, prompt=" ", temperature=1.0, generator=None):
        """Samples `length` characters one at a time, the state carried from step to step
        as the handout's generate_text does; non-printable characters become spaces."""
        device = self.project.weight.device
        codes = torch.tensor([[ord(c) % self.e_dim for c in prompt]], device=device)
        logits, state = self(codes)
        text = []
        for _ in range(length):
            probs = F.softmax(logits[0, -1].float() / max(temperature, 1e-6), dim=-1)
            code = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            text.append(printable(code))
            logits, state = self(torch.tensor([[code]], device=device), state)
        return "".join(text)


@dataclass
class CharLMSettings(TrainSettings):
    cell: str = "gru"           # or "lstm"; the handout's sampler carries one state per
                                # layer, as a GRU has
    text: Optional[str] = None  # a text file; None: the docstrings of Python's stdlib
    seq: int = 128              # characters per truncated-BPTT chunk
    non_ascii: str = "error"    # or "replace"
    dropout: float = 0.0        # between the layers and on the last layer's output


class CharLMTask:
    name = "charlm"
    Settings = CharLMSettings
    defaults = dict(hidden=512, layers=2, steps=3000, batch=32, lr=2e-3, warmup=200,
                    eval_every=0, dropout=0.25)
    quick = dict(hidden=256, steps=800)  # --quick: about two minutes on two CPU cores
    handout_layers = 3
    metric, higher_is_better = "bits_per_char", False  # the held-out figure of metrics.csv
    compare_target = 2.0  # what `compare` times by default

    def __init__(self, settings: CharLMSettings):
        self.settings = s = settings
        codes = torch.tensor(load_corpus(s.text, non_ascii=s.non_ascii))
        held = max(s.seq + 1, len(codes) // 20)
        if len(codes) < 4 * held:
            raise DataError(f"{s.text or 'corpus'}: {len(codes)} characters is too short "
                            f"for sequences of {s.seq}")
        self.train_codes, self.test_codes = codes[:-held], codes[-held:]
        self.config = dict(cell=s.cell, hidden_size=s.hidden, num_layers=s.layers,
                           reset_after=s.reset_after, dropout=s.dropout,
                           layer_norm=s.layer_norm, zoneout=s.zoneout)

    @staticmethod
    def build(config, use_torch=False):
        return CharLanguageModel(use_torch=use_torch, **config)

    def loss(self, model, step, ctx, carry):
        """Truncated BPTT: the batch is `batch` parallel streams through the corpus; step k
        reads chunk k of each, and the state is carried from chunk to chunk, detached."""
        s = self.settings
        stream_len = len(self.train_codes) // s.batch
        chunks = (stream_len - 1) // s.seq
        k = step % chunks
        if k == 0:
            carry = None  # wrapped around: start the streams afresh
        starts = torch.arange(s.batch) * stream_len + k * s.seq
        mine = starts[ctx.rank::ctx.world]
        window = torch.stack([self.train_codes[i:i + s.seq + 1] for i in mine.tolist()])
        window = window.to(ctx.device)
        logits, state = model(window[:, :-1], carry)
        carry = tuple(c.detach() for c in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits.reshape(-1, E_DIM).float(), window[:, 1:].reshape(-1))
        return loss, carry

    @torch.no_grad()
    def evaluate(self, model, ctx, out_dir=None, final=True):
        model.eval()
        total, count, state = 0.0, 0, None
        codes = self.test_codes.to(ctx.device)
        for i in range(0, len(codes) - 1, 1024):
            chunk = codes[i:i + 1025]
            logits, state = model(chunk[None, :-1], state)
            total += F.cross_entropy(logits[0].float(), chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
        bpc = total / count / math.log(2)
        if not final:
            model.train()
            return {"bits_per_char": bpc}, f"bits per character {bpc:.3f}"
        sample = unwrap(model).generate(300, prompt="The ", temperature=0.8,
                                        generator=torch.Generator().manual_seed(0))
        model.train()
        report = (f"bits per character {bpc:.3f} on {count} held-out characters\n"
                  f"sample (temperature 0.8): The {sample}")
        return {"bits_per_char": bpc, "sample": sample}, report
