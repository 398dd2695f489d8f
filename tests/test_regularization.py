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
