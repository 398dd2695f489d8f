"""Tools for checking recurrent layers: a plain-PyTorch float64 reference implementation."""
from .reference import gru_cell, lstm_cell, reference_rnn, rnn_cell, run_direction, zoneout

__all__ = ["reference_rnn", "run_direction", "lstm_cell", "gru_cell", "rnn_cell", "zoneout"]
