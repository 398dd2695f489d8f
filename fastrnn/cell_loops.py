"""The loops a user writes without fastrnn's layer-normalised layers: the benchmark's
baselines for fastrnn.LayerNormLSTM and LayerNormGRU (python -m fastrnn.bench --cells
layernorm_lstm,layernorm_gru; bench/layernorm.py).

Each runs the same mathematics as the fastrnn layer it wraps, on that layer's own parameters:
the input side of every step hoisted out of the loop (one product and one layer norm), then
a Python loop over the steps with ``F.layer_norm`` on the recurrent product (and, LSTM, on
the cell state). ``compiled=True`` compiles the step with ``torch.compile`` and keeps the
loop in Python, the way to compile such a loop that finishes: compiling the whole loop
unrolls every step (at T=256 it had not finished after 14 minutes on two cores).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .layernorm import LayerNormGRU, LayerNormLSTM


def _lstm_step(x_t, h, c, w_hh, gamma_hh, beta_hh, gamma_c, beta_c, eps):
    G = w_hh.shape[0]
    a = x_t + F.layer_norm(h @ w_hh.t(), (G,), gamma_hh, beta_hh, eps)
    i, f, g, o = a.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (G // 4,), gamma_c, beta_c, eps))
    return h, c


def _gru_step(x_t, h, w_hh, gamma_hh, beta_hh, eps, reset_after):
    H = h.shape[1]
    x_r, x_z, x_n = x_t.chunk(3, dim=1)
    if reset_after:
        h_r, h_z, h_n = F.layer_norm(h @ w_hh.t(), (3 * H,), gamma_hh, beta_hh, eps).chunk(3, 1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
    else:
        beta_rz, beta_n = (None, None) if beta_hh is None else (beta_hh[:2 * H], beta_hh[2 * H:])
        h_r, h_z = F.layer_norm(h @ w_hh[:2 * H].t(), (2 * H,), gamma_hh[:2 * H], beta_rz,
                                eps).chunk(2, 1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + F.layer_norm((r * h) @ w_hh[2 * H:].t(), (H,), gamma_hh[2 * H:],
                                          beta_n, eps))
    return (1 - z) * n + z * h


class CellLoop(nn.Module):
    """A fastrnn.LayerNormLSTM or LayerNormGRU's mathematics as a user's step loop over the
    layer's own parameters (unpacked time-major input, zero initial state). Returns
    ``(output, None)``, like a layer's ``(output, state)``."""

    def __init__(self, layer, compiled=False):
        super().__init__()
        if not isinstance(layer, (LayerNormLSTM, LayerNormGRU)):
            raise TypeError(f"CellLoop wraps a fastrnn.LayerNormLSTM or LayerNormGRU, got "
                            f"{type(layer).__name__}")
        self.layer = layer
        self.lstm = isinstance(layer, LayerNormLSTM)
        step = _lstm_step if self.lstm else _gru_step
        self.step = torch.compile(step, fullgraph=True, dynamic=False) if compiled else step

    def forward(self, x):
        layer = self.layer
        D = 2 if layer.bidirectional else 1
        for k in range(layer.num_layers):
            outs = []
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                p = lambda name: getattr(layer, name + sfx, None)  # noqa: E731
                w_ih = p("weight_ih")
                xs = F.layer_norm(x @ w_ih.t(), (w_ih.shape[0],), p("layer_norm_ih_weight"),
                                  p("layer_norm_ih_bias"), layer.eps)
                h = c = x.new_zeros(x.shape[1], layer.hidden_size)
                steps = [None] * x.shape[0]
                for t in (reversed(range(x.shape[0])) if d else range(x.shape[0])):
                    if self.lstm:
                        h, c = self.step(xs[t], h, c, p("weight_hh"), p("layer_norm_hh_weight"),
                                         p("layer_norm_hh_bias"), p("layer_norm_cell_weight"),
                                         p("layer_norm_cell_bias"), layer.eps)
                    else:
                        h = self.step(xs[t], h, p("weight_hh"), p("layer_norm_hh_weight"),
                                      p("layer_norm_hh_bias"), layer.eps, layer.reset_after)
                    steps[t] = h
                outs.append(torch.stack(steps))
            x = outs[0] if D == 1 else torch.cat(outs, dim=2)
        return x, None
