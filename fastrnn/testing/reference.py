"""Plain-PyTorch recurrent layers: the reference every fastrnn kernel is checked against.

Written for clarity, one time step at a time, from the equations (torch.nn's gate order
and parameter names), differentiable by autograd. Run it in float64. It covers what
torch.nn lacks: the GRU with the reset gate applied before the recurrent product (Cho et
al. 2014). To check a layer of your own configuration::

    from fastrnn.testing import reference_rnn
    layer = fastrnn.GRU(8, 16, num_layers=2, reset_after=False, dtype=torch.float64)
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    expected, h_n, _ = reference_rnn(layer, x)
    torch.testing.assert_close(layer(x)[0], expected)
"""
import torch


def lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh, w_hr):
    h, c = state
    gates = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if w_hr is not None:
        h = h @ w_hr.T
    return h, (h, c)


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, reset_after):
    b_ih = torch.zeros_like(w_ih[:, 0]) if b_ih is None else b_ih
    b_hh = torch.zeros_like(w_hh[:, 0]) if b_hh is None else b_hh
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = b_hh.chunk(3)
    r = torch.sigmoid(x_r + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x_z + h @ w_hz.T + b_hz)
    if reset_after:
        n = torch.tanh(x_n + r * (h @ w_hn.T + b_hn))
    else:
        n = torch.tanh(x_n + (r * h) @ w_hn.T + b_hn)
    h = (1 - z) * n + z * h
    return h, h


def rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    a = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        a = a + b_ih + b_hh
    h = torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)
    return h, h


def layer_norm(v, gain, bias, eps):
    """v normalised over its last dimension (biased variance), scaled and shifted."""
    mean = v.mean(-1, keepdim=True)
    variance = ((v - mean) ** 2).mean(-1, keepdim=True)
    v = (v - mean) / torch.sqrt(variance + eps) * gain
    return v if bias is None else v + bias


def layernorm_lstm_cell(x, state, w_ih, w_hh, ln_ih, ln_hh, ln_cell, eps):
    """Ba, Kiros & Hinton (2016) as haste formulates it; ln_*: (gain, bias or None)."""
    h, c = state
    gates = layer_norm(x @ w_ih.T, *ln_ih, eps) + layer_norm(h @ w_hh.T, *ln_hh, eps)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(layer_norm(c, *ln_cell, eps))
    return h, (h, c)


def layernorm_gru_cell(x, h, w_ih, w_hh, ln_ih, ln_hh, reset_after, eps):
    """The layer-normalised GRU (haste's formulation), torch.nn's gate order r, z, n;
    ln_*: (gain, bias or None), each [3H]. Reset before the product, the candidate's rows
    are normalised apart from r's and z's (the product needs r first)."""
    x_r, x_z, x_n = layer_norm(x @ w_ih.T, *ln_ih, eps).chunk(3, dim=-1)
    gain, bias = ln_hh
    if reset_after:
        h_r, h_z, h_n = layer_norm(h @ w_hh.T, gain, bias, eps).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
    else:
        H = h.shape[-1]
        part = lambda v, rows: None if v is None else v[rows]  # noqa: E731
        rz, cand = slice(0, 2 * H), slice(2 * H, 3 * H)
        h_r, h_z = layer_norm(h @ w_hh[rz].T, gain[rz], part(bias, rz), eps).chunk(2, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + layer_norm((r * h) @ w_hh[cand].T, gain[cand], part(bias, cand),
                                        eps))
    h = (1 - z) * n + z * h
    return h, h


def zoneout(keep, previous, new):
    """Zoneout (Krueger et al. 2016): each unit keeps its previous state with weight keep
    (a 0/1 mask in training, the keep probability in evaluation)."""
    return keep * previous + (1 - keep) * new


