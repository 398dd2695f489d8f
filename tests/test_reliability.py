"""The torch.nn contract under misuse and in autograd's corners: weights read at every call,
double backward, meta and mixed devices, NaN/Inf, empty batches, malformed PackedSequence,
CPU autocast, named errors, compile with packed input, TorchScript."""
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.utils.checkpoint import checkpoint

import fastrnn
from helpers import KINDS, flat_state, make_pair, random_state
from fastrnn import _ops
from fastrnn._ops import GATES, ops


def outputs_of(result):
    """(output, *states) of a layer call as a flat list of tensors."""
    out, state = result
    return [out] + (list(state) if isinstance(state, tuple) else [state])


# ---------------------------------------------------------------- 1. weights read per call

class Doubled(nn.Module):
    def forward(self, weight):
        return 2 * weight


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_parametrization_is_applied_at_every_call(kind):
    reference, fast = make_pair(kind, 4, 6)
    for module in (reference, fast):
        parametrize.register_parametrization(module, "weight_hh_l0", Doubled())
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    expected, got = reference(x)[0], fast(x)[0]
    torch.testing.assert_close(got, expected)
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(fast.parametrizations.weight_hh_l0.original.grad,
                               reference.parametrizations.weight_hh_l0.original.grad)


@pytest.mark.parametrize("apply", [
    lambda m: parametrizations.weight_norm(m, name="weight_hh_l0"),
    lambda m: parametrizations.orthogonal(m, name="weight_hh_l0"),
    lambda m: parametrizations.spectral_norm(m, name="weight_hh_l0"),
], ids=["weight_norm", "orthogonal", "spectral_norm"])
def test_library_parametrizations(apply):
    reference, fast = make_pair("lstm", 4, 6)
    for module in (reference, fast):
        torch.manual_seed(1)  # spectral_norm draws its power-iteration vectors
        apply(module)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    reference.eval(), fast.eval()  # spectral_norm: no power iteration, the same sigma
    torch.testing.assert_close(fast(x)[0], reference(x)[0])


