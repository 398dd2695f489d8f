"""fastrnn's regularisers beyond torch.nn: recurrent DropConnect (weight_dropout, Merity et
al. 2017), checked against the plain-PyTorch float64 reference given the same masks, on the
CPU back-end and (FASTRNN_EMULATE_CUDA=1) the emulated CUDA one."""
import warnings

import pytest
import torch
import torch.nn.functional as F

import fastrnn
from fastrnn.testing import reference_rnn

LAYERS = {
    "lstm": lambda **kw: fastrnn.LSTM(5, 7, **kw),
    "lstm_proj": lambda **kw: fastrnn.LSTM(5, 7, proj_size=3, **kw),
    "gru": lambda **kw: fastrnn.GRU(5, 7, **kw),
    "gru_reset_before": lambda **kw: fastrnn.GRU(5, 7, reset_after=False, **kw),
    "rnn_tanh": lambda **kw: fastrnn.RNN(5, 7, **kw),
}


def dropped_weights(layer, p, seed):
    """The recurrent weights as a training call drops them: one mask per weight_hh, drawn
    from torch's generator in the order of the layer's parameter names."""
    torch.manual_seed(seed)
    return {name: F.dropout(getattr(layer, name), p, training=True)
            for name in layer._flat_weights_names if name.startswith("weight_hh")}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_weight_dropout_matches_the_reference_with_the_same_masks(kind):
    torch.manual_seed(0)
    layer = LAYERS[kind](num_layers=2, bidirectional=True, weight_dropout=0.4,
                         dtype=torch.float64)
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(11)
    out = layer(x)[0]
    weights = dropped_weights(layer, 0.4, 11)
    expected = reference_rnn(layer, x, weights=weights)[0]
    torch.testing.assert_close(out, expected)
    params = [x] + list(layer.parameters())
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, params, grad)
    want = torch.autograd.grad(expected, params, grad)
    for name, g, w in zip(["input"] + [n for n, _ in layer.named_parameters()], got, want):
        torch.testing.assert_close(g, w, msg=lambda m: f"{name}: {m}")


def test_weight_dropout_draws_from_torch_generator_once_per_call():
    layer = fastrnn.GRU(5, 7, weight_dropout=0.5)
    x = torch.randn(4, 2, 5)
    torch.manual_seed(3)
    first = layer(x)[0]
    torch.manual_seed(3)
    assert torch.equal(layer(x)[0], first)  # manual_seed reproduces the masks
    assert not torch.equal(layer(x)[0], first)  # the next call draws new ones


def test_weight_dropout_acts_in_training_only_and_keeps_the_state_dict():
    torch.manual_seed(0)
    reference = torch.nn.LSTM(5, 7, num_layers=2)
    layer = fastrnn.LSTM(5, 7, num_layers=2, weight_dropout=0.3)
    layer.load_state_dict(reference.state_dict())
    assert list(layer.state_dict()) == list(reference.state_dict())
    x = torch.randn(4, 2, 5)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], reference(x)[0], atol=2e-5, rtol=1e-4)
    layer.train()
    assert not torch.allclose(layer(x)[0], reference(x)[0])
    assert torch.equal(layer.weight_hh_l0, reference.weight_hh_l0)  # the parameter untouched


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, True, "0.2", None])
def test_weight_dropout_must_be_a_probability(p):
    with pytest.raises(ValueError, match=r"weight_dropout must be a probability in \[0, 1\)"):
        fastrnn.LSTM(4, 5, weight_dropout=p)


def test_weight_dropout_in_repr_and_to_torch():
    layer = fastrnn.GRU(4, 5, weight_dropout=0.25)
    assert "weight_dropout=0.25" in repr(layer)
    with pytest.warns(UserWarning, match="does not carry over to torch.nn"):
        converted = fastrnn.to_torch(torch.nn.Sequential(layer))[0]
    assert type(converted) is torch.nn.GRU and "weight_dropout" not in converted.__dict__


