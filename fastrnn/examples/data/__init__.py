"""Data for the three example models: labelled text (VADER or a CSV of the user's), a text
corpus for the character model (Python's own docstrings or a file), and sorting tasks."""
from .corpus import load_corpus, stdlib_docstrings
from .sorting import sorting_batch
from .text import (E_DIM, DataError, encode_batch, encode_text, load_labelled_csv,
                   printable)
from .vader import VADER_CLASSES, load_vader

__all__ = ["E_DIM", "DataError", "encode_text", "encode_batch", "printable",
           "load_labelled_csv", "load_vader", "VADER_CLASSES", "load_corpus",
           "stdlib_docstrings", "sorting_batch"]
