"""Bad input raises a clear Python exception naming the argument, before any kernel runs."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from fastrnn import IncompatibleTensorError
from fastrnn._ops import ops
from helpers import cpu_backend_only


@pytest.fixture
def lstm():
    return fastrnn.LSTM(4, 6, num_layers=2)


def test_wrong_feature_size(lstm):
    with pytest.raises(ValueError, match=r"input.size\(-1\) must equal input_size=4, got 5"):
        lstm(torch.randn(3, 2, 5))


def test_wrong_rank(lstm):
    with pytest.raises(ValueError, match="input must be 2-D or 3-D, got a 4-D tensor"):
        lstm(torch.randn(3, 2, 1, 4))


def test_not_a_tensor(lstm):
    with pytest.raises(TypeError, match="input must be a Tensor or PackedSequence, got list"):
        lstm([[1.0, 2.0]])


def test_integer_input(lstm):
    with pytest.raises(TypeError, match="floating-point"):
        lstm(torch.ones(3, 2, 4, dtype=torch.int64))


def test_dtype_mismatch_with_weights(lstm):
    with pytest.raises(TypeError, match=r"input dtype torch.float64 does not match the layer's "
                                        r"parameters \(torch.float32\)"):
        lstm(torch.randn(3, 2, 4, dtype=torch.float64))


def test_wrong_state_shape(lstm):
    x = torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 2, 6\) .* got \(1, 2, 6\)"):
        lstm(x, (torch.zeros(1, 2, 6), torch.zeros(2, 2, 6)))
    with pytest.raises(ValueError, match=r"c_0 must have shape \(2, 2, 6\) .* got \(2, 3, 6\)"):
        lstm(x, (torch.zeros(2, 2, 6), torch.zeros(2, 3, 6)))


def test_state_not_a_tuple_for_lstm(lstm):
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        lstm(torch.randn(3, 2, 4), torch.zeros(2, 2, 6))


def test_state_dtype_mismatch():
    gru = fastrnn.GRU(4, 6)
    with pytest.raises(TypeError, match="h_0 dtype torch.float64 does not match input dtype"):
        gru(torch.randn(3, 2, 4), torch.zeros(1, 2, 6, dtype=torch.float64))


def test_unbatched_state_rank():
    gru = fastrnn.GRU(4, 6)
    with pytest.raises(ValueError, match="for unbatched 2-D input, h_0 must be 2-D"):
        gru(torch.randn(3, 4), torch.zeros(1, 1, 6))


def test_proj_state_shape():
    lstm = fastrnn.LSTM(4, 6, proj_size=2)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 3, 2\)"):
        lstm(torch.randn(5, 3, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6)))


def test_packed_with_wrong_feature_size():
    rnn = fastrnn.RNN(4, 6)
    packed = pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(ValueError, match="input_size=4, got 3"):
        rnn(packed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_device_mismatch():
    gru = fastrnn.GRU(4, 6)
    with pytest.raises(ValueError, match="weight_ih_l0 is on cpu but the input is on cuda:0"):
        gru(torch.randn(3, 2, 4, device="cuda"))


@cpu_backend_only  # float16 has kernels on CUDA and its emulation
def test_fallback_to_torch_for_dtypes_without_kernels():
    reference = torch.nn.GRU(4, 6, dtype=torch.float16)
    gru = fastrnn.GRU(4, 6, dtype=torch.float16)
    gru.load_state_dict(reference.state_dict())
    x = torch.randn(3, 2, 4, dtype=torch.float16)
    with pytest.warns(UserWarning, match="running torch.nn's implementation"):
        out, _ = gru(x)
    torch.testing.assert_close(out, reference(x)[0])


@cpu_backend_only  # float16 has kernels on CUDA and its emulation
def test_reset_before_without_kernel_is_an_error():
    gru = fastrnn.GRU(4, 6, reset_after=False, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="no reset_after=False GRU to fall back on"):
        gru(torch.randn(3, 2, 4, dtype=torch.float16))


# ---- direct operator calls are checked in C++ and raise RuntimeError, never crash

def test_op_lengths_out_of_range():
    gates = torch.randn(5, 2, 8)
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[0, T=5\], got values in "
                                           r"\[2, 6\]"):
        ops.rnn_forward(gates, torch.zeros(2, 8), torch.randn(8, 8), None,
                        torch.tensor([6, 2]), False, "tanh", False)


def test_op_lengths_wrong_dtype_and_shape():
    gates = torch.randn(5, 2, 8)
    with pytest.raises(RuntimeError, match="lengths must be int64"):
        ops.rnn_forward(gates, torch.zeros(2, 8), torch.randn(8, 8), None,
                        torch.tensor([5, 2], dtype=torch.int32), False, "tanh", False)
    with pytest.raises(RuntimeError, match=r"lengths must have shape \[2\]"):
        ops.rnn_forward(gates, torch.zeros(2, 8), torch.randn(8, 8), None,
                        torch.tensor([5, 2, 1]), False, "tanh", False)


def test_op_shape_mismatch():
    with pytest.raises(RuntimeError, match=r"w_hh must have shape \[18, 6\], got \[24, 5\]"):
        ops.gru_forward(torch.randn(5, 2, 18), torch.zeros(2, 6), torch.randn(24, 5), None,
                        None, False, True, False)
    with pytest.raises(RuntimeError, match=r"h0 must have shape \[2, 6\]"):
        ops.lstm_forward(torch.randn(5, 2, 24), torch.zeros(3, 6), torch.zeros(2, 6),
                         torch.randn(24, 6), None, None, None, False, False)


def test_op_bad_nonlinearity():
    with pytest.raises(RuntimeError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        ops.rnn_forward(torch.randn(5, 2, 8), torch.zeros(2, 8), torch.randn(8, 8), None, None,
                        False, "gelu", False)


def test_backward_after_inference_forward_is_rejected():
    gates = torch.randn(5, 2, 8)
    _, _, hs = ops.rnn_forward(gates, torch.zeros(2, 8), torch.randn(8, 8), None, None, False,
                               "tanh", False)
    with pytest.raises(RuntimeError, match="saved by the forward operator with save_for_backward=True"):
        ops.rnn_backward(torch.randn(5, 2, 8), None, torch.randn(8, 8), hs, None, False, "tanh")


def test_backward_op_checks_lengths_and_saved_shapes():
    gates = torch.randn(5, 2, 8)
    _, _, hs = ops.rnn_forward(gates, torch.zeros(2, 8), torch.randn(8, 8), None, None, False,
                               "tanh", True)
    with pytest.raises(RuntimeError, match=r"lengths must have shape \[2\]"):
        ops.rnn_backward(torch.randn(5, 2, 8), None, torch.randn(8, 8), hs,
                         torch.tensor([5]), False, "tanh")
    with pytest.raises(RuntimeError, match=r"grad_output must have shape \[5, 2, 8\]"):
        ops.rnn_backward(torch.randn(4, 2, 8), None, torch.randn(8, 8), hs, None, False, "tanh")
    with pytest.raises(RuntimeError, match=r"w_hh must be \[8, 8\]"):
        ops.rnn_backward(None, None, torch.randn(8, 4), hs, None, False, "tanh")


@pytest.mark.parametrize("case", ["input dtype", "integer input", "state dtype", "state device",
                                  "parameter dtype"])
def test_dtype_and_device_errors_are_caught_as_torch_nn_raises(case):
    # torch.nn raises ValueError for some of these and RuntimeError for others: code written
    # against either keeps working, and the message is fastrnn's, naming the tensor
    torch.manual_seed(0)
    for cls in (torch.nn.GRU, fastrnn.GRU):
        gru = cls(4, 6)
        x, h0 = torch.randn(3, 2, 4), torch.zeros(1, 2, 6)
        if case == "input dtype":
            x = x.double()
        elif case == "integer input":
            x = torch.randint(0, 3, (3, 2, 4))
        elif case == "state dtype":
            h0 = h0.double()
        elif case == "state device":
            h0 = h0.to("meta")
        else:
            gru.weight_hh_l0.data = gru.weight_hh_l0.data.double()
        with pytest.raises((ValueError, RuntimeError)) as caught:
            gru(x, h0)
        if cls is fastrnn.GRU:
            assert isinstance(caught.value, fastrnn.IncompatibleTensorError)
            assert isinstance(caught.value, ValueError) and isinstance(caught.value, RuntimeError)
            assert caught.value.args[0].startswith("fastrnn.GRU: ")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("flag", ["bidirectional", "batch_first", "bias"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_constructor_flags_must_be_bool(kind, flag, value):
    # torch.nn's constructor checks bias and batch_first; fastrnn checks bidirectional too
    # rather than reading a truthy string as True.
    with pytest.raises(TypeError, match=f"{flag} should be of type bool, got: "):
        getattr(fastrnn, kind)(4, 5, **{flag: value})


def test_reset_after_must_be_bool():
    with pytest.raises(TypeError, match="reset_after should be of type bool, got: str"):
        fastrnn.GRU(4, 5, reset_after="False")


def _misuse_cases(kind):
    """(name, args) pairs that torch.nn refuses: a 2-layer bidirectional layer of input 4,
    hidden 3, at batch 2."""
    def state(*shape):
        return (torch.zeros(*shape), torch.zeros(*shape)) if kind == "LSTM" else torch.zeros(*shape)
    x = torch.randn(5, 2, 4)
    yield "1-D input", (torch.randn(4),)
    yield "4-D input", (torch.randn(5, 2, 4, 1),)
    yield "feature size", (torch.randn(5, 2, 3),)
    yield "no time steps", (torch.randn(0, 2, 4),)
    yield "unbatched, no time steps", (torch.randn(0, 4),)
    yield "state layers", (x, state(5, 2, 3))
    yield "state batch", (x, state(4, 3, 3))
    yield "state size", (x, state(4, 2, 4))
    yield "2-D state, batched input", (x, state(4, 3))
    yield "3-D state, unbatched input", (torch.randn(5, 4), state(4, 2, 3))
    packed = pack_padded_sequence(torch.randn(5, 3, 4), [5, 3, 2])
    yield "packed, state batch", (packed, state(4, 2, 3))
    yield "list input", ([[1.0] * 4] * 5,)
    yield "None input", (None,)
    yield "numpy input", (x.numpy(),)
    if kind != "LSTM":
        yield "list state", (x, [torch.zeros(4, 2, 3)])
    else:  # hx not a pair: torch.nn's IndexError (one state, a tensor), RuntimeError (three)
        yield "one state", (x, (torch.zeros(4, 2, 3),))
        yield "three states", (x, (torch.zeros(4, 2, 3),) * 3)
        yield "a tensor for the pair", (x, torch.zeros(1, 2, 3))
        yield "a stacked pair", (x, torch.zeros(2, 4, 2, 3))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_misuse_raises_what_torch_nn_raises_and_more(kind):
    # torch.nn raises RuntimeError for a bad shape and AttributeError for a non-tensor;
    # fastrnn's errors are those classes too (plus ValueError / TypeError), so that code
    # written against torch.nn catches them, and they name the layer
    torch.manual_seed(0)
    reference = getattr(torch.nn, kind)(4, 3, num_layers=2, bidirectional=True)
    layer = getattr(fastrnn, kind)(4, 3, num_layers=2, bidirectional=True)
    layer.load_state_dict(reference.state_dict())
    for name, args in _misuse_cases(kind):
        with pytest.raises(Exception) as expected:
            reference(*args)
        with pytest.raises(Exception) as caught:
            layer(*args)
        assert isinstance(caught.value, type(expected.value)), (name, caught.value, expected.value)
        assert isinstance(caught.value, (ValueError, TypeError)), name
        assert str(caught.value).startswith(f"fastrnn.{kind}: "), (name, caught.value)


def test_misuse_error_classes():
    gru = fastrnn.GRU(4, 3)
    with pytest.raises(fastrnn.InvalidShapeError) as caught:
        gru(torch.randn(5, 2, 3))
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RuntimeError)
    with pytest.raises(fastrnn.NotATensorError) as caught:
        gru(torch.randn(5, 2, 4), "h0")
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, AttributeError)
    with pytest.raises(fastrnn.NotAStatePairError) as caught:
        fastrnn.LSTM(4, 3)(torch.randn(5, 2, 4), (torch.zeros(1, 2, 3),))
    assert all(isinstance(caught.value, c) for c in (TypeError, IndexError, RuntimeError))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_parameter_errors_name_the_parameter(kind):
    # one parameter out of step with the others (a partial .to(), a swapped tensor): the
    # error names it, whichever check catches it
    cases = [
        ("bias_hh_l1", lambda p: p.double(), IncompatibleTensorError,
         r"bias_hh_l1 has dtype torch.float64 but weight_ih_l0 has torch.float32"),
        ("weight_hh_l1", lambda p: p[:, :-1], fastrnn.InvalidShapeError,
         r"weight_hh_l1 must have shape"),
        ("weight_ih_l0", lambda p: p.to(torch.int32), IncompatibleTensorError,
         r"weight_ih_l0 must be floating point"),
        ("weight_hh_l0", lambda p: p.to("meta"), IncompatibleTensorError,
         r"weight_hh_l0 is on meta but the input is on cpu"),
    ]
    for name, change, error, message in cases:
        layer = getattr(fastrnn, kind)(4, 3, num_layers=2)
        parameter = getattr(layer, name)
        setattr(layer, name, nn.Parameter(change(parameter.detach()), requires_grad=False))
        with pytest.raises(error, match=f"fastrnn.{kind}: {message}"):
            layer(torch.randn(5, 2, 4))
