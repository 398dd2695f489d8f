"""The handout's three example networks (section 7), built from fastrnn layers.

Each takes `use_torch=True` to build the same network from torch.nn's layers instead: the
parameter names are the same, so a state_dict moves between the two and the results can
be compared.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

from ..data.text import E_DIM, printable


def recurrent_layer(cell, input_size, hidden_size, num_layers, use_torch=False,
                    reset_after=True, **kwargs):
    """An LSTM or GRU stack from fastrnn (default) or from torch.nn."""
    if cell == "lstm":
        cls = nn.LSTM if use_torch else fastrnn.LSTM
        return cls(input_size, hidden_size, num_layers, **kwargs)
    if cell != "gru":
        raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
    if use_torch:
        if not reset_after:
            raise ValueError("torch.nn has no reset_after=False GRU")
        return nn.GRU(input_size, hidden_size, num_layers, **kwargs)
    return fastrnn.GRU(input_size, hidden_size, num_layers, reset_after=reset_after, **kwargs)


class SentimentClassifier(nn.Module):
    """Many-to-one (seed 7.1): one-hot characters, a bidirectional GRU stack, the forward
    direction's output at each text's last character and the backward direction's output at
    its first character, each projected to E_DIM and summed, then projected to the classes.
    The texts go in packed with their true lengths, so padding never dilutes the summary.
    """

    def __init__(self, num_classes, hidden_size=512, num_layers=4, e_dim=E_DIM,
                 use_torch=False, reset_after=True):
        super().__init__()
        self.e_dim = e_dim
        self.rnn = recurrent_layer("gru", e_dim, hidden_size, num_layers, use_torch,
                                   reset_after, bidirectional=True, batch_first=True)
        self.project_forward = nn.Linear(hidden_size, e_dim)
        self.project_backward = nn.Linear(hidden_size, e_dim)
        self.classify = nn.Linear(e_dim, num_classes)

    def forward(self, codes, lengths):
        """codes: [B, T] int64; lengths: [B] (CPU int64). Returns logits [B, classes]."""
        x = F.one_hot(codes, self.e_dim).to(self.classify.weight.dtype)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.rnn(packed)
        # The last layer's final states: forward at the last character, backward at the first.
        summary = self.project_forward(h_n[-2]) + self.project_backward(h_n[-1])
        return self.classify(summary)


class CharLanguageModel(nn.Module):
    """Many-to-many (seed 7.2): one-hot characters through an LSTM or GRU stack, projected
    to E_DIM logits for the next character."""

    def __init__(self, cell="lstm", hidden_size=512, num_layers=3, e_dim=E_DIM,
                 use_torch=False, reset_after=True):
        super().__init__()
        self.e_dim = e_dim
        self.rnn = recurrent_layer(cell, e_dim, hidden_size, num_layers, use_torch,
                                   reset_after, batch_first=True)
        self.project = nn.Linear(hidden_size, e_dim)

    def forward(self, codes, state=None):
        """codes: [B, T]; returns (logits [B, T, E_DIM], final state)."""
        x = F.one_hot(codes, self.e_dim).to(self.project.weight.dtype)
        out, state = self.rnn(x, state)
        return self.project(out), state

    @torch.no_grad()
    def generate(self, length, prompt=" ", temperature=1.0, generator=None):
        """Samples `length` characters one at a time, the state carried from step to step
        as the seed's generate_text does; non-printable characters become spaces."""
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


class Sorter(nn.Module):
    """Many-to-one-to-many (seed 7.3): a GRU encoder reads the one-hot numbers; a GRU
    decoder fed zeros starts from the encoder's final states and writes the sorted sequence,
    each position projected to the classes (numbers 1..n_values; 0 unused)."""

    def __init__(self, n_values=32, hidden_size=512, num_layers=4, use_torch=False,
                 reset_after=True):
        super().__init__()
        self.n_classes = n_values + 1
        self.encoder = recurrent_layer("gru", self.n_classes, hidden_size, num_layers,
                                       use_torch, reset_after, batch_first=True)
        self.decoder = recurrent_layer("gru", self.n_classes, hidden_size, num_layers,
                                       use_torch, reset_after, batch_first=True)
        self.project = nn.Linear(hidden_size, self.n_classes)

    def forward(self, numbers):
        """numbers: [B, T] in 1..n_values; returns logits [B, T, n_values + 1]."""
        x = F.one_hot(numbers, self.n_classes).to(self.project.weight.dtype)
        _, state = self.encoder(x)
        out, _ = self.decoder(torch.zeros_like(x), state)
        return self.project(out)


__all__ = ["SentimentClassifier", "CharLanguageModel", "Sorter", "recurrent_layer"]
