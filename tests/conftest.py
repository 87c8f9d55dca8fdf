"""Shared fixtures: one context on the test device for the whole session, and both dtypes.

The device is PoCL unless $CLNET_TEST_DEVICE names another (e.g. "gpu" on a GPU machine).
"""

import os

import numpy as np
import pytest

import clnet

TEST_DEVICE = os.environ.get("CLNET_TEST_DEVICE", "pocl")


@pytest.fixture(scope="session")
def ctx():
    with clnet.Context(TEST_DEVICE) as context:
        yield context


@pytest.fixture(params=["float32", "float64"])
def dtype(request, ctx):
    if request.param == "float64" and not ctx.info.fp64:
        pytest.skip(f"{ctx.info.name} has no fp64")
    return np.dtype(request.param)
