"""The examples in the public docstrings run and print what they say."""
import doctest

import pytest

import fastrnn
import fastrnn.examples.charlm
import fastrnn.examples.classify
import fastrnn.examples.sort
import fastrnn.modules

MODULES = [fastrnn, fastrnn.modules, fastrnn.examples.classify, fastrnn.examples.charlm,
           fastrnn.examples.sort]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
