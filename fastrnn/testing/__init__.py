"""Tools for checking recurrent layers: a plain-PyTorch float64 reference implementation."""
from .reference import (gru_cell, layer_norm, layernorm_gru_cell, layernorm_lstm_cell, lstm_cell,
                        reference_layernorm_gru, reference_layernorm_lstm, reference_rnn, rnn_cell,
                        run_direction, zoneout)

__all__ = ["reference_rnn", "reference_layernorm_lstm", "reference_layernorm_gru",
           "run_direction", "lstm_cell", "gru_cell", "rnn_cell", "layernorm_lstm_cell",
           "layernorm_gru_cell", "layer_norm", "zoneout"]
