"""The device self-check (`clnet devices --check`, `clnet.check_device`): does this device and
driver compute what clnet asks of it? Drivers have returned wrong results (an SGEMM on an Intel
Arc GPU, later fixed in the driver), and nothing else in clnet would notice.

Four checks, each against numpy written out here from the definitions (DESIGN.md), not from
clnet's kernels:

    philox    Random123's known-answer vectors for Philox4x32-10
    normal    4096 float32 normal numbers of one stream against Box-Muller in float64
    gemm      products of several shapes and every orientation, float32 (and float64 where the
              device has it), through the backend the device uses
    training  two SGD steps of a small tanh -> softmax network with the cross-entropy cost

The verdict is kept per device and driver version (runtime/checks.py); a device that fails is
never chosen by default.
"""

from __future__ import annotations

import datetime
import traceback

import numpy as np
import pyopencl.array as cla

from ..nn.fully_connected import FullyConnected
from ..nn.network import TrainingNetwork
from ..ops import blas, rng
from ..ops.rng import Philox
from ..runtime import checks
from ..runtime.context import Context
from ..train.loops import sgd
from ..train.model import InferenceNetwork

# Random123's kat_vectors for philox4x32 R=10: counter, key -> output (hex words)
PHILOX_KAT = [("00000000 00000000 00000000 00000000", "00000000 00000000", "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
              ("ffffffff ffffffff ffffffff ffffffff", "ffffffff ffffffff", "408f276d 41c83b0e a20bc7c6 6d5451fd"),
              ("243f6a88 85a308d3 13198a2e 03707344", "a4093822 299f31d0", "d16cfe09 94fdcceb 5001e420 24126ea1")]
GEMM_SHAPES = [(1, 1, 1), (7, 13, 5), (70, 37, 19), (128, 128, 128)]
SEED = 20261203
_MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Philox4x32-10 of (n, 4) counters and (n, 2) keys, uint32, in numpy (Random123's paper)."""
    c = [counters[:, j].astype(np.uint64) for j in range(4)]
    k0, k1 = keys[:, 0].astype(np.uint64), keys[:, 1].astype(np.uint64)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _MASK]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & _MASK, (k1 + np.uint64(0xBB67AE85)) & _MASK
    return np.stack(c, axis=1).astype(np.uint32)


def normal_reference(seed: int, n: int) -> np.ndarray:
    """DESIGN.md's float32 normal stream from counter 0, with Box-Muller in float64: block i is
    Philox of counter (i, 0, 0, 0) and key (seed low, seed high); a word w is the float32 uniform
    ((w >> 8) + 0.5) / 2**24; the pair (u0, u1) gives r cos, r sin, r = sqrt(-2 ln u0), angle 2 pi u1."""
    pairs = -(-n // 2)
    blocks = -(-pairs // 2)
    counters = np.zeros((blocks, 4), np.uint32)
    counters[:, 0] = np.arange(blocks)
    keys = np.tile(np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32), (blocks, 1))
    words = philox4x32_10(counters, keys).reshape(-1)[:2 * pairs]
    u = np.minimum(((words >> 8).astype(np.float64) + 0.5) * 2.0**-24, 1 - 2.0**-24).astype(np.float32)
    u = u.astype(np.float64)  # the uniforms are float32 numbers
    r, angle = np.sqrt(-2 * np.log(u[0::2])), 2 * np.pi * u[1::2]
    z = np.empty(2 * pairs)
    z[0::2], z[1::2] = r * np.cos(angle), r * np.sin(angle)
    return z[:n]


def _check_philox(ctx) -> str | None:
    def words(text):
        return [[int(w, 16) for w in row.split()] for row in text]
    counters, keys, expected = (np.array(words(column), np.uint32) for column in zip(*PHILOX_KAT))
    got = rng.philox4x32(ctx, counters, keys).get()
    if not np.array_equal(philox4x32_10(counters, keys), expected):  # the oracle itself
        return "the numpy Philox reference disagrees with Random123's vectors"
    bad = np.flatnonzero((got != expected).any(axis=1))
    return None if not bad.size else f"known-answer vector {int(bad[0])}: got {got[bad[0]].tolist()}, " \
                                     f"expected {expected[bad[0]].tolist()}"


def _check_normal(ctx) -> str | None:
    a = cla.empty(ctx.queue, 4096, np.float32)
    Philox(ctx, SEED).normal(a)
    got, expected = a.get().astype(np.float64), normal_reference(SEED, 4096)
    error = np.abs(got - expected) / (1 + np.abs(expected))
    worst = int(np.argmax(error))
    return None if error[worst] <= 1e-5 else f"normal number {worst}: {got[worst]!r}, expected {expected[worst]!r}"


def _check_gemm(ctx) -> str | None:
    generator = np.random.default_rng(SEED)
    for dtype in ["float32"] + (["float64"] if ctx.info.fp64 else []):
        backend = blas.settings(ctx, dtype).large
        for m, n, k in GEMM_SHAPES:
            for trans_a, trans_b in ((False, False), (True, False), (False, True)):
                a = generator.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
                b = generator.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
                c = cla.zeros(ctx.queue, (m, n), dtype)
                blas.gemm(ctx, cla.to_device(ctx.queue, a), cla.to_device(ctx.queue, b), c, trans_a=trans_a,
                          trans_b=trans_b)
                expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
                # a sum of k products, each rounded: its error grows as sqrt(k) ulps
                tolerance = (1e-5 if dtype == "float32" else 1e-13) * np.sqrt(k) * (1 + np.abs(expected))
                if not (np.abs(c.get() - expected) <= tolerance).all():
                    worst = float(np.abs(c.get() - expected).max())
                    op = f"{'a.T' if trans_a else 'a'} @ {'b.T' if trans_b else 'b'}"
                    return f"{dtype} {op} of ({m}, {k}) x ({k}, {n}) on {backend}: off by {worst:.3g}"
    return None


def _numpy_step(x, y, params, rate):
    """One SGD step of tanh -> softmax with the cross-entropy cost, in float64."""
    (w0, b0), (w1, b1) = params
    h = np.tanh(x @ w0.T + b0)
    z = h @ w1.T + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d1 = (p - y) / len(x)  # dC/dz of the cross-entropy after a softmax
    d0 = (d1 @ w1) * (1 - h * h)
    return [(w0 - rate * d0.T @ x, b0 - rate * d0.sum(axis=0)), (w1 - rate * d1.T @ h, b1 - rate * d1.sum(axis=0))]


def _check_training(ctx) -> str | None:
    generator = np.random.default_rng(SEED)
    x = generator.normal(size=(16, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[generator.integers(0, 3, 16)]
    net = InferenceNetwork(ctx, 6, [FullyConnected(8, "tanh"), FullyConnected(3, "softmax")], dtype=np.float32,
                           seed=SEED)
    weights = net.get_weights()
    params = [(weights[0].astype(np.float64), weights[1].astype(np.float64)),
              (weights[2].astype(np.float64), weights[3].astype(np.float64))]
    sgd(TrainingNetwork(net, x), y, "cross_entropy", epochs=2, learning_rate=0.5)
    for _ in range(2):
        params = _numpy_step(x.astype(np.float64), y, params, 0.5)
    for got, expected in zip(net.get_weights(), [a for pair in params for a in pair]):
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            return f"weights after two SGD steps off by {float(np.abs(got - expected).max()):.3g}"
    return None


CHECKS = {"philox": _check_philox, "normal": _check_normal, "gemm": _check_gemm, "training": _check_training}


def check(ctx) -> dict:
    """Run every check on ctx's device; the verdict: {"passed", "failed": ["<check>: what"],
    "checks": {name: "ok" or what failed}, "device", "driver", "clnet", "date"}. A check that
    raises fails with its exception."""
    results = {}
    for name, run in CHECKS.items():
        try:
            results[name] = run(ctx) or "ok"
        except Exception as exc:  # a driver that crashes a kernel or refuses a build fails the check
            results[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            results[name] += f" ({traceback.extract_tb(exc.__traceback__)[-1].name})"
    failed = [f"{name}: {result}" for name, result in results.items() if result != "ok"]
    from .. import __version__  # here: clnet/__init__.py imports this module before it sets it
    return {"passed": not failed, "failed": failed, "checks": results, "device": ctx.info.name,
            "platform": ctx.info.platform, "driver": ctx.info.driver_version, "clnet": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def check_device(spec: str | None = None, keep: bool = True) -> dict:
    """Self-check the device `spec` names (as clnet.Context takes it) and, with keep, keep the
    verdict for `clnet devices` and device choice. Returns the verdict (see `check`)."""
    with Context(spec) as ctx:
        verdict = check(ctx)
        if keep:
            checks.store(ctx.info, verdict)
    return verdict