def test_weight_dropout_with_a_parametrization():
    torch.manual_seed(0)
    layer = fastrnn.LSTM(5, 6, weight_dropout=0.3)
    torch.nn.utils.parametrizations.weight_norm(layer, "weight_hh_l0")
    x = torch.randn(4, 2, 5)
    torch.manual_seed(5)
    out = layer(x)[0]
    out.sum().backward()
    assert layer.parametrizations.weight_hh_l0.original0.grad is not None
    expected = reference_rnn(layer, x, weights=dropped_weights(layer, 0.3, 5))[0]
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)


def test_weight_dropout_where_torch_nn_would_run_raises():
    layer = fastrnn.GRU(4, 5, weight_dropout=0.3)
    x = torch.randn(3, 2, 4)
    gradient = torch.func.grad(lambda inp: layer(inp)[0].sum())
    with pytest.raises(RuntimeError, match="torch.nn has no weight_dropout to fall back on"):
        gradient(x)
    layer.eval()  # no mask in evaluation: torch.nn's implementation computes the same
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert gradient(x).shape == x.shape


@pytest.mark.slow
def test_weight_dropout_compiles_fullgraph():
    torch.manual_seed(0)
    layer = fastrnn.LSTM(5, 6, weight_dropout=0.3)
    x = torch.randn(4, 2, 5)
    compiled = torch.compile(layer, fullgraph=True)
    torch.manual_seed(7)
    got = compiled(x)[0]
    torch.manual_seed(7)
    want = layer(x)[0]
    assert got.shape == want.shape and got.requires_grad
    got.sum().backward()
    assert layer.weight_hh_l0.grad is not None
    torch.manual_seed(8)
    again = compiled(x)[0]
    torch.manual_seed(8)
    assert torch.equal(compiled(x)[0], again)  # the compiled graph's masks reproduce too


# ---------------------------------------------------------------- zoneout

ZONEOUT_KINDS = dict(LAYERS, rnn_relu=lambda **kw: fastrnn.RNN(5, 7, nonlinearity="relu", **kw))


def drawn_zoneout_masks(layer, T, B, p, seed, dtype=torch.float64):
    """The masks a training call draws: per layer and direction (layer-major) h's, then
    (LSTM) c's, from torch's generator."""
    torch.manual_seed(seed)
    P = layer.proj_size if getattr(layer, "proj_size", 0) else layer.hidden_size
    masks = []
    for _ in range(layer.num_layers * (2 if layer.bidirectional else 1)):
        h = torch.bernoulli(torch.full((T, B, P), p, dtype=dtype))
        c = (torch.bernoulli(torch.full((T, B, layer.hidden_size), p, dtype=dtype))
             if layer.mode == "LSTM" else None)
        masks.append((h, c) if c is not None else (h,))
    return masks


def gradients(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad, allow_unused=True, retain_graph=True)


@pytest.mark.parametrize("kind", list(ZONEOUT_KINDS))
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]])
def test_zoneout_in_training_matches_the_reference_with_the_same_masks(kind, lengths):
    torch.manual_seed(0)
    layer = ZONEOUT_KINDS[kind](num_layers=2, bidirectional=True, zoneout=0.35,
                                dtype=torch.float64)
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    inp = x
    if lengths is not None:  # packed, unsorted: the layer runs in sorted order
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths),
                                                      enforce_sorted=False)
    torch.manual_seed(21)
    out = layer(inp)[0]
    if lengths is not None:
        out = torch.nn.utils.rnn.pad_packed_sequence(out)[0]
        order = torch.tensor(lengths).argsort(descending=True, stable=True)
        masks = drawn_zoneout_masks(layer, 6, 3, 0.35, 21)
        # the masks were drawn for the sorted batch: put them back in the user's order
        inverse = order.argsort()
        masks = [tuple(m[:, inverse] for m in ms) for ms in masks]
        expected = reference_rnn(layer, x, lengths=torch.tensor(lengths), zoneout_keep=masks)[0]
        expected = expected[: out.shape[0]]
    else:
        masks = drawn_zoneout_masks(layer, 6, 3, 0.35, 21)
        expected = reference_rnn(layer, x, zoneout_keep=masks)[0]
    torch.testing.assert_close(out, expected)
    params = [x] + list(layer.parameters())
    grad = torch.randn_like(out)
    for name, g, w in zip(["input"] + [n for n, _ in layer.named_parameters()],
                          gradients(out, params, grad), gradients(expected, params, grad)):
        torch.testing.assert_close(g, w, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kind", list(ZONEOUT_KINDS))
def test_zoneout_in_evaluation_is_the_expected_value(kind):
    torch.manual_seed(0)
    layer = ZONEOUT_KINDS[kind](num_layers=2, zoneout=0.3, dtype=torch.float64).eval()
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 3, layer.proj_size or 7, dtype=torch.float64) \
        if getattr(layer, "proj_size", 0) else torch.randn(2, 3, 7, dtype=torch.float64)
    hx = (state, torch.randn(2, 3, 7, dtype=torch.float64)) if layer.mode == "LSTM" else state
    out, final = layer(x, hx)
    expected, h_n, c_n = reference_rnn(layer, x, hx, zoneout_keep=0.3)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(final[0] if layer.mode == "LSTM" else final, h_n)
    grad = torch.randn_like(out)
    params = [x] + list(layer.parameters())
    for g, w in zip(gradients(out, params, grad), gradients(expected, params, grad)):
        torch.testing.assert_close(g, w)
    with torch.no_grad():  # inference: the same, and no mask is drawn
        torch.manual_seed(1)
        again = layer(x, hx)[0]
        assert torch.equal(torch.rand(1), (torch.manual_seed(1), torch.rand(1))[1])
    torch.testing.assert_close(again, expected)