def run_direction(cell, x, state, lengths, reverse, keep=None, cells=None):
    """x: [T, B, I]. A sequence b runs over its own steps t < lengths[b]; after its end its
    state is kept and its output is zero (packed-sequence semantics). keep: zoneout's keep
    weights of each state, (h's, c's) for an LSTM, each [T, B, width] or a number; the
    output is then the zoned-out h. cells: a list that receives each step's cell state
    (an LSTM's state[1], zero where the sequence has ended), in time order."""
    T, B = x.shape[:2]
    lengths = torch.full((B,), T) if lengths is None else lengths.cpu()
    outputs = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        out, new_state = cell(x[t], state)
        if keep is not None:
            weights = [k[t] if isinstance(k, torch.Tensor) else k for k in keep]
            if isinstance(state, tuple):
                new_state = tuple(zoneout(k, o, n) for k, o, n in zip(weights, state, new_state))
                out = new_state[0]
            else:
                new_state = out = zoneout(weights[0], state, new_state)
        active = (t < lengths).to(x.dtype)[:, None]
        outputs[t] = out * active
        carry = lambda new, old: active * new + (1 - active) * old  # noqa: E731
        if isinstance(state, tuple):
            state = tuple(carry(n, o) for n, o in zip(new_state, state))
        else:
            state = carry(new_state, state)
        if cells is not None:
            cells.append((t, state[1] * active))
    if cells is not None:
        cells.sort(key=lambda step: step[0])
        cells[:] = [c for _, c in cells]
    return torch.stack(outputs) if T else x.new_zeros((0, B, 0)), state


def reference_rnn(module, x, hx=None, lengths=None, reset_after=None, weights=None,
                  zoneout_keep=None, cell_sequence=False):
    """Runs `module`'s parameters (a torch.nn or fastrnn layer) through the reference.

    x: [T, B, I] time-major (batch_first is ignored); hx as torch.nn takes it; lengths [B];
    weights: {parameter name: tensor} to use in place of some of the module's (for
    example its recurrent weights with DropConnect's mask applied); zoneout_keep: a keep
    probability for every state (evaluation), or per layer and direction (layer-major) the
    masks (h's, c's or None), [T, B, width] each (training).
    Returns (output [T, B, D*P], h_n, c_n or None), and with cell_sequence (LSTM) the last
    layer's cell state at every step [T, B, D*H] as a fourth. Dropout is not applied.
    """
    mode = module.mode
    if reset_after is None:
        reset_after = getattr(module, "reset_after", True)
    L = module.num_layers
    D = 2 if module.bidirectional else 1
    T, B = x.shape[:2]
    P = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    H = module.hidden_size
    if hx is None:
        h0 = x.new_zeros((L * D, B, P))
        c0 = x.new_zeros((L * D, B, H)) if mode == "LSTM" else None
    elif mode == "LSTM":
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    params = {**dict(module.named_parameters()), **(weights or {})}
    h_n, c_n = [], []
    layer_input = x
    for layer in range(L):
        outs, cell_steps = [], []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = params["weight_ih" + sfx], params["weight_hh" + sfx]
            b_ih, b_hh = params.get("bias_ih" + sfx), params.get("bias_hh" + sfx)
            k = layer * D + d
            if zoneout_keep is None:
                keep = None
            elif isinstance(zoneout_keep, (int, float)):
                keep = (zoneout_keep, zoneout_keep)
            else:
                keep = zoneout_keep[k]
            if mode == "LSTM":
                w_hr = params.get("weight_hr" + sfx)
                cell = lambda xt, s: lstm_cell(xt, s, w_ih, w_hh, b_ih, b_hh, w_hr)  # noqa
                steps = []
                out, (h, c) = run_direction(cell, layer_input, (h0[k], c0[k]), lengths, d == 1,
                                            keep, steps)
                cell_steps.append(torch.stack(steps))
                c_n.append(c)
            elif mode == "GRU":
                cell = lambda xt, s: gru_cell(xt, s, w_ih, w_hh, b_ih, b_hh, reset_after)  # noqa
                out, h = run_direction(cell, layer_input, h0[k], lengths, d == 1, keep)
            else:
                nl = "tanh" if mode == "RNN_TANH" else "relu"
                cell = lambda xt, s: rnn_cell(xt, s, w_ih, w_hh, b_ih, b_hh, nl)  # noqa
                out, h = run_direction(cell, layer_input, h0[k], lengths, d == 1, keep)
            outs.append(out)
            h_n.append(h)
        layer_input = torch.cat(outs, dim=2)
    result = (layer_input, torch.stack(h_n), torch.stack(c_n) if mode == "LSTM" else None)
    return (*result, torch.cat(cell_steps, dim=2)) if cell_sequence else result


