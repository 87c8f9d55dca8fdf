"""Shared fixtures: one context on the test device for the whole session, and both dtypes.

The device is PoCL unless $CLNET_TEST_DEVICE names another (e.g. "gpu" on a GPU machine);
CLNET_TEST_WITHOUT_CLBLAST=1 runs as if pyclblast were not installed (what `pip install clnet`
gives a GPU user: clnet's own GEMM everywhere).
"""

import os
import sys

import numpy as np
import pytest

if os.environ.get("CLNET_TEST_WITHOUT_CLBLAST") == "1":
    sys.modules["pyclblast"] = None  # `import pyclblast` raises ImportError, as without the package

import clnet  # noqa: E402

TEST_DEVICE = os.environ.get("CLNET_TEST_DEVICE", "pocl")


@pytest.fixture(scope="session", autouse=True)
def clnet_cache(tmp_path_factory):
    """A cache folder of the test session's own, so that a user's tuning file plays no part."""
    path = tmp_path_factory.mktemp("clnet-cache")
    saved = os.environ.get("CLNET_CACHE_DIR")
    os.environ["CLNET_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        del os.environ["CLNET_CACHE_DIR"]
    else:
        os.environ["CLNET_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def ctx(clnet_cache):
    with clnet.Context(TEST_DEVICE) as context:
        yield context


@pytest.fixture(params=["float32", "float64"])
def dtype(request, ctx):
    if request.param == "float64" and not ctx.info.fp64:
        pytest.skip(f"{ctx.info.name} has no fp64")
    return np.dtype(request.param)
