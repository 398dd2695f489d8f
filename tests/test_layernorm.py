"""fastrnn.LayerNormLSTM and LayerNormGRU (both reset forms) against the plain-PyTorch float64
reference (fastrnn.testing.reference_layernorm_lstm/_gru), forward and every gradient, on the
fused CPU operators and on the ATen path that runs where they have no kernel."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import layernorm
from fastrnn._ops import ops
from fastrnn.testing import reference_layernorm_gru, reference_layernorm_lstm

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, bias=False),
    dict(num_layers=1, bidirectional=True, batch_first=True),
]


# The layers under test: a constructor and the number of states it carries.
KINDS = {
    "lstm": (fastrnn.LayerNormLSTM, 2),
    "gru": (fastrnn.LayerNormGRU, 1),
    "gru_reset_before": (lambda *a, **k: fastrnn.LayerNormGRU(*a, reset_after=False, **k), 1),
}


@pytest.fixture(params=list(KINDS))
def kind(request):
    return request.param


def _make(kind, *args, **kwargs):
    return KINDS[kind][0](*args, **kwargs)


def _initial(kind, shape, **kwargs):
    """hx as the layer takes it, and its tensors."""
    states = [torch.randn(shape, **kwargs) for _ in range(KINDS[kind][1])]
    return (tuple(states) if len(states) == 2 else states[0]), states


def _flat(result):
    """(output, h_n[, c_n]) of a layer's result."""
    output, state = result
    return (output, *state) if isinstance(state, tuple) else (output, state)


def _reference(layer, x, states, lengths, **options):
    if isinstance(layer, fastrnn.LayerNormLSTM):
        return reference_layernorm_lstm(layer, x, tuple(states), lengths, **options)
    return reference_layernorm_gru(layer, x, states[0], lengths, **options)