def reference_layernorm_lstm(module, x, hx=None, lengths=None, zoneout_keep=None,
                             weights=None, cell_sequence=False):
    """Runs a fastrnn.LayerNormLSTM's parameters through the reference. x: [T, B, I]
    time-major; hx (h_0, c_0) as the layer takes them; lengths [B]; zoneout_keep, weights
    and cell_sequence as reference_rnn takes them. Returns (output [T, B, D*H], h_n, c_n),
    and with cell_sequence the last layer's cell states [T, B, D*H]. Dropout is not
    applied."""
    def cell(p, sfx, ln):
        return lambda xt, s: layernorm_lstm_cell(xt, s, p["weight_ih" + sfx], p["weight_hh" + sfx],
                                                 ln["ih"], ln["hh"], ln["cell"], module.eps)
    B, H = x.shape[1], module.hidden_size
    L, D = module.num_layers, 2 if module.bidirectional else 1
    h0, c0 = hx if hx is not None else (x.new_zeros((L * D, B, H)),) * 2
    cells = [] if cell_sequence else None
    output, finals = _run_layernorm_layers(module, x, [(h0[k], c0[k]) for k in range(L * D)],
                                           lengths, cell, ("ih", "hh", "cell"), zoneout_keep,
                                           weights, cells)
    result = (output, torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
    return (*result, torch.cat(cells, dim=2)) if cell_sequence else result


def reference_layernorm_gru(module, x, hx=None, lengths=None, zoneout_keep=None, weights=None):
    """Runs a fastrnn.LayerNormGRU's parameters through the reference, in the layer's reset
    form. x: [T, B, I] time-major; hx [num_layers * D, B, H]; lengths [B]; zoneout_keep and
    weights as reference_rnn takes them. Returns (output [T, B, D*H], h_n). Dropout is not
    applied."""
    def cell(p, sfx, ln):
        return lambda xt, s: layernorm_gru_cell(xt, s, p["weight_ih" + sfx], p["weight_hh" + sfx],
                                                ln["ih"], ln["hh"], module.reset_after, module.eps)
    B, H = x.shape[1], module.hidden_size
    L, D = module.num_layers, 2 if module.bidirectional else 1
    h0 = hx if hx is not None else x.new_zeros((L * D, B, H))
    output, finals = _run_layernorm_layers(module, x, list(h0), lengths, cell, ("ih", "hh"),
                                           zoneout_keep, weights)
    return output, torch.stack(finals)


def _run_layernorm_layers(module, x, initial, lengths, make_cell, norms, zoneout_keep, weights,
                          cells=None):
    """The layers and directions of a layer-normalised module; make_cell(parameters,
    suffix, {norm: (gain, bias or None)}) gives one direction's step. cells, a list: receives
    each direction's cell states of the last layer [T, B, H] (an LSTM's)."""
    D = 2 if module.bidirectional else 1
    p = {**dict(module.named_parameters()), **(weights or {})}
    finals = []
    layer_input = x
    for layer in range(module.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            ln = {part: (p[f"layer_norm_{part}_weight{sfx}"], p.get(f"layer_norm_{part}_bias{sfx}"))
                  for part in norms}
            k = layer * D + d
            if zoneout_keep is None or isinstance(zoneout_keep, (int, float)):
                keep = None if zoneout_keep is None else (zoneout_keep, zoneout_keep)
            else:
                keep = zoneout_keep[k]
            steps = [] if cells is not None and layer == module.num_layers - 1 else None
            out, state = run_direction(make_cell(p, sfx, ln), layer_input, initial[k], lengths,
                                       d == 1, keep, steps)
            if steps is not None:
                cells.append(torch.stack(steps))
            outs.append(out)
            finals.append(state)
        layer_input = torch.cat(outs, dim=2)
    return layer_input, finals