def test_swapped_parameter_is_used():
    reference, fast = make_pair("gru", 4, 6)
    new_weight = torch.randn(18, 6, dtype=torch.float64)
    reference.weight_hh_l0 = nn.Parameter(new_weight.clone())
    fast.weight_hh_l0 = nn.Parameter(new_weight.clone())
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(fast(x)[0], reference(x)[0])
    fast(x)[0].sum().backward()
    assert fast.weight_hh_l0.grad is not None


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_relu"])
def test_functional_call_and_torch_func_grad(kind):
    reference, fast = make_pair(kind, 4, 6)
    torch.manual_seed(3)
    params = {name: torch.randn_like(p) for name, p in reference.named_parameters()}
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    call = torch.func.functional_call
    torch.testing.assert_close(call(fast, params, (x,))[0], call(reference, params, (x,))[0])

    def loss(module):
        return lambda p: call(module, p, (x,))[0].square().sum()

    expected = torch.func.grad(loss(reference))(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch.nn fallback under torch.func says so once
        got = torch.func.grad(loss(fast))(params)
    for name in params:
        torch.testing.assert_close(got[name], expected[name], msg=name)


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "rnn_tanh"])
def test_forward_mode_ad_runs_torch_nn(kind):
    # dual tensors (torch.autograd.forward_ad): the operators have no forward-mode formulas,
    # so the layer runs torch.nn's implementation, with a warning, and gives its tangents
    import torch.autograd.forward_ad as fwAD
    reference, fast = make_pair(kind, 4, 6, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    tangent = torch.randn_like(x)
    results = []
    for layer in (reference, fast):
        with fwAD.dual_level(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = layer(fwAD.make_dual(x, tangent))[0]
            results.append([t.clone() for t in fwAD.unpack_dual(out)])
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected)


def test_forward_mode_ad_on_reset_before_gru_is_a_clear_error():
    import torch.autograd.forward_ad as fwAD
    gru = fastrnn.GRU(4, 6, reset_after=False)
    x = torch.randn(5, 2, 4)
    with fwAD.dual_level(), pytest.raises(RuntimeError, match="forward-mode AD .* no reset"):
        gru(fwAD.make_dual(x, torch.randn_like(x)))


def test_torch_func_grad_on_reset_before_gru_is_a_clear_error():
    gru = fastrnn.GRU(4, 6, reset_after=False)
    params = dict(gru.named_parameters())
    x = torch.randn(5, 2, 4)
    with pytest.raises(RuntimeError, match="torch.func transforms .* no reset_after=False"):
        torch.func.grad(lambda p: torch.func.functional_call(gru, p, (x,))[0].sum())(params)


# ---------------------------------------------------------------- 2. double backward

@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_create_graph_first_order_matches_torch(kind):
    reference, fast = make_pair(kind, 4, 6)
    x = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    expected, = torch.autograd.grad(reference(x)[0].square().sum(), x, create_graph=True)
    got, = torch.autograd.grad(fast(x)[0].square().sum(), x, create_graph=True)
    torch.testing.assert_close(got, expected)
    assert got.requires_grad


def _penalty_gradients(layer, x, state, lengths):
    """Gradients of (input, *state, *parameters) of a loss with a gradient penalty: the
    first-order gradients (taken with create_graph=True) squared and summed, so a second
    derivative runs through the layer's backward."""
    layer.zero_grad()
    inputs = [x] + flat_state(state)
    source = x if lengths is None else pack_padded_sequence(x, lengths, batch_first=True,
                                                           enforce_sorted=False)
    out, final = layer(source, state)
    out = out if lengths is None else pad_packed_sequence(out, batch_first=True)[0]
    loss = out.square().sum() + flat_state(final)[0].pow(3).sum()
    first = torch.autograd.grad(loss, inputs + list(layer.parameters()), create_graph=True)
    penalty = sum(g.square().sum() for g in first) + out.sum()
    second = torch.autograd.grad(penalty, inputs + list(layer.parameters()))
    return first + second


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"])
def test_double_backward_matches_torch_nn(kind, bidirectional, packed):
    # create_graph=True replays the forward with differentiable ops (csrc/replay.cpp): a
    # gradient penalty through every input, state and parameter, as torch.nn computes it
    reference, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=bidirectional,
                                batch_first=True)
    torch.manual_seed(1)
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    state = random_state(reference, 3, "cpu", torch.float64)
    lengths = torch.tensor([5, 2, 4]) if packed else None
    expected = _penalty_gradients(reference, x, state, lengths)
    got = _penalty_gradients(fast, x, state, lengths)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("batch", [0, 1])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_relu"])
def test_double_backward_of_one_step_and_empty_batch(kind, batch):
    reference, fast = make_pair(kind, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(1, batch, 3, dtype=torch.float64, requires_grad=True)
    state = random_state(reference, batch, "cpu", torch.float64)
    for got, expected in zip(_penalty_gradients(fast, x, state, None),
                             _penalty_gradients(reference, x, state, None)):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_third_derivative_matches_torch_nn(kind):
    reference, fast = make_pair(kind, 2, 3)
    x = torch.randn(4, 1, 2, dtype=torch.float64, requires_grad=True)

    def third(layer):
        g, = torch.autograd.grad(layer(x)[0].pow(2).sum(), x, create_graph=True)
        gg, = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(gg.pow(2).sum(), x)[0]

    torch.testing.assert_close(third(fast), third(reference))


def test_double_backward_in_float32_matches_torch_nn():
    reference, fast = make_pair("lstm", 8, 16, dtype=torch.float32, num_layers=2)
    x = torch.randn(20, 4, 8, requires_grad=True)
    state = random_state(reference, 4, "cpu", torch.float32)
    for got, expected in zip(_penalty_gradients(fast, x, state, None),
                             _penalty_gradients(reference, x, state, None)):
        scale = expected.abs().max().item()
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4 * scale)


