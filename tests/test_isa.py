"""The lists C dispatches from: the activation list (NNF_ACTIVATIONS in csrc/eltwise.h) as
Python sees it."""

import pytest

import nnfast.functional as F
from nnfast import nn
from nnfast._native import core

pytestmark = pytest.mark.skipif(core is None, reason="needs the native extension")


def test_python_activations_are_cs_list():
    ids = core.activation_ids()
    assert list(ids.values()) == list(range(len(ids)))  # dense ids, in C's order
    public = set(ids) - {"gelu_tanh"}  # gelu(approximate="tanh")
    assert set(F.ACTIVATIONS) == public
    # prelu and maxout have kernels of their own
    assert set(nn.ACTIVATIONS) - {"prelu", "maxout"} == public
    for name in public:
        assert F.ACTIVATIONS[name].from_output == core.act_from_output(ids[name])
    assert F._act_params("t", "gelu", {"approximate": "tanh"})[0] == ids["gelu_tanh"]
    assert F._act_params("t", "gelu", {})[0] == ids["gelu"]
