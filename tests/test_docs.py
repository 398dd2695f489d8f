"""The examples in the public docstrings run and print what they say."""
import doctest

import pytest

import fastrnn
import fastrnn.modules


@pytest.mark.parametrize("module", [fastrnn, fastrnn.modules], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