def _backward_under(mode, layer, x):
    """Gradients of (input, *parameters) of a squared-sum loss, the forward run as `mode`."""
    xs = x.clone().requires_grad_()
    layer.zero_grad()
    if mode == "checkpoint":
        out = checkpoint(lambda t: layer(t)[0], xs, use_reentrant=False)
    elif mode == "checkpoint_reentrant":
        out = checkpoint(lambda t: layer(t)[0], xs, use_reentrant=True)
    elif mode == "save_on_cpu":
        with torch.autograd.graph.save_on_cpu():
            out = layer(xs)[0]
    elif mode == "saved_tensors_hooks":  # every saved tensor packed as a copy
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
            out = layer(xs)[0]
    else:  # retain_graph: a first backward keeps the graph for a second
        out = layer(xs)[0]
        out.sum().backward(retain_graph=True)
        layer.zero_grad()
        xs.grad = None
    out.square().sum().backward()
    return [xs.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("mode", ["checkpoint", "checkpoint_reentrant", "save_on_cpu",
                                  "saved_tensors_hooks", "retain_graph"])
@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "rnn_tanh"])
def test_autograd_machinery_around_the_kernels(kind, mode):
    # the C++ autograd formulas (csrc/autograd.cpp) under activation checkpointing, saved
    # tensor hooks and a retained graph, against torch.nn under the same
    reference, fast = make_pair(kind, 4, 6, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    for got, expected in zip(_backward_under(mode, fast, x), _backward_under(mode, reference, x)):
        torch.testing.assert_close(got, expected)


def test_second_backward_without_retain_graph_raises():
    out = fastrnn.GRU(4, 6)(torch.randn(5, 3, 4, requires_grad=True))[0].sum()
    out.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()


def test_linear_second_derivatives_match_f_linear():
    # the input projection's formula (csrc/autograd.cpp) under create_graph=True: every
    # gradient differentiable again, as F.linear's
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    second = []
    for linear in (ops.linear, torch.nn.functional.linear):
        first = torch.autograd.grad(linear(x, w, b).square().sum(), (x, w, b),
                                    create_graph=True)
        second.append(torch.autograd.grad(sum(g.square().sum() for g in first), (x, w, b)))
    for got, expected in zip(*second):
        torch.testing.assert_close(got, expected)
    assert torch.autograd.gradgradcheck(ops.linear, (x, w, b))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_final_state_detached_in_place(kind):
    # truncated BPTT: the final state carried to the next chunk with detach_(), which torch.nn
    # allows (its final states are not views)
    _, fast = make_pair(kind, 4, 6)
    state = None
    for _ in range(2):
        out, state = fast(torch.randn(5, 3, 4, dtype=torch.float64), state)
        out.sum().backward()
        for tensor in flat_state(state):
            tensor.detach_()
            assert not tensor.requires_grad


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_no_grad_final_state_is_its_own_memory(kind, steps):
    # inference returns the final state as a view of the operator's two-slot history
    # (csrc/drivers.h, final_state): in-place changes to it reach nothing else, and feeding
    # it back as the next call's state (a generation loop) matches torch.nn
    reference, fast = make_pair(kind, 4, 6)
    x = torch.randn(steps, 3, 4, dtype=torch.float64)
    results = []
    for layer in (reference, fast):
        with torch.no_grad():
            out, state = layer(x)
            kept = out.clone()
            for tensor in flat_state(state):
                assert tensor.storage_offset() == 0
                tensor.detach_().mul_(0.5)
            assert torch.equal(out, kept)
            results.append(outputs_of(layer(x, state)))
    for expected, got in zip(*results):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_changed_in_place_before_backward(kind, bidirectional):
    # ReLU(inplace=True) or in-place dropout after the layer: torch.nn's GRU and RNN allow
    # it on the CPU (fastrnn saves no output for its backward, so its LSTM allows it too)
    reference, fast = make_pair(kind, 4, 6, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    grads = []
    for layer in (reference, fast):
        xs = x.clone().requires_grad_()
        out, _ = layer(xs)
        out.mul_(torch.arange(out.shape[-1], dtype=out.dtype) - 2).relu_()
        out.square().sum().backward()
        grads.append([xs.grad] + [p.grad for p in layer.parameters()])
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("variant", ["lstm", "lstm_proj", "gru", "gru_reset_before",
                                     "rnn_tanh", "rnn_relu"])
def test_gradgradcheck_of_the_operators(variant, reverse):
    # second derivatives against finite differences of the first, through every argument,
    # the incoming gradients included; sequence lengths 3, 1 and 2 (one finishes early)
    op = variant.split("_")[0]
    g = GATES[op]
    torch.manual_seed(0)
    P = 2 if variant == "lstm_proj" else 4

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    gates, h0, w_hh, b_hh = rand(3, 3, g * 4), rand(3, P), rand(g * 4, P), rand(g * 4)
    lengths = torch.tensor([3, 1, 2])
    if op == "lstm":
        w_hr = rand(P, 4) if variant == "lstm_proj" else None
        inputs = (gates, h0, rand(3, 4), w_hh, b_hh) + ((w_hr,) if w_hr is not None else ())

        def f(gates, h0, c0, w_hh, b_hh, w_hr=None):
            return ops.lstm_forward(gates, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, True)[:3]
    elif op == "gru":
        inputs = (gates, h0, w_hh, b_hh)
        reset_after = variant == "gru"

        def f(*a):
            return ops.gru_forward(*a, lengths, reverse, reset_after, True)[:2]
    else:
        inputs = (gates, h0, w_hh, b_hh)
        nonlinearity = variant.split("_")[1]

        def f(*a):
            return ops.rnn_forward(*a, lengths, reverse, nonlinearity, True)[:2]
    assert torch.autograd.gradgradcheck(f, inputs)


# ---------------------------------------------------------------- 3. meta and mixed devices

PARAMETER_NAMES = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0",
                   "weight_hh_l1_reverse", "bias_hh_l1_reverse"]


@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_parameter_left_on_meta_is_named(name):
    lstm = fastrnn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3)
    meta = nn.Parameter(torch.empty_like(getattr(lstm, name), device="meta"))
    setattr(lstm, name, meta)
    with pytest.raises(ValueError, match=f"{name} is on meta but the input is on cpu"):
        lstm(torch.randn(5, 2, 4))


