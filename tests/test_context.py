"""Context: releasing what it made, and errors after close."""


import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import memory

from .conftest import TEST_DEVICE


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_closing_empties_the_caches_and_blocks_further_use():
    ctx = clnet.Context(TEST_DEVICE)
    a = cla.empty(ctx.queue, 5, np.float32)
    memory.fill(ctx, a, 1.5)
    assert len(ctx.programs) == 2  # one program, one kernel
    programs = ctx.programs
    released = []

    class Owned:
        def release(self):
            released.append(True)

    owned = Owned()
    ctx.own(owned)
    ctx.close()
    assert len(programs) == 0 and released == [True]
    assert ctx.closed
    for use in (lambda: ctx.queue, lambda: ctx.context, lambda: ctx.device,
                lambda: ctx.kernel("memory.cl", "fill", dtype="float32"), lambda: memory.fill(ctx, a, 2.0)):
        with pytest.raises(clnet.ContextClosedError, match="closed"):
            use()
    ctx.close()  # closing twice is harmless


def test_with_block_closes_even_on_error():
    with pytest.raises(ZeroDivisionError):
        with clnet.Context(TEST_DEVICE) as ctx:
            raise ZeroDivisionError
    assert ctx.closed


def test_on_close_callbacks_run_once():
    calls = []
    with clnet.Context(TEST_DEVICE) as ctx:
        ctx.on_close("x", lambda: calls.append(1))
        ctx.on_close("x", lambda: calls.append(2))  # same key: kept once
    assert calls == [1]


def test_many_contexts_do_not_leak():
    def cycle():
        with clnet.Context(TEST_DEVICE) as ctx:
            a = cla.empty(ctx.queue, 1000, np.float32)
            memory.fill(ctx, a, 3.0)
            assert a.get()[-1] == 3.0

    for _ in range(20):  # warm up: the first builds and loader state are not a leak
        cycle()
    before = resident_bytes()
    for _ in range(500):
        cycle()
    grown = resident_bytes() - before
    assert grown < 50 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MB over 500 contexts"