def test_zoneout_masks_come_from_torch_generator():
    layer = fastrnn.LSTM(5, 7, zoneout=0.5)
    x = torch.randn(4, 2, 5)
    torch.manual_seed(3)
    first = layer(x)[0]
    torch.manual_seed(3)
    assert torch.equal(layer(x)[0], first)
    assert not torch.equal(layer(x)[0], first)


def test_zoneout_unbatched_and_batch_first():
    torch.manual_seed(0)
    layer = fastrnn.GRU(5, 7, zoneout=0.3, batch_first=True, dtype=torch.float64).eval()
    x = torch.randn(6, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], reference_rnn(layer, x[:, None],
                                                          zoneout_keep=0.3)[0][:, 0])
    xb = torch.randn(3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(xb)[0], reference_rnn(
        layer, xb.transpose(0, 1), zoneout_keep=0.3)[0].transpose(0, 1))


@pytest.mark.parametrize("cell", ["lstm", "lstm_proj", "gru", "gru_reset_before", "rnn"])
def test_zoneout_operators_gradcheck(cell):
    from fastrnn._ops import ops
    from test_ops import forward_args, forward_op
    options = {"lstm": {}, "lstm_proj": {"proj": True}, "gru": {"reset_after": True},
               "gru_reset_before": {"reset_after": False}, "rnn": {"nonlinearity": "tanh"}}[cell]
    base = cell.split("_")[0]
    args = forward_args(base, options, "cpu", False, "unsorted")
    T, B = args[0].shape[:2]
    torch.manual_seed(4)
    P = args[1].shape[1]
    mask_h = torch.bernoulli(torch.full((T, B, P), 0.4, dtype=torch.float64))
    if base == "lstm":
        H = args[2].shape[1]
        mask_c = torch.bernoulli(torch.full((T, B, H), 0.4, dtype=torch.float64))
        zoneouts = [(mask_h, mask_c, 0.4), (None, None, 0.4)]
    else:
        zoneouts = [(mask_h, 0.4), (None, 0.4)]
    n_out = 3 if base == "lstm" else 2
    for zoneout in zoneouts:
        def f(*inputs):
            return forward_op(base)(*inputs, *zoneout)[:n_out]
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-5)
    assert ops is not None