def test_meta_init_then_partial_load_raises():
    with torch.device("meta"):
        gru = fastrnn.GRU(4, 6)
    state = fastrnn.GRU(4, 6).state_dict()
    del state["bias_hh_l0"]
    gru.load_state_dict(state, assign=True, strict=False)
    with pytest.raises(ValueError, match="bias_hh_l0 is on meta"):
        gru(torch.randn(5, 2, 4))


def _meta_variants(args):
    """Each tensor argument in turn moved to the meta device."""
    for i, arg in enumerate(args):
        if isinstance(arg, torch.Tensor):
            changed = list(args)
            changed[i] = arg.to("meta")
            yield i, changed


@pytest.mark.parametrize("op", ["lstm", "gru", "rnn"])
def test_raw_op_with_any_argument_on_meta_raises(op):
    g = GATES[op]
    gates, h0, w_hh = torch.randn(3, 2, g * 4), torch.zeros(2, 4), torch.randn(g * 4, 4)
    bias, lengths = torch.zeros(g * 4), torch.tensor([3, 1])
    if op == "lstm":
        call, args = ops.lstm_forward, [gates, h0, torch.zeros(2, 4), w_hh, bias, None, lengths,
                                        False, True]
    elif op == "gru":
        call, args = ops.gru_forward, [gates, h0, w_hh, bias, lengths, False, True, True]
    else:
        call, args = ops.rnn_forward, [gates, h0, w_hh, bias, lengths, False, "tanh", True]
    saved = call(*args)
    for _, changed in _meta_variants(args):
        if changed[0].device.type == "meta":
            continue  # all-meta input_gates with CPU rest: also mixed, checked below
        with pytest.raises(RuntimeError, match="is on meta but input_gates is on cpu"):
            call(*changed)
    with pytest.raises(RuntimeError, match="is on cpu but input_gates is on meta"):
        call(gates.to("meta"), *args[1:])
    # the backward operators too
    if op == "lstm":
        back, bargs = ops.lstm_backward, [saved[0], None, None, w_hh, None, *saved[3:7],
                                          lengths, False]
    elif op == "gru":
        back, bargs = ops.gru_backward, [saved[0], None, w_hh, *saved[2:], lengths, False, True]
    else:
        back, bargs = ops.rnn_backward, [saved[0], None, w_hh, saved[2], lengths, False, "tanh"]
    back(*bargs)  # all on the CPU: fine
    for i, changed in _meta_variants(bargs):
        with pytest.raises(RuntimeError, match="is on (meta|cpu) but hs is on (cpu|meta)"):
            back(*changed)


# ---------------------------------------------------------------- 4. NaN and Inf

