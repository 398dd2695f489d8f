"""Characters as the seed encodes them: one code per ASCII character (E_DIM = 128), each
one-hot encoded by the models."""
import csv
import os
import string
import unicodedata

import torch

E_DIM = 128


class DataError(ValueError):
    """Unusable input data, with where it came from."""


def to_ascii(text):
    """Accented letters lose their accents; other non-ASCII characters become '?'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c if ord(c) < E_DIM else "?" for c in decomposed
                   if not unicodedata.combining(c))


def encode_text(text, where="text", non_ascii="error"):
    """A string as a list of character codes in [0, 128).

    non_ascii: 'error' raises DataError naming `where` and the first offending character;
    'replace' transliterates (to_ascii).
    """
    if not text:
        raise DataError(f"{where}: empty text")
    if non_ascii == "replace":
        text = to_ascii(text)
    else:
        for i, c in enumerate(text):
            if ord(c) >= E_DIM:
                raise DataError(f"{where}: non-ASCII character {c!r} at position {i}; pass "
                                "non_ascii='replace' (--non-ascii replace) to transliterate")
    return [ord(c) for c in text]


def encode_batch(codes_list, max_len=None):
    """Pads lists of codes into a [B, T] int64 tensor; returns (codes, lengths)."""
    if max_len is not None:
        codes_list = [c[:max_len] for c in codes_list]
    lengths = torch.tensor([len(c) for c in codes_list], dtype=torch.int64)
    padded = torch.zeros(len(codes_list), int(lengths.max()), dtype=torch.int64)
    for i, codes in enumerate(codes_list):
        padded[i, :len(codes)] = torch.tensor(codes, dtype=torch.int64)
    return padded, lengths


def printable(code):
    """The seed's rule for generated text: non-printable characters become spaces."""
    c = chr(code)
    return c if c in string.printable else " "


def load_labelled_csv(path, classes=None, non_ascii="error", text_column="text",
                      label_column="label"):
    """A CSV file with a header naming a text and a label column.

    Returns (texts as code lists, label indices, class names). With `classes` given, a label
    outside them is an error; otherwise the classes are the sorted distinct labels.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or text_column not in reader.fieldnames or \
                label_column not in reader.fieldnames:
            raise DataError(f"{path}: expected a header with columns '{text_column}' and "
                            f"'{label_column}', got {reader.fieldnames}")
        rows = [(row[text_column], row[label_column].strip()) for row in reader]
    if not rows:
        raise DataError(f"{path}: no rows")
    if classes is None:
        classes = sorted({label for _, label in rows})
    index = {name: i for i, name in enumerate(classes)}
    texts, labels = [], []
    for line, (text, label) in enumerate(rows, start=2):
        if label not in index:
            raise DataError(f"{path}:{line}: unknown label {label!r}; expected one of "
                            f"{list(classes)}")
        texts.append(encode_text(text, f"{path}:{line}", non_ascii))
        labels.append(index[label])
    return texts, labels, list(classes)
