"""Text for the character language model: by default the docstrings of Python's standard
library (present wherever Python is, about 1.8 MB), or any text file."""
import ast
import os
import sys
import sysconfig

from .text import DataError, encode_text


def stdlib_docstrings():
    """Every module, class and function docstring in the standard library's sources, in
    file order, separated by blank lines (read with ast: nothing is imported)."""
    root = sysconfig.get_paths()["stdlib"]
    pieces = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "test", "tests",
                                                        "idlelib", "__pycache__"))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        pieces.append(doc)
    return "\n\n".join(pieces)


def load_corpus(path=None, non_ascii="error"):
    """Character codes of the corpus: the stdlib docstrings, or the file at `path`."""
    if path is None:  # parsed once (seconds), then cached
        from .vader import cache_dir
        cached = os.path.join(cache_dir(), f"stdlib_docstrings_{sys.version_info[0]}"
                              f"{sys.version_info[1]}.txt")
        if not os.path.exists(cached):
            os.makedirs(cache_dir(), exist_ok=True)
            with open(cached + ".tmp", "w", encoding="utf-8") as f:
                f.write(stdlib_docstrings())
            os.replace(cached + ".tmp", cached)
        with open(cached, encoding="utf-8") as f:
            return encode_text(f.read(), "stdlib docstrings", non_ascii="replace")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="strict") as f:
        text = f.read()
    return encode_text(text, path, non_ascii)
