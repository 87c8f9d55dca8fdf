"""numpy oracles the tests compare clnet with, written from the definitions (DESIGN.md,
Random123's paper), not from clnet's code."""

import math

import numpy as np
from scipy.special import erf

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


def _taylor(dtype):
    """DESIGN.md's constants: 2 / (2k + 1) for ln, and the Taylor coefficients of sin and cos of
    (pi / 2) f, each rounded to dtype."""
    f32 = np.dtype(dtype) == np.float32
    half_pi = math.pi / 2
    ln = [dtype(2 / (2 * k + 1)) for k in range(5 if f32 else 12)]
    sin = [dtype((-1) ** k * half_pi ** (2 * k + 1) / math.factorial(2 * k + 1)) for k in range(5 if f32 else 9)]
    cos = [dtype((-1) ** (k + 1) * half_pi ** (2 * k + 2) / math.factorial(2 * k + 2)) for k in range(4 if f32 else 9)]
    return ln, sin, cos


def _horner(coefficients, x):
    p = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        p = p * x + c
    return p


def normal_exact(seed, counter, n, dtype, mean=0.0, std=1.0):
    """DESIGN.md's normal numbers, computed as the kernel does, operation by operation in dtype
    (numpy rounds each one; no fused multiply-add): ln by an exponent split and a series in
    s = f / (2 + f), the reciprocal and the float32 square root by Newton iterations from a
    bit-level first guess, sin and cos of 2 pi u by quadrant and a Taylor polynomial."""
    dtype = np.dtype(dtype).type
    f32 = dtype == np.float32
    uint, bits, mantissa = (np.uint32, 23, 0x7FFFFF) if f32 else (np.uint64, 52, 0xFFFFFFFFFFFFF)
    bias, one = (127, 0x3F800000) if f32 else (1023, 0x3FF0000000000000)
    u = uniform01(seed, counter, 2 * -(-n // 2), dtype)
    u0, u1 = u[0::2], u[1::2]
    ln_terms, sin_terms, cos_terms = _taylor(dtype)
    # ln u0
    low = uint(0x3F3504F3 if f32 else 0x3FE6A09E667F3BCD)  # the bits of sqrt(1/2)
    b = u0.view(uint) + (uint(one) - low)  # m = u / 2^e in [sqrt(1/2), sqrt(2))
    e = ((b >> uint(bits)).astype(np.int64) - bias).astype(dtype)
    m = ((b & uint(mantissa)) + low).view(dtype)
    f = m - dtype(1)
    d = dtype(2) + f
    y = (uint(0x7EF311C7 if f32 else 0x7FDE623822FC16E6) - d.view(uint)).view(dtype)
    for _ in range(3 if f32 else 4):
        y = y * (dtype(2) - d * y)
    s = f * y
    ln_m = s * _horner(ln_terms, s * s)
    ln2_hi = np.array(0x3F317200 if f32 else 0x3FE62E42FEE00000, uint).view(dtype)
    ln2_lo = dtype(math.log(2) - float(ln2_hi))
    x = dtype(-2) * (e * ln2_hi + (e * ln2_lo + ln_m))
    # r = sqrt(x)
    if f32:
        y = (uint(0x5F3759DF) - (x.view(uint) >> uint(1))).view(dtype)
        h = dtype(0.5) * x
        for _ in range(3):
            y = y * (dtype(1.5) - h * y * y)
        r = x * y
    else:
        r = np.sqrt(x)
    # sin and cos of 2 pi u1
    q = u1 * dtype(4)
    quadrant = np.rint(q)
    f = q - quadrant
    quadrant = quadrant.astype(np.int64) & 3
    f2 = f * f
    sn = f * _horner(sin_terms, f2)
    cs = _horner(cos_terms, f2) * f2 + dtype(1)
    sin = np.choose(quadrant, [sn, cs, -sn, -cs])
    cos = np.choose(quadrant, [cs, -sn, -cs, sn])
    z = np.empty(len(u), dtype)
    z[0::2] = dtype(mean) + dtype(std) * (r * cos)
    z[1::2] = dtype(mean) + dtype(std) * (r * sin)
    return z[:n]


# -- neural networks --------------------------------------------------------------------------

def activation(name, z):
    """f(z), from the textbook definitions."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return z
    if name == "sigmoid":
        return 0.5 * (1 + np.tanh(z / 2))  # = 1 / (1 + exp(-z)), without overflow
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "relu6":
        return np.minimum(np.maximum(z, 0), 6)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "gelu":  # z * Phi(z)
        return 0.5 * z * (1 + erf(z / math.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    if name == "silu":  # z * sigmoid(z)
        return z * activation("sigmoid", z)
    if name == "hardsigmoid":  # relu6(z + 3) / 6
        return np.minimum(np.maximum(z + 3, 0), 6) / 6
    if name == "hardswish":
        return z * np.minimum(np.maximum(z + 3, 0), 6) / 6
    raise ValueError(name)


def activation_derivative(name, z):
    """f'(z) in terms of z (at 0, the relu family takes the left slope, as PyTorch)."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return np.ones_like(z)
    if name == "sigmoid":
        return 0.25 / np.cosh(z / 2) ** 2
    if name == "tanh":
        return 1 / np.cosh(np.clip(z, -300, 300)) ** 2
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "relu6":
        return ((z > 0) & (z < 6)).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
    if name == "gelu":  # Phi(z) + z phi(z)
        return 0.5 * (1 + erf(z / math.sqrt(2))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if name == "gelu_tanh":
        k = math.sqrt(2 / math.pi)
        t = np.tanh(k * (z + 0.044715 * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)
    if name == "silu":
        s = activation("sigmoid", z)
        return s * (1 + z * (1 - s))
    if name == "hardsigmoid":
        return ((z > -3) & (z < 3)) / 6.0
    if name == "hardswish":  # PyTorch's: 0 below -3, z / 3 + 1/2 up to 3, 1 beyond
        return np.where(z < -3, 0.0, np.where(z <= 3, z / 3 + 0.5, 1.0))
    raise ValueError(name)


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(z, y):
    """-sum(y ln softmax(z)) / batch, with ln softmax from logsumexp."""
    z = np.asarray(z, np.float64)
    top = z.max(axis=1, keepdims=True)
    log_softmax = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
    return -np.sum(y * log_softmax) / z.shape[0]


def log_softmax(z):
    z = np.asarray(z, np.float64)
    top = z.max(axis=1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))


def apply(name, z):
    """f(z) for any activation: elementwise, or softmax and log_softmax over each row."""
    return {"softmax": softmax, "log_softmax": log_softmax}.get(name, lambda t: activation(name, t))(z)


def forward(x, params, activations):
    """Every layer's (z, a) for x (batch, inputs); params = [(W, b), ...], W (outputs, inputs)."""
    a, layers = np.asarray(x, np.float64), []
    for (w, b), name in zip(params, activations):
        z = a @ w.T + b
        a = apply(name, z)
        layers.append((z, a))
    return layers


def cost(name, a, y, activation="sigmoid"):
    """The cost from the output a: cross-entropy is binary after a sigmoid, categorical after a
    softmax."""
    batch = a.shape[0]
    if name == "quadratic":
        return np.sum((a - y) ** 2) / (2 * batch)
    if name == "mse":  # the mean over every element
        return np.mean((a - y) ** 2)
    if name == "mae":
        return np.mean(np.abs(a - y))
    if name == "huber":  # delta 1
        d = np.abs(a - y)
        return np.mean(np.where(d <= 1, 0.5 * d * d, d - 0.5))
    if name == "kl_divergence":  # the cross-entropy less the entropy of y, 0 ln 0 = 0
        def y_ln_y(t):
            return np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0.0)
        entropy = y_ln_y(y) + (0 if activation in ("softmax", "log_softmax") else y_ln_y(1 - y))
        return cost("cross_entropy", a, y, activation) + np.sum(entropy) / batch
    if activation == "softmax":
        return -np.sum(y * np.log(a)) / batch
    if activation == "log_softmax":  # a = ln p
        return -np.sum(y * a) / batch
    return -np.sum(y * np.log(a) + (1 - y) * np.log(1 - a)) / batch


def backward(name, z, a, g):
    """dC/dz from dC/da = g: the derivative elementwise, or the softmax Jacobian's product."""
    if name == "softmax":
        return a * (g - (g * a).sum(axis=1, keepdims=True))
    if name == "log_softmax":
        return g - np.exp(a) * g.sum(axis=1, keepdims=True)
    return g * activation_derivative(name, z)


def gradients(x, y, params, activations, cost_name):
    """Backpropagation written out: [(dC/dW, dC/db), ...] and the cost."""
    layers = forward(x, params, activations)
    z, a = layers[-1]
    batch = a.shape[0]
    if cost_name == "quadratic":
        delta = backward(activations[-1], z, a, (a - y) / batch)
    elif cost_name == "mse":
        delta = backward(activations[-1], z, a, 2 * (a - y) / a.size)
    elif cost_name == "mae":
        delta = backward(activations[-1], z, a, np.sign(a - y) / a.size)
    elif cost_name == "huber":
        delta = backward(activations[-1], z, a, np.clip(a - y, -1, 1) / a.size)
    else:  # cross-entropy (or KL divergence) after a sigmoid or softmax: the activation's derivative cancels
        delta = ((np.exp(a) if activations[-1] == "log_softmax" else a) - y) / batch
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        below = layers[i - 1][1] if i else np.asarray(x, np.float64)
        grads[i] = (delta.T @ below, delta.sum(axis=0))
        if i:
            delta = backward(activations[i - 1], *layers[i - 1], delta @ params[i][0])
    return grads, cost(cost_name, a, y, activations[-1])


def sgd_epoch(x, y, params, activations, cost_name, learning_rate):
    """One forward pass, backpropagation and SGD step; returns the new params and the cost."""
    grads, c = gradients(x, y, params, activations, cost_name)
    return [(w - learning_rate * gw, b - learning_rate * gb) for (w, b), (gw, gb) in zip(params, grads)], c


def sgd_step(w, g, state, learning_rate, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD's step (dampening 0), written out; state holds the velocity."""
    d = g + weight_decay * w
    if momentum:
        state["b"] = d.copy() if "b" not in state else momentum * state["b"] + d
        d = d + momentum * state["b"] if nesterov else state["b"]
    return w - learning_rate * d


def adam_step(w, g, state, learning_rate, beta1, beta2, eps, weight_decay=0.0):
    """torch.optim.Adam's step, written out; state holds m, v and t."""
    d = g + weight_decay * w
    t = state["t"] = state.get("t", 0) + 1
    m = state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * d
    v = state["v"] = beta2 * state.get("v", 0) + (1 - beta2) * d * d
    return w - learning_rate * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)


def dropout_keep(key, layer, step, n, rate):
    """DESIGN.md's dropout mask: element e is kept unless (w >> 8) < round(rate * 2**24), w = word
    e % 4 of the Philox block with counter (e // 4, 0 high word, layer, step) and key `key`."""
    blocks = -(-n // 4)
    counters = np.zeros((blocks, 4), np.uint32)
    counters[:, 0] = np.arange(blocks, dtype=np.uint32)
    counters[:, 2], counters[:, 3] = layer, step
    keys = np.empty((blocks, 2), np.uint32)
    keys[:, 0], keys[:, 1] = key & 0xFFFFFFFF, key >> 32
    words = philox4x32_10(counters, keys).reshape(-1)[:n]
    return (words >> 8) >= round(rate * 2**24)


def central_differences(arrays, cost, h=1e-6):
    """dC/dp for each device array p (pyopencl, changed and put back in place) by central
    differences of cost(), a function of all of them."""
    found = []
    for p in arrays:
        saved, numeric = p.get(), np.zeros(p.shape)
        for index in np.ndindex(p.shape):
            for sign in (1, -1):
                shifted = saved.copy()
                shifted[index] += sign * h
                p.set(shifted)
                numeric[index] += sign * cost() / (2 * h)
        p.set(saved)
        found.append(numeric)
    return found