def test_zoneout_double_backward():
    torch.manual_seed(0)
    layer = fastrnn.LSTM(3, 4, zoneout=0.4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    for training in (True, False):
        layer.train(training)

        def f(inp):
            torch.manual_seed(9)  # the same masks at every evaluation
            return layer(inp)[0]
        assert torch.autograd.gradgradcheck(f, (x,), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("p", [-0.1, 1.0, True, "0.2"])
def test_zoneout_must_be_a_probability(p):
    with pytest.raises(ValueError, match=r"zoneout must be a probability in \[0, 1\)"):
        fastrnn.GRU(4, 5, zoneout=p)


def test_zoneout_operator_arguments_are_checked():
    from fastrnn._ops import ops
    gates, h0, c0 = torch.randn(5, 2, 12), torch.randn(2, 3), torch.randn(2, 3)
    w_hh = torch.randn(12, 3)
    good = torch.ones(5, 2, 3)
    cases = [
        (dict(zoneout_h=good), "zoneout_h and zoneout_c are given together"),
        (dict(zoneout_h=torch.ones(5, 2, 4), zoneout_c=good), r"zoneout_h must have shape"),
        (dict(zoneout_h=good.double(), zoneout_c=good), "zoneout_h must be Float"),
        (dict(zoneout=1.0), r"zoneout must lie in \[0, 1\)"),
        (dict(zoneout=-0.5), r"zoneout must lie in \[0, 1\)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(RuntimeError, match=message):
            ops.lstm_forward(gates, h0, c0, w_hh, None, None, None, False, True, **kwargs)
    with pytest.raises(RuntimeError, match="zoneout_h must have shape"):
        ops.gru_forward(torch.randn(5, 2, 9), h0, torch.randn(9, 3), None, None, False, True,
                        True, zoneout_h=torch.ones(4, 2, 3))


def test_zoneout_cannot_go_to_torch_nn():
    layer = fastrnn.GRU(4, 5, zoneout=0.2)
    with pytest.raises(ValueError, match="zoneout=0.2 has no torch.nn equivalent"):
        fastrnn.to_torch(torch.nn.Sequential(layer))
    assert "zoneout=0.2" in repr(layer)
    layer.eval()  # zoneout acts in evaluation too: no fallback there either
    with pytest.raises(RuntimeError, match="torch.nn has no zoneout to fall back on"):
        torch.func.grad(lambda inp: layer(inp)[0].sum())(torch.randn(3, 2, 4))


def test_zoneout_with_chunked_inference(monkeypatch):
    """No-grad calls in training mode draw masks too, and a long sequence's chunks each
    take their own steps of them."""
    from fastrnn import functional
    monkeypatch.setattr(functional, "INFERENCE_CHUNK_BYTES", 4 * 3 * 28 * 2)  # 2 steps
    torch.manual_seed(0)
    layer = fastrnn.LSTM(5, 7, zoneout=0.4)
    x = torch.randn(7, 3, 5)
    with torch.no_grad():
        torch.manual_seed(5)
        chunked = layer(x)[0]
    masks = drawn_zoneout_masks(layer, 7, 3, 0.4, 5, dtype=torch.float32)
    torch.testing.assert_close(chunked, reference_rnn(layer, x, zoneout_keep=masks)[0],
                               atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_zoneout_compiles_fullgraph():
    # compiled graphs draw from their own generator unless told to fall back on eager's
    with torch._inductor.config.patch(fallback_random=True):
        compiled_zoneout_matches_eager()


def compiled_zoneout_matches_eager():
    torch.manual_seed(0)
    layer = fastrnn.GRU(5, 6, zoneout=0.3, num_layers=2)
    x = torch.randn(4, 2, 5, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True)
    torch.manual_seed(7)
    got = compiled(x)[0]
    torch.manual_seed(7)
    want = layer(x)[0]
    torch.testing.assert_close(got, want)
    got.sum().backward()
    layer.eval()
    torch.testing.assert_close(compiled(x)[0], layer(x)[0])


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_relu"])
def test_zoneout_in_bfloat16(bf16_kernels, kind):
    """bf16 with zoneout against the float64 reference, output and input gradient: within
    twice the error of the same bf16 layer without zoneout, plus the bf16 rule's atol."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, dtype=torch.float64)
    grad = torch.randn(8, 3, 16, dtype=torch.float64)
    errors = []
    cls, extra = {"lstm": (fastrnn.LSTM, {}), "gru": (fastrnn.GRU, {}),
                  "rnn_relu": (fastrnn.RNN, {"nonlinearity": "relu"})}[kind]
    for p in (0.0, 0.3):
        torch.manual_seed(1)  # the same weights with zoneout and without
        layer = cls(5, 16, num_layers=2, zoneout=p, dtype=torch.float64, **extra).eval()
        xe = x.clone().requires_grad_()
        exact = reference_rnn(layer, xe, zoneout_keep=p or None)[0]
        (exact_dx,) = torch.autograd.grad(exact, xe, grad)
        xb = x.bfloat16().requires_grad_()
        got = layer.bfloat16()(xb)[0]
        (got_dx,) = torch.autograd.grad(got, xb, grad.bfloat16())
        errors.append(max((got.double() - exact).abs().max().item(),
                          (got_dx.double() - exact_dx).abs().max().item()))
    assert errors[1] <= 2 * errors[0] + 2e-3, errors


# ---------------------------------------------------------------- every step's cell state

@pytest.mark.parametrize("proj_size", [0, 3])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]])
@pytest.mark.parametrize("zoneout", [0.0, 0.3])
def test_cell_sequence_matches_the_reference(proj_size, lengths, zoneout):
    torch.manual_seed(0)
    layer = fastrnn.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=proj_size,
                         return_cell_sequence=True, zoneout=zoneout,
                         dtype=torch.float64).eval()
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    if lengths is None:
        out, (h_n, c_n), cells = layer(x)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths),
                                                         enforce_sorted=False)
        out, (h_n, c_n), cells = layer(packed)
        assert isinstance(cells, torch.nn.utils.rnn.PackedSequence)
        assert torch.equal(cells.batch_sizes, out.batch_sizes)
        out = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=6)[0]
        cells = torch.nn.utils.rnn.pad_packed_sequence(cells, total_length=6)[0]
    expected = reference_rnn(layer, x, lengths=None if lengths is None else torch.tensor(lengths),
                             zoneout_keep=zoneout or None, cell_sequence=True)
    assert cells.shape == (6, 3, 14)
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(cells, expected[3])
    # differentiable: a loss on the cells alone, and on everything at once
    params = [x] + list(layer.parameters())
    grad = torch.randn_like(cells)
    for g, w in zip(gradients(cells, params, grad), gradients(expected[3], params, grad)):
        torch.testing.assert_close(g, w)
    loss = (cells * grad).sum() + out.sum() + c_n.sum()
    loss_ref = (expected[3] * grad).sum() + expected[0].sum() + expected[2].sum()
    for g, w in zip(torch.autograd.grad(loss, params), torch.autograd.grad(loss_ref, params)):
        torch.testing.assert_close(g, w)


def test_cell_sequence_layouts():
    torch.manual_seed(0)
    layer = fastrnn.LSTM(5, 7, batch_first=True, return_cell_sequence=True)
    out, (h, c), cells = layer(torch.randn(3, 6, 5))
    assert cells.shape == (3, 6, 7) and torch.equal(cells[:, -1], c[0])
    out, (h, c), cells = layer(torch.randn(6, 5))  # unbatched
    assert cells.shape == (6, 7) and torch.equal(cells[-1], c[0])
    with torch.no_grad():  # inference, one call of the stack
        assert layer(torch.randn(3, 6, 5))[2].shape == (3, 6, 7)
    assert "return_cell_sequence=True" in repr(layer)
    with pytest.raises(ValueError, match="return_cell_sequence=True has no torch.nn"):
        fastrnn.to_torch(torch.nn.Sequential(layer))
    with pytest.raises(TypeError, match="return_cell_sequence should be of type bool"):
        fastrnn.LSTM(5, 7, return_cell_sequence=1)
    with pytest.raises(TypeError):
        fastrnn.GRU(5, 7, return_cell_sequence=True)  # an LSTM's option only


def test_cell_sequence_gradcheck_and_double_backward():
    torch.manual_seed(0)
    layer = fastrnn.LSTM(3, 4, return_cell_sequence=True, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp)[2], (x,))
    assert torch.autograd.gradgradcheck(lambda inp: layer(inp)[2], (x,))


@pytest.mark.slow
def test_cell_sequence_compiles_fullgraph():
    torch.manual_seed(0)
    layer = fastrnn.LSTM(5, 6, num_layers=2, return_cell_sequence=True)
    x = torch.randn(4, 2, 5, requires_grad=True)
    got = torch.compile(layer, fullgraph=True)(x)[2]
    torch.testing.assert_close(got, layer(x)[2])
    got.sum().backward()
    assert x.grad is not None