def _randomised(layer):
    """Gains and biases away from their initial 1 and 0, so that each one matters."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("layer_norm"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if "_weight_" in name else 0.0))
    return layer


@pytest.fixture(params=["fused", "aten"])
def path(request, monkeypatch):
    """Both implementations: the fused operator and the ATen step loop."""
    if request.param == "aten":
        monkeypatch.setattr(layernorm, "_runs_fused", lambda x: False)
        monkeypatch.setattr(layernorm, "_warn_once", lambda message: None)
    elif not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormLSTM kernel here (the emulated CUDA back-end)")
    return request.param


def _grads(outputs, params, grads):
    return torch.autograd.grad(outputs, params, grads, allow_unused=True)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_matches_the_reference_in_float64(path, kind, config, lengths):
    torch.manual_seed(0)
    layer = _randomised(_make(kind, 4, 6, dtype=torch.float64, **config))
    L, D = layer.num_layers, 2 if layer.bidirectional else 1
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    hx, states = _initial(kind, (L * D, 3, 6), dtype=torch.float64, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    inp = x.transpose(0, 1) if layer.batch_first else x
    if lens is not None:
        inp = pack_padded_sequence(inp, lens, batch_first=layer.batch_first,
                                   enforce_sorted=False)
    out, *finals = _flat(layer(inp, hx))
    if lens is not None:
        out = pad_packed_sequence(out, batch_first=layer.batch_first, total_length=5)[0]
    if layer.batch_first:
        out = out.transpose(0, 1)
    want = _reference(layer, x, states, lens)
    for got, expected in zip((out, *finals), want):
        torch.testing.assert_close(got, expected)
    params = [x, *states] + list(layer.parameters())
    grads = [torch.randn_like(t) for t in want]
    if lens is not None:  # padded steps are no output: no gradient enters there
        grads[0] = grads[0] * (torch.arange(5)[:, None] < lens[None, :])[..., None]
    for got, expected in zip(_grads((out, *finals), params, grads),
                             _grads(want, params, grads)):
        torch.testing.assert_close(got, expected)


def test_float32_is_close_to_float64(path, kind):
    torch.manual_seed(0)
    exact = _randomised(_make(kind, 8, 16, num_layers=2, bidirectional=True,
                              dtype=torch.float64))
    single = _make(kind, 8, 16, num_layers=2, bidirectional=True)
    single.load_state_dict(exact.state_dict())
    x = torch.randn(20, 4, 8, dtype=torch.float64)
    want = exact(x)[0]
    got = single(x.float())[0]
    # a norm over a short row (H=16) scales the rounding by 1/std; the SIMD activations
    # round a few ulp off libm's
    torch.testing.assert_close(got.double(), want, atol=5e-5, rtol=1e-4)
    x32 = x.float().requires_grad_()
    single(x32)[0].sum().backward()
    x64 = x.clone().requires_grad_()
    exact(x64)[0].sum().backward()
    torch.testing.assert_close(x32.grad.double(), x64.grad, atol=1e-4, rtol=1e-3)


def test_gradcheck(path, kind):
    torch.manual_seed(0)
    layer = _randomised(_make(kind, 3, 4, bidirectional=True, dtype=torch.float64))
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]

    def f(inp, *params):
        return _flat(torch.func.functional_call(layer, dict(zip(names, params)), (inp,)))
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params))


def test_fused_operator_gradcheck_with_lengths():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormLSTM kernel here")
    torch.manual_seed(0)
    T, B, H = 4, 3, 3
    args = [torch.randn(T, B, 4 * H), torch.randn(B, H), torch.randn(B, H),
            torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(H), torch.randn(H)]
    args = [a.double().requires_grad_() for a in args]
    for reverse in (False, True):
        def f(*tensors):
            return layernorm._LayerNormLstmFunction.apply(*tensors, torch.tensor([4, 1, 3]),
                                                          reverse, 1e-5)
        assert torch.autograd.gradcheck(f, args)


def test_layouts_and_state_dict():
    torch.manual_seed(0)
    layer = fastrnn.LayerNormLSTM(4, 6, num_layers=2, batch_first=True)
    names = [name for name, _ in layer.named_parameters()]
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "layer_norm_ih_weight_l0",
                         "layer_norm_ih_bias_l0", "layer_norm_hh_weight_l0",
                         "layer_norm_hh_bias_l0", "layer_norm_cell_weight_l0",
                         "layer_norm_cell_bias_l0"]
    assert layer.weight_ih_l1.shape == (24, 6) and layer.layer_norm_cell_weight_l1.shape == (6,)
    assert torch.equal(layer.layer_norm_hh_weight_l0, torch.ones(24))
    out, (h, c) = layer(torch.randn(3, 5, 4))
    assert out.shape == (3, 5, 6) and h.shape == c.shape == (2, 3, 6)
    out, (h, c) = layer(torch.randn(5, 4))  # unbatched
    assert out.shape == (5, 6) and h.shape == (2, 6)
    copy = fastrnn.LayerNormLSTM(4, 6, num_layers=2, batch_first=True)
    copy.load_state_dict(layer.state_dict())
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(copy(x)[0], layer(x)[0], rtol=0, atol=0)
    assert "num_layers=2" in repr(layer) and "batch_first=True" in repr(layer)
    assert len(list(fastrnn.LayerNormLSTM(4, 6, bias=False).parameters())) == 5


def test_training_runs_dropout_and_backward(kind):
    torch.manual_seed(0)
    layer = _make(kind, 4, 6, num_layers=2, dropout=0.5)
    x = torch.randn(5, 3, 4, requires_grad=True)
    out = layer(x)[0]
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in layer.parameters())
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0], rtol=0, atol=0)


def test_empty_sequence_and_batch(kind):
    layer = _make(kind, 4, 6)
    out, h, *_ = _flat(layer(torch.randn(0, 2, 4)))
    assert out.shape == (0, 2, 6) and torch.equal(h, torch.zeros(1, 2, 6))
    out, *_ = _flat(layer(torch.randn(3, 0, 4)))
    assert out.shape == (3, 0, 6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(hidden_size=0), ValueError, "hidden_size must be a positive integer"),
    (dict(dropout=1.0), ValueError, r"dropout must be a probability in \[0, 1\)"),
    (dict(eps=0.0), ValueError, "eps must be a positive number"),
    (dict(bias=1), TypeError, "bias should be of type bool"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastrnn.LayerNormLSTM(**{"input_size": 4, "hidden_size": 6, **kwargs})


def test_bad_input():
    layer = fastrnn.LayerNormLSTM(4, 6, num_layers=2)
    x = torch.randn(5, 3, 4)
    with pytest.raises(fastrnn.InvalidShapeError, match="input_size. Expected 4, got 5"):
        layer(torch.randn(5, 3, 5))
    with pytest.raises(fastrnn.IncompatibleTensorError, match="like the parameters"):
        layer(x.double())
    with pytest.raises(fastrnn.NotATensorError):
        layer([1, 2, 3])
    with pytest.raises(fastrnn.NotAStatePairError):
        layer(x, torch.zeros(2, 3, 6))
    with pytest.raises(fastrnn.InvalidShapeError, match=r"h_0 must have shape \(2, 3, 6\)"):
        layer(x, (torch.zeros(1, 3, 6), torch.zeros(2, 3, 6)))
    with pytest.raises(fastrnn.IncompatibleTensorError, match="c_0 must be torch.float32"):
        layer(x, (torch.zeros(2, 3, 6), torch.zeros(2, 3, 6, dtype=torch.float64)))


def test_operator_checks_its_arguments():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormLSTM kernel here")
    T, B, H = 3, 2, 4
    good = dict(input_gates=torch.randn(T, B, 4 * H), h0=torch.zeros(B, H),
                c0=torch.zeros(B, H), w_hh=torch.randn(4 * H, H), gamma_hh=torch.ones(4 * H),
                gamma_c=torch.ones(H), beta_c=None, lengths=None, reverse=False, eps=1e-5)
    cases = [(dict(h0=torch.zeros(B, H + 1)), r"h0 must have shape \[2, 4\]"),
             (dict(w_hh=torch.randn(4 * H, H).double()), "w_hh must be Float"),
             (dict(lengths=torch.tensor([4, 1])), r"lengths must lie in \[0, T=3\]"),
             (dict(input_gates=torch.randn(T, B, 7)), "input_gates must be 3-D"),
             (dict(eps=0.0), "eps must be positive")]
    for change, match in cases:
        with pytest.raises(RuntimeError, match=match):
            ops.layernorm_lstm_forward(**{**good, **change})


def test_opcheck():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormLSTM kernel here")
    torch.manual_seed(0)
    T, B, H = 3, 2, 4
    forward_args = (torch.randn(T, B, 4 * H), torch.randn(B, H), torch.randn(B, H),
                    torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(H), torch.randn(H),
                    torch.tensor([3, 1]), True, 1e-5)
    torch.library.opcheck(ops.layernorm_lstm_forward.default, forward_args,
                          test_utils=("test_schema", "test_faketensor"))
    _, _, _, *saved = ops.layernorm_lstm_forward(*forward_args)
    backward_args = (torch.randn(T, B, H), None, torch.randn(B, H), *forward_args[3:7],
                     *saved, forward_args[7], True)
    torch.library.opcheck(ops.layernorm_lstm_backward.default, backward_args,
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.slow
def test_compiles_fullgraph(kind):
    torch.manual_seed(0)
    layer = _make(kind, 5, 6, num_layers=2)
    x = torch.randn(4, 2, 5, requires_grad=True)
    got = torch.compile(layer, fullgraph=True)(x)[0]
    torch.testing.assert_close(got, layer(x)[0])
    got.sum().backward()
    assert x.grad is not None and layer.weight_hh_l0.grad is not None


def test_double_backward_of_the_fused_operator_raises(kind):
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormLSTM kernel here")
    layer = _make(kind, 3, 4, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradients of gradients \(create_graph=True\)"):
        torch.autograd.grad(layer(x)[0].sum(), x, create_graph=True)
    grad, = torch.autograd.grad(layer(x)[0].sum(), x)  # first order as usual
    assert grad.shape == x.shape


# ---- the GRU's own


@pytest.mark.parametrize("reset_after", [True, False])
def test_fused_gru_operator_gradcheck_with_lengths(reset_after):
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormGRU kernel here")
    torch.manual_seed(0)
    T, B, H = 4, 3, 3
    args = [torch.randn(T, B, 3 * H), torch.randn(B, H), torch.randn(3 * H, H),
            torch.randn(3 * H), torch.randn(H)]
    args = [a.double().requires_grad_() for a in args]
    for reverse in (False, True):
        def f(*tensors):
            return layernorm._LayerNormGruFunction.apply(*tensors, torch.tensor([4, 1, 3]),
                                                         reverse, reset_after, 1e-5)
        assert torch.autograd.gradcheck(f, args)


def test_gru_layouts_and_state_dict():
    torch.manual_seed(0)
    layer = fastrnn.LayerNormGRU(4, 6, num_layers=2, bidirectional=True, reset_after=False)
    names = [name for name, _ in layer.named_parameters()]
    assert names[:6] == ["weight_ih_l0", "weight_hh_l0", "layer_norm_ih_weight_l0",
                         "layer_norm_ih_bias_l0", "layer_norm_hh_weight_l0",
                         "layer_norm_hh_bias_l0"]
    assert names[6] == "weight_ih_l0_reverse" and len(names) == 24
    assert layer.weight_ih_l1.shape == (18, 12) and layer.layer_norm_hh_bias_l1.shape == (18,)
    out, h = layer(torch.randn(5, 3, 4))
    assert out.shape == (5, 3, 12) and h.shape == (4, 3, 6)
    out, h = layer(torch.randn(5, 4), torch.zeros(4, 6))  # unbatched
    assert out.shape == (5, 12) and h.shape == (4, 6)
    copy = fastrnn.LayerNormGRU(4, 6, num_layers=2, bidirectional=True, reset_after=False)
    copy.load_state_dict(layer.state_dict())
    x = torch.randn(5, 3, 4)
    torch.testing.assert_close(copy(x)[0], layer(x)[0], rtol=0, atol=0)
    assert "reset_after=False" in repr(layer) and "bidirectional=True" in repr(layer)
    assert len(list(fastrnn.LayerNormGRU(4, 6, bias=False).parameters())) == 4


def test_gru_reset_forms_differ_and_bias_n_is_inside_the_reset():
    """The two forms are different functions of the same parameters; reset after, the n
    rows of the recurrent LN bias are scaled by r (b_hn in torch.nn.GRU)."""
    torch.manual_seed(0)
    after = _randomised(fastrnn.LayerNormGRU(4, 6, dtype=torch.float64))
    before = fastrnn.LayerNormGRU(4, 6, reset_after=False, dtype=torch.float64)
    before.load_state_dict(after.state_dict())
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    assert not torch.allclose(after(x)[0], before(x)[0])
    moved = fastrnn.LayerNormGRU(4, 6, dtype=torch.float64)
    moved.load_state_dict(after.state_dict())
    with torch.no_grad():  # b_hn moved to the input side gives another function
        moved.layer_norm_ih_bias_l0[12:] += moved.layer_norm_hh_bias_l0[12:]
        moved.layer_norm_hh_bias_l0[12:] = 0
    assert not torch.allclose(after(x)[0], moved(x)[0])


def test_gru_bad_arguments_and_input():
    with pytest.raises(TypeError, match="reset_after should be of type bool"):
        fastrnn.LayerNormGRU(4, 6, reset_after=0)
    layer = fastrnn.LayerNormGRU(4, 6, num_layers=2)
    x = torch.randn(5, 3, 4)
    with pytest.raises(fastrnn.NotATensorError, match="LayerNormGRU: hx must be a Tensor"):
        layer(x, (torch.zeros(2, 3, 6),))
    with pytest.raises(fastrnn.InvalidShapeError, match=r"h_0 must have shape \(2, 3, 6\)"):
        layer(x, torch.zeros(1, 3, 6))
    with pytest.raises(fastrnn.IncompatibleTensorError, match="h_0 must be torch.float32"):
        layer(x, torch.zeros(2, 3, 6, dtype=torch.float64))
    with pytest.raises(fastrnn.InvalidShapeError, match="LayerNormGRU: input.size"):
        layer(torch.randn(5, 3, 5))


def test_gru_operators_check_their_arguments_and_opcheck():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormGRU kernel here")
    torch.manual_seed(0)
    T, B, H = 3, 2, 4
    good = dict(input_gates=torch.randn(T, B, 3 * H), h0=torch.zeros(B, H),
                w_hh=torch.randn(3 * H, H), gamma_hh=torch.ones(3 * H), beta_n=None,
                lengths=None, reverse=False, reset_after=True, eps=1e-5)
    cases = [(dict(h0=torch.zeros(B, H + 1)), r"h0 must have shape \[2, 4\]"),
             (dict(beta_n=torch.zeros(H).double()), "beta_n must be Float"),
             (dict(lengths=torch.tensor([4, 1])), r"lengths must lie in \[0, T=3\]"),
             (dict(input_gates=torch.randn(T, B, 8)), "input_gates must be 3-D"),
             (dict(eps=-1.0), "eps must be positive")]
    for change, match in cases:
        with pytest.raises(RuntimeError, match=match):
            ops.layernorm_gru_forward(**{**good, **change})
    for reset_after in (True, False):
        forward_args = (torch.randn(T, B, 3 * H), torch.randn(B, H), torch.randn(3 * H, H),
                        torch.randn(3 * H), torch.randn(H), torch.tensor([3, 1]), True,
                        reset_after, 1e-5)
        torch.library.opcheck(ops.layernorm_gru_forward.default, forward_args,
                              test_utils=("test_schema", "test_faketensor"))
        _, _, *saved = ops.layernorm_gru_forward(*forward_args)
        backward_args = (torch.randn(T, B, H), torch.randn(B, H), *forward_args[2:5], *saved,
                         forward_args[5], True, reset_after)
        torch.library.opcheck(ops.layernorm_gru_backward.default, backward_args,
                              test_utils=("test_schema", "test_faketensor"))


# ---- zoneout and weight_dropout on the layer-normalised layers


def _drawn_masks(layer, T, B, p, seed):
    """The zoneout masks a training call draws: per layer and direction (layer-major) h's,
    then (LSTM) c's, from torch's generator, as the plain layers draw them."""
    torch.manual_seed(seed)
    lstm = isinstance(layer, fastrnn.LayerNormLSTM)
    masks = []
    for _ in range(layer.num_layers * (2 if layer.bidirectional else 1)):
        draw = [torch.bernoulli(torch.full((T, B, layer.hidden_size), p, dtype=torch.float64))
                for _ in range(2 if lstm else 1)]
        masks.append(tuple(draw))
    return masks


@pytest.mark.parametrize("lengths", [None, [5, 4, 2]])
def test_zoneout_in_training_matches_the_reference_with_the_same_masks(path, kind, lengths):
    torch.manual_seed(0)
    layer = _randomised(_make(kind, 4, 6, num_layers=2, bidirectional=True, zoneout=0.35,
                              dtype=torch.float64))
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    inp = x if lens is None else pack_padded_sequence(x, lens)  # sorted: no reordering
    torch.manual_seed(21)
    out, *finals = _flat(layer(inp))
    if lens is not None:
        out = pad_packed_sequence(out, total_length=5)[0]
    masks = _drawn_masks(layer, 5, 3, 0.35, 21)
    want = _reference(layer, x, [torch.zeros(4, 3, 6, dtype=torch.float64)] * KINDS[kind][1],
                      lens, zoneout_keep=masks)
    for got, expected in zip((out, *finals), want):
        torch.testing.assert_close(got, expected)
    params = [x] + list(layer.parameters())
    grads = [torch.randn_like(t) for t in want]
    if lens is not None:
        grads[0] = grads[0] * (torch.arange(5)[:, None] < lens[None, :])[..., None]
    for got, expected in zip(_grads((out, *finals), params, grads), _grads(want, params, grads)):
        torch.testing.assert_close(got, expected)


def test_zoneout_in_evaluation_is_the_expected_value(path, kind):
    torch.manual_seed(0)
    layer = _randomised(_make(kind, 4, 6, num_layers=2, zoneout=0.3, dtype=torch.float64))
    layer.eval()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    hx, states = _initial(kind, (2, 3, 6), dtype=torch.float64)
    out, *finals = _flat(layer(x, hx))
    want = _reference(layer, x, states, None, zoneout_keep=0.3)
    for got, expected in zip((out, *finals), want):
        torch.testing.assert_close(got, expected)
    grad = torch.randn_like(out)
    torch.testing.assert_close(_grads(out, x, grad)[0], _grads(want[0], x, grad)[0])


def test_fused_operators_gradcheck_with_zoneout():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNorm kernels here")
    torch.manual_seed(0)
    T, B, H = 4, 3, 3
    mask = torch.bernoulli(torch.full((T, B, H), 0.4, dtype=torch.float64))
    lstm_args = [torch.randn(T, B, 4 * H), torch.randn(B, H), torch.randn(B, H),
                 torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(H), torch.randn(H)]
    gru_args = [torch.randn(T, B, 3 * H), torch.randn(B, H), torch.randn(3 * H, H),
                torch.randn(3 * H), torch.randn(H)]
    lstm_args = [a.double().requires_grad_() for a in lstm_args]
    gru_args = [a.double().requires_grad_() for a in gru_args]
    lengths = torch.tensor([4, 1, 3])
    for masks, p in (((mask, 1 - mask), 0.4), ((None, None), 0.4)):
        assert torch.autograd.gradcheck(lambda *t: layernorm._LayerNormLstmFunction.apply(
            *t, lengths, True, 1e-5, *masks, p), lstm_args)
        for reset_after in (True, False):
            assert torch.autograd.gradcheck(lambda *t: layernorm._LayerNormGruFunction.apply(
                *t, lengths, False, reset_after, 1e-5, masks[0], p), gru_args)


def test_weight_dropout_is_one_mask_per_call_on_the_recurrent_weights(path, kind):
    torch.manual_seed(0)
    layer = _randomised(_make(kind, 4, 6, bidirectional=True, weight_dropout=0.4,
                              dtype=torch.float64))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    torch.manual_seed(7)
    out = layer(x)[0]
    torch.manual_seed(7)
    dropped = {name: F.dropout(p, 0.4, training=True)
               for name, p in layer.named_parameters() if name.startswith("weight_hh")}
    zeros = [torch.zeros(2, 3, 6, dtype=torch.float64)] * KINDS[kind][1]
    torch.testing.assert_close(out, _reference(layer, x, zeros, None, weights=dropped)[0])
    assert all(torch.equal(v, before[k]) for k, v in layer.state_dict().items())
    layer.eval()  # evaluation: the weights as they are
    torch.testing.assert_close(layer(x)[0], _reference(layer, x, zeros, None)[0])
    assert "weight_dropout=0.4" in repr(layer)


@pytest.mark.parametrize("option", ["zoneout", "weight_dropout"])
def test_options_must_be_probabilities(kind, option):
    with pytest.raises(ValueError, match=rf"{option} must be a probability in \[0, 1\)"):
        _make(kind, 4, 6, **{option: 1.0})


def test_zoneout_operator_arguments_are_checked():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNorm kernels here")
    T, B, H = 3, 2, 4
    args = (torch.randn(T, B, 4 * H), torch.zeros(B, H), torch.zeros(B, H),
            torch.randn(4 * H, H), torch.ones(4 * H), torch.ones(H), None, None, False, 1e-5)
    with pytest.raises(RuntimeError, match="zoneout_h and zoneout_c are given together"):
        ops.layernorm_lstm_forward(*args, torch.ones(T, B, H), None, 0.5)
    with pytest.raises(RuntimeError, match=r"zoneout_h must have shape \[3, 2, 4\]"):
        ops.layernorm_gru_forward(torch.randn(T, B, 3 * H), torch.zeros(B, H),
                                  torch.randn(3 * H, H), torch.ones(3 * H), None, None, False,
                                  True, 1e-5, torch.ones(T, B, H + 1), 0.5)
    with pytest.raises(RuntimeError, match=r"zoneout must lie in \[0, 1\)"):
        ops.layernorm_lstm_forward(*args, None, None, 1.0)


# ---- every step's cell state (LayerNormLSTM)


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_cell_sequence_matches_the_reference(path, lengths):
    torch.manual_seed(0)
    layer = _randomised(fastrnn.LayerNormLSTM(4, 6, num_layers=2, bidirectional=True,
                                              batch_first=True, return_cell_sequence=True,
                                              dtype=torch.float64))
    layer.zoneout = 0.3  # evaluation: the expected value, in the cell states too
    layer.eval()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    inp = x.transpose(0, 1)
    if lens is not None:
        inp = pack_padded_sequence(inp, lens, batch_first=True, enforce_sorted=False)
    out, (h_n, c_n), cells = layer(inp)
    if lens is not None:
        assert isinstance(cells, torch.nn.utils.rnn.PackedSequence)
        out = pad_packed_sequence(out, batch_first=True, total_length=5)[0]
        cells = pad_packed_sequence(cells, batch_first=True, total_length=5)[0]
    want = reference_layernorm_lstm(layer, x, None, lens, zoneout_keep=0.3, cell_sequence=True)
    got = (out.transpose(0, 1), h_n, c_n, cells.transpose(0, 1))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    params = [x] + list(layer.parameters())
    grads = [torch.randn_like(t) for t in want]
    if lens is not None:
        running = (torch.arange(5)[:, None] < lens[None, :])[..., None]
        grads[0], grads[3] = grads[0] * running, grads[3] * running
    for g, w in zip(_grads(got, params, grads), _grads(want, params, grads)):
        torch.testing.assert_close(g, w)
    assert "return_cell_sequence=True" in repr(layer)


def test_fused_operator_gradcheck_with_the_cell_sequence():
    if not layernorm._runs_fused(torch.zeros(1, dtype=torch.float64)):
        pytest.skip("no fused LayerNormLSTM kernel here")
    torch.manual_seed(0)
    T, B, H = 4, 3, 3
    args = [torch.randn(T, B, 4 * H), torch.randn(B, H), torch.randn(B, H),
            torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(H), torch.randn(H)]
    args = [a.double().requires_grad_() for a in args]
    mask = torch.bernoulli(torch.full((T, B, H), 0.4, dtype=torch.float64))
    for reverse in (False, True):
        assert torch.autograd.gradcheck(lambda *t: layernorm._LayerNormLstmFunction.apply(
            *t, torch.tensor([4, 1, 3]), reverse, 1e-5, mask, mask.flip(0), 0.4, True), args)


def test_inference_keeps_no_buffers_for_backward_and_matches_training(kind):
    """Without autograd the fused operators keep one step of what backward reads (the
    same outputs as a call that keeps it all)."""
    torch.manual_seed(0)
    layer = _randomised(_make(kind, 4, 6, num_layers=2, bidirectional=True))
    for T in (0, 1, 5, 6):  # the final state in either of the two state slots
        x = torch.randn(T, 3, 4)
        hx, _ = _initial(kind, (4, 3, 6))
        with torch.no_grad():
            inference = _flat(layer(x, hx))
        training = _flat(layer(x.requires_grad_(), hx))
        for got, expected in zip(inference, training):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    if not layernorm._runs_fused(torch.zeros(1)):
        return
    args = (torch.randn(7, 3, 12), torch.zeros(3, 4), torch.randn(12, 4), torch.ones(12), None,
            None, False, False, 1e-5)
    saved = ops.layernorm_gru_forward(*args, save=False)[2:]
    assert [tuple(t.shape) for t in saved] == [(2, 3, 4), (1, 3, 12), (1, 3, 12), (1, 3, 2),
                                               (1, 3, 4)]


def test_opcheck_of_the_inference_forms():
    if not layernorm._runs_fused(torch.zeros(1)):
        pytest.skip("no fused LayerNorm kernels here")
    T, B, H = 3, 2, 4
    lstm = (torch.randn(T, B, 4 * H), torch.randn(B, H), torch.randn(B, H),
            torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(H), None, None, True, 1e-5)
    torch.library.opcheck(ops.layernorm_lstm_forward.default, lstm,
                          {"zoneout": 0.3, "save": False},
                          test_utils=("test_schema", "test_faketensor"))
    for reset_after in (True, False):
        gru = (torch.randn(T, B, 3 * H), torch.randn(B, H), torch.randn(3 * H, H),
               torch.randn(3 * H), torch.randn(H), torch.tensor([3, 2]), False, reset_after,
               1e-5)
        torch.library.opcheck(ops.layernorm_gru_forward.default, gru, {"save": False},
                              test_utils=("test_schema", "test_faketensor"))


def test_bfloat16_runs_the_aten_formulation_with_a_warning(kind, monkeypatch):
    monkeypatch.setattr(layernorm, "_warned", set())
    torch.manual_seed(0)
    single = _randomised(_make(kind, 8, 16, num_layers=2))
    half = _make(kind, 8, 16, num_layers=2, dtype=torch.bfloat16)
    half.load_state_dict(single.state_dict())
    x = torch.randn(6, 3, 8)
    with pytest.warns(UserWarning, match="no fused kernel for torch.bfloat16"):
        got = half(x.bfloat16())[0]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), single(x)[0], atol=0.05, rtol=0.05)
