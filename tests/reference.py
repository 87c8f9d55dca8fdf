"""numpy oracles the tests compare clnet with, written from the definitions (DESIGN.md,
Random123's paper), not from clnet's code."""

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters, keys):
    """(n, 4) counters and (n, 2) keys (uint32) -> (n, 4) uint32 blocks."""
    c = [counters[:, j].astype(np.uint64) for j in range(4)]
    k0, k1 = keys[:, 0].astype(np.uint64), keys[:, 1].astype(np.uint64)
    for _ in range(10):
        p0, p1 = M0 * c[0], M1 * c[2]  # exact: both factors < 2**32
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & MASK]
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return np.stack(c, axis=1).astype(np.uint32)


def stream_blocks(seed, counter, blocks):
    """Blocks counter, counter + 1, ... of the stream of `seed` (DESIGN.md)."""
    index = (np.uint64(counter) + np.arange(blocks, dtype=np.uint64))  # wraps mod 2**64
    counters = np.zeros((blocks, 4), np.uint32)
    counters[:, 0] = (index & MASK).astype(np.uint32)
    counters[:, 1] = (index >> np.uint64(32)).astype(np.uint32)
    keys = np.empty((blocks, 2), np.uint32)
    keys[:, 0], keys[:, 1] = seed & 0xFFFFFFFF, seed >> 32
    return philox4x32_10(counters, keys)


def raw(seed, counter, n):
    return stream_blocks(seed, counter, -(-n // 4)).reshape(-1)[:n]


def uniform01(seed, counter, n, dtype):
    """DESIGN.md's uniforms, kept below 1 where the formula rounds to exactly 1."""
    if np.dtype(dtype) == np.float32:
        w = raw(seed, counter, n)
        u = (((w >> 8).astype(np.float64) + 0.5) * 2.0**-24).astype(np.float32)
        return np.minimum(u, np.float32(1 - 2.0**-24))
    words = stream_blocks(seed, counter, -(-n // 2)).astype(np.uint64).reshape(-1, 2)[:n]
    m = ((words[:, 0] << np.uint64(32)) | words[:, 1]) >> np.uint64(11)
    return np.minimum((m.astype(np.float64) + 0.5) * 2.0**-53, 1 - 2.0**-53)


def normal(seed, counter, n, dtype):
    """Box-Muller on the uniforms of the same positions, pairs (i, i + 1), in float64."""
    u = uniform01(seed, counter, 2 * -(-n // 2), dtype).astype(np.float64)  # whole pairs
    r, angle = np.sqrt(-2 * np.log(u[0::2])), 2 * np.pi * u[1::2]
    z = np.empty(len(u))
    z[0::2], z[1::2] = r * np.cos(angle), r * np.sin(angle)
    return z[:n]