@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["input", "state", "grad"])
def test_nan_and_inf_propagate_like_torch(device, kind, dtype, value, where):
    # H = 20: the SIMD body (16 or 8 lanes) and the scalar tail both take part.
    reference, fast = make_pair(kind, 3, 20, device=device, dtype=dtype)
    with torch.no_grad():  # the input reaches every unit through input feature 0 only
        reference.weight_ih_l0.zero_()
        reference.weight_ih_l0[:, 0] = 1.0
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(4, 2, 3, device=device, dtype=dtype)
    h0 = torch.randn(1, 2, 20, device=device, dtype=dtype)
    if where == "input":
        x[1, 0, 0] = value
    if where == "state":
        h0[0, 1, 18] = value  # a tail column
    hx = (h0, torch.zeros_like(h0)) if kind == "lstm" else h0
    grad = torch.randn(4, 2, 20, device=device, dtype=dtype)
    if where == "grad":
        grad[2, 1, 17] = value
    results = []
    for module in (reference, fast):
        xr = x.clone().requires_grad_()
        out = module(xr, hx)[0]
        out.backward(grad)
        results.append((out.detach(), xr.grad))
    for expected, got in zip(results[0], results[1]):
        assert torch.equal(expected.isnan(), got.isnan())
        assert torch.equal(expected.isposinf(), got.isposinf())
        assert torch.equal(expected.isneginf(), got.isneginf())
        finite = expected.isfinite()
        torch.testing.assert_close(got[finite], expected[finite], atol=1e-4, rtol=1e-4)


def test_relu_rnn_keeps_nan_in_the_scalar_tail():
    """The direct case of the bug: a NaN pre-activation in the last H mod 16 columns."""
    gates = torch.zeros(1, 1, 20)
    gates[0, 0, 19] = float("nan")
    out = ops.rnn_forward(gates, torch.zeros(1, 20), torch.zeros(20, 20), None, None, False,
                          "relu", False)[0]
    assert torch.isnan(out[0, 0, 19])
    assert torch.equal(out[0, 0, :19], torch.zeros(19))


# ---------------------------------------------------------------- 5. batch size 0

@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_forward_and_backward(device, kind, batch_first):
    reference, fast = make_pair(kind, 4, 6, device=device, num_layers=2, bidirectional=True,
                                batch_first=batch_first)
    shape = (0, 3, 4) if batch_first else (3, 0, 4)
    results = []
    for module in (reference, fast):
        x = torch.randn(*shape, device=device, dtype=torch.float64, requires_grad=True)
        got = outputs_of(module(x))
        sum(t.sum() for t in got).backward()
        results.append(([t.shape for t in got], x.grad.shape,
                        [p.grad.clone() for p in module.parameters()]))
    assert results[0][:2] == results[1][:2]
    for expected, got in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(got, expected)


def test_zero_time_steps_raise_like_torch():
    with pytest.raises(ValueError, match="no time steps"):
        fastrnn.GRU(4, 6)(torch.randn(0, 2, 4))
    with pytest.raises(RuntimeError):
        nn.GRU(4, 6)(torch.randn(0, 2, 4))


# ---------------------------------------------------------------- 6. C++ argument checks

def _lstm_saved(proj):
    torch.manual_seed(0)
    H, P = 6, (3 if proj else 6)
    w_hr = torch.randn(P, H) if proj else None
    result = ops.lstm_forward(torch.randn(5, 2, 4 * H), torch.zeros(2, P), torch.zeros(2, H),
                              torch.randn(4 * H, P), None, w_hr, None, False, True)
    return result, torch.randn(4 * H, P), w_hr


def test_lstm_backward_without_w_hr_on_projected_history():
    result, w_hh, _ = _lstm_saved(proj=True)
    with pytest.raises(RuntimeError, match="without w_hr the saved hs must be"):
        ops.lstm_backward(result[0], None, None, w_hh, None, *result[3:7], None, False)


