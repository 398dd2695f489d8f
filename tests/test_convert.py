import torch

import fastrnn


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.LSTM(4, 8, batch_first=True)
        self.blocks = torch.nn.ModuleList([torch.nn.GRU(8, 8), torch.nn.RNN(8, 8)])
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        x, _ = self.encoder(x)
        x, _ = self.blocks[0](x.transpose(0, 1))
        x, _ = self.blocks[1](x)
        return self.head(x)


def test_convert_swaps_every_layer_and_keeps_weights():
    torch.manual_seed(0)
    model = Model().double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    expected = model(x)
    params_before = [id(p) for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    assert fastrnn.convert(model) is model
    assert type(model.encoder) is fastrnn.LSTM
    assert type(model.blocks[0]) is fastrnn.GRU and model.blocks[0].reset_after
    assert type(model.blocks[1]) is fastrnn.RNN
    assert [id(p) for p in model.parameters()] == params_before
    torch.testing.assert_close(model(x), expected)

    # the optimizer built before the conversion still trains the converted layers' tensors
    before = [p.detach().clone() for p in model.parameters()]
    model(x).sum().backward()
    optimizer.step()
    for p, old in zip(model.parameters(), before):
        assert p.grad is not None
        torch.testing.assert_close(p.detach(), old - 0.1 * p.grad)


def test_convert_a_bare_layer():
    lstm = torch.nn.LSTM(3, 4)
    assert type(fastrnn.convert(lstm)) is fastrnn.LSTM
