"""The sorting task of the seed (7.3): sequences of numbers 1..n, to be output sorted."""
import torch


def sorting_batch(batch, length=32, n_values=32, generator=None):
    """Returns (inputs, targets), each [batch, length] int64 in 1..n_values."""
    inputs = torch.randint(1, n_values + 1, (batch, length), generator=generator)
    return inputs, inputs.sort(dim=1).values