def test_lstm_projection_of_size_zero():
    with pytest.raises(RuntimeError, match=r"w_hr must be 2-D \[P, H\] with P >= 1"):
        ops.lstm_forward(torch.randn(5, 2, 24), torch.zeros(2, 0), torch.zeros(2, 6),
                         torch.randn(24, 0), None, torch.randn(0, 6), None, False, False)
    with pytest.raises(RuntimeError, match=r"w_hr must be 2-D \[P, H\] with P >= 1, got shape "
                                           r"\[\]"):
        ops.lstm_forward(torch.randn(5, 2, 24), torch.zeros(2, 6), torch.zeros(2, 6),
                         torch.randn(24, 6), None, torch.tensor(1.0), None, False, False)


def _strided(t):
    """The same values through a non-contiguous view (every other element of a larger one)."""
    big = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    view = big[..., ::2]
    view.copy_(t)
    assert not view.is_contiguous()
    return view


def test_strided_and_broadcast_lengths_and_saved_tensors():
    torch.manual_seed(0)
    gates, h0, w_hh = torch.randn(5, 3, 18), torch.randn(3, 6), torch.randn(18, 6)
    lengths = torch.tensor([5, 2, 4])
    expected = ops.gru_forward(gates, h0, w_hh, None, lengths, False, True, True)
    strided_lengths = torch.tensor([[5, 0], [2, 0], [4, 0]])[:, 0]
    assert not strided_lengths.is_contiguous()
    got = ops.gru_forward(gates, h0, w_hh, None, strided_lengths, False, True, True)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    # stride-0: every sequence of full length
    full = ops.gru_forward(gates, h0, w_hh, None, None, False, True, True)
    broadcast = torch.tensor([5]).expand(3)
    for a, b in zip(ops.gru_forward(gates, h0, w_hh, None, broadcast, False, True, True), full):
        torch.testing.assert_close(a, b)
    # saved tensors handed back strided
    grad = torch.randn(5, 3, 6)
    want = ops.gru_backward(grad, None, w_hh, *expected[2:], lengths, False, True)
    hs, saved_gates, extra = (_strided(t) for t in expected[2:])
    got = ops.gru_backward(grad, None, w_hh, hs, saved_gates, extra, strided_lengths, False,
                           True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_lstm_and_rnn_backward_with_strided_saved_tensors():
    (result, w_hh, w_hr) = _lstm_saved(proj=True)
    grad = torch.randn(5, 2, 3)
    want = ops.lstm_backward(grad, None, None, w_hh, w_hr, *result[3:7], None, False)
    got = ops.lstm_backward(grad, None, None, w_hh, w_hr, *(_strided(t) for t in result[3:7]),
                            None, False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    w = torch.randn(6, 6)
    saved = ops.rnn_forward(torch.randn(5, 2, 6), torch.zeros(2, 6), w, None, None, False,
                            "tanh", True)
    grad = torch.randn(5, 2, 6)
    want = ops.rnn_backward(grad, None, w, saved[2], None, False, "tanh")
    got = ops.rnn_backward(grad, None, w, _strided(saved[2]), None, False, "tanh")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_backward_dtypes_are_named():
    gates = torch.randn(5, 2, 18)
    saved = ops.gru_forward(gates, torch.zeros(2, 6), torch.randn(18, 6), None, None, False,
                            True, True)
    hs, g, extra = saved[2:]
    w = torch.randn(18, 6)
    with pytest.raises(RuntimeError, match="hs must be Float on cpu, got Double"):
        ops.gru_backward(None, None, w, hs.double(), g, extra, None, False, True)
    with pytest.raises(RuntimeError, match="extra must be Float"):
        ops.gru_backward(None, None, w, hs, g, extra.double(), None, False, True)
    with pytest.raises(RuntimeError, match="grad_output must be Float on cpu like w_hh, got "
                                           "Double"):
        ops.gru_backward(torch.randn(5, 2, 6, dtype=torch.float64), None, w, hs, g, extra,
                         None, False, True)
    (result, w_hh, w_hr) = _lstm_saved(proj=True)
    with pytest.raises(RuntimeError, match="w_hr must be Float on cpu like w_hh, got Double"):
        ops.lstm_backward(None, None, None, w_hh, w_hr.double(), *result[3:7], None, False)


# ---------------------------------------------------------------- 7. malformed PackedSequence

@pytest.mark.parametrize("batch_sizes,message", [
    ([3, -1], "must be positive"),
    ([3, 0], "must be positive"),
    ([2, 3], "must be non-increasing"),
    ([3, 1], "sum to 4 but its data has 5 rows"),
    ([], "is empty"),
])
def test_malformed_batch_sizes(batch_sizes, message):
    gru = fastrnn.GRU(2, 3)
    packed = PackedSequence(torch.randn(5, 2), torch.tensor(batch_sizes, dtype=torch.int64))
    with pytest.raises(ValueError, match=message):
        gru(packed)


def test_packed_with_wrong_indices():
    gru = fastrnn.GRU(2, 3)
    packed = pack_padded_sequence(torch.randn(4, 3, 2), torch.tensor([4, 2, 3]),
                                  enforce_sorted=False)
    bad = PackedSequence(packed.data, packed.batch_sizes, packed.sorted_indices[:2],
                         packed.unsorted_indices[:2])
    with pytest.raises(ValueError, match=r"sorted_indices must have shape \(3,\)"):
        gru(bad)


# ---------------------------------------------------------------- 8. CPU autocast

@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_returns_torch_nn_dtypes(kind, amp_dtype):
    reference, fast = make_pair(kind, 4, 6, dtype=torch.float32)
    x = torch.randn(5, 2, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=amp_dtype):
        try:
            expected = outputs_of(reference(x))
        except RuntimeError:  # torch.nn's oneDNN LSTM has no float16 primitive here
            expected = None
        got = outputs_of(fast(x))
    plain = outputs_of(fast(x))  # float32, no autocast
    for i, (g, p) in enumerate(zip(got, plain)):
        if expected is not None:
            assert g.dtype == expected[i].dtype
        torch.testing.assert_close(g, p.to(g.dtype))
    sum(t.float().sum() for t in got).backward()
    assert x.grad is not None and x.grad.dtype == torch.float32


# ---------------------------------------------------------------- 9. errors name the parameter

def test_wrong_dtype_parameter_is_named():
    lstm = fastrnn.LSTM(4, 6, num_layers=2)
    lstm.weight_hh_l1.data = lstm.weight_hh_l1.data.double()
    with pytest.raises(TypeError, match="fastrnn.LSTM: weight_hh_l1 has dtype torch.float64"):
        lstm(torch.randn(5, 2, 4))


def test_wrong_shape_parameter_is_named():
    gru = fastrnn.GRU(4, 6)
    gru.weight_hh_l0 = nn.Parameter(torch.randn(18, 5))
    with pytest.raises(ValueError, match=r"fastrnn.GRU: weight_hh_l0 must have shape \(18, 6\), "
                                         r"got \(18, 5\)"):
        gru(torch.randn(5, 2, 4))


def test_zero_dim_projection_weight():
    lstm = fastrnn.LSTM(4, 6, proj_size=2)
    lstm.weight_hr_l0 = nn.Parameter(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"weight_hr_l0 must have shape \(2, 6\), got \(\)"):
        lstm(torch.randn(5, 2, 4))


# ---------------------------------------------------------------- 10. compile with packed input

@pytest.mark.slow
def test_compile_with_packed_input():
    torch._dynamo.reset()
    gru = fastrnn.GRU(2, 3, num_layers=2)
    packed = pack_padded_sequence(torch.randn(4, 3, 2), torch.tensor([4, 2, 3]),
                                  enforce_sorted=False)
    expected = gru(packed)
    got = torch.compile(gru, backend="aot_eager")(packed)
    torch.testing.assert_close(got[0].data, expected[0].data)
    torch.testing.assert_close(got[1], expected[1])
    torch._dynamo.reset()
    with pytest.raises(Exception, match="PackedSequence input runs outside the compiled graph"):
        torch.compile(gru, backend="aot_eager", fullgraph=True)(packed)
    torch._dynamo.reset()


# ---------------------------------------------------------------- 11. TorchScript and to_torch

def test_torchscript_gives_a_clear_error():
    model = nn.Sequential(fastrnn.LSTM(4, 6))
    with pytest.raises(RuntimeError, match="cannot be compiled by TorchScript.*to_torch"):
        torch.jit.script(model)


def test_to_torch_converts_back_with_the_same_parameters():
    model = nn.Sequential(fastrnn.LSTM(4, 6, proj_size=2), fastrnn.GRU(2, 3))
    params = [id(p) for p in model.parameters()]
    x = torch.randn(5, 2, 4)
    lstm_out = model[0](x)[0]
    expected = model[1](lstm_out)[0]
    fastrnn.to_torch(model)
    assert type(model[0]) is nn.LSTM and type(model[1]) is nn.GRU
    assert [id(p) for p in model.parameters()] == params
    torch.testing.assert_close(model[1](model[0](x)[0])[0], expected)
    torch.jit.script(model[1])  # compiles now (no fastrnn layer left)
    traced = torch.jit.trace(model[1], lstm_out)
    torch.testing.assert_close(traced(lstm_out)[0], expected)
    assert fastrnn.convert(model) is model and type(model[0]) is fastrnn.LSTM


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_relu"])
def test_jit_trace_records_torch_nn(monkeypatch, kind):
    # a trace (TorchScript, the TorchScript-based ONNX export) records torch.nn's operators,
    # which TorchScript knows, with the layer's own parameters
    _, fast = make_pair(kind, 3, 4, dtype=torch.float32, num_layers=2, bidirectional=True,
                        batch_first=True)
    x, other = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    monkeypatch.setattr(fastrnn.modules, "_warned", set())  # each fallback warns once
    with pytest.warns(UserWarning, match="torch.jit.trace .* running torch.nn's"):
        traced = torch.jit.trace(fast.eval(), x, check_trace=False)
    for inp in (x, other):
        for got, want in zip(traced(inp), fast(inp)):
            torch.testing.assert_close(got, want)
    assert "fastrnn::" not in str(traced.inlined_graph)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_onnx_export_through_a_trace_runs_in_onnx_runtime(kind):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io
    _, fast = make_pair(kind, 3, 4, dtype=torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    exported = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation, our fallback's
        torch.onnx.export(fast.eval(), (x,), exported, dynamo=False, input_names=["x"])
    session = ort.InferenceSession(exported.getvalue())
    got = session.run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), fast(x)[0], atol=1e-5, rtol=1e-4)


def test_jit_trace_of_the_reset_before_gru_raises():
    with pytest.raises(RuntimeError, match="torch.jit.trace .* no reset_after=False GRU"):
        torch.jit.trace(fastrnn.GRU(3, 4, reset_after=False), torch.randn(5, 2, 3))


def test_to_torch_refuses_the_reset_before_gru():
    model = nn.Sequential(fastrnn.LSTM(4, 6), fastrnn.GRU(6, 3, reset_after=False))
    with pytest.raises(ValueError, match="reset_after=False has no torch.nn equivalent"):
        fastrnn.to_torch(model)
    assert type(model[0]) is fastrnn.LSTM  # nothing changed


# ---------------------------------------------------------------- fake kernels

def test_fake_backward_returns_the_cuda_kernels_dtypes():
    """On CUDA, half storage keeps float32 gates and cell states; the empty grad_w_hr of an
    unprojected LSTM comes back in the storage dtype."""
    meta = dict(device="meta")
    hs = torch.empty(6, 2, 4, dtype=torch.float16, **meta)
    cs = torch.empty(6, 2, 4, dtype=torch.float32, **meta)
    gates = torch.empty(5, 2, 16, dtype=torch.float32, **meta)
    w_hh = torch.empty(16, 4, dtype=torch.float16, **meta)
    grads = _ops._lstm_backward_fake(None, None, None, w_hh, None, hs, cs, gates,
                                     torch.empty(0, dtype=torch.float16, **meta), None, False)
    assert [g.dtype for g in grads] == [torch.float16] * 6


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_opcheck_with_empty_batch(cell):
    g = GATES[cell]
    args = [torch.randn(3, 0, g * 4, dtype=torch.float64, requires_grad=True),
            torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)]
    if cell == "lstm":
        args += [torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)]
    args += [torch.randn(g * 4, 4, dtype=torch.float64, requires_grad=True), None]
    tail = {"lstm": [None, None, False, True], "gru": [None, False, True, True],
            "rnn": [None, False, "tanh", True]}[cell]
    op = {"lstm": ops.lstm_forward, "gru": ops.gru_forward, "rnn": ops.rnn_forward}[cell]
    torch.library.opcheck(op, args + tail)

