"""torch.compile(fullgraph=True) through fastrnn layers (torch.nn's RNNs break the graph)."""
import pytest
import torch

import fastrnn
from helpers import DEVICES


class Tagger(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(2 * 8, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


@pytest.mark.slow
@pytest.mark.parametrize("make_rnn", [
    lambda: fastrnn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True),
    lambda: fastrnn.GRU(4, 8, bidirectional=True, reset_after=False),
], ids=["lstm", "gru_reset_before"])
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_forward_and_backward(make_rnn, device):
    torch.manual_seed(0)
    model = Tagger(make_rnn()).to(device)
    x = torch.randn(3, 6, 4, device=device, requires_grad=True)
    expected = model(x)
    expected_grads = torch.autograd.grad(expected.square().sum(), [x] + list(model.parameters()))

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(x)
    got_grads = torch.autograd.grad(got.square().sum(), [x] + list(model.parameters()))
    torch.testing.assert_close(got, expected)
    for a, b in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_inductor_inference(device):
    torch.manual_seed(0)
    model = Tagger(fastrnn.GRU(4, 8, bidirectional=True)).eval().to(device)
    x = torch.randn(6, 3, 4, device=device)
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(got, expected)
