"""Generating sequences with a network of token ids (a GPT): one id at a time, each drawn from the
logits the network gives the last position, the network's buffers reused from token to token
(a TrainingNetwork for batches of one, its forward pass recorded once and replayed)."""

from __future__ import annotations

import numpy as np

from ..ops.arrays import host_batch
from .attention import MultiHeadAttention
from .blocks import Branches


def _causal(specs) -> bool:
    """Whether no attention inside the layers looks ahead (then padding after the last id changes nothing)."""
    for spec in specs:
        if isinstance(spec, MultiHeadAttention) and not spec.causal:
            return False
        if isinstance(spec, Branches) and not all(_causal(branch) for branch in spec.branches):
            return False
    return True


def generate(net, prompt, count: int, temperature: float = 1.0, top_k: int | None = None,
             seed: int | None = None) -> np.ndarray:
    """`prompt` (a sequence of token ids) followed by `count` ids drawn one at a time.

    net: a network of (batch, seq) ids with (seq, vocab) logits (clnet.nn.gpt). Each new id is
    drawn from softmax(logits / temperature) of the last position (temperature 0: the most likely
    id), among the top_k most likely when given, with numpy's generator seeded by `seed`. The
    window is the last seq ids; a shorter one is padded after its end, which only causal networks
    allow (no position sees those after it)."""
    vocab, (seq, classes) = net.vocabulary, net.output_shape if len(net.output_shape) == 2 else (None, None)
    if vocab is None or classes is None:
        raise ValueError("generate needs a network of token ids with logits per position, (seq, vocab) outputs "
                         "(clnet.nn.gpt's)")
    ids = np.asarray(prompt)
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise ValueError(f"prompt must be a non-empty 1-D sequence of integer ids, got {ids.dtype} of shape "
                         f"{ids.shape}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a whole number >= 0, got {count!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be in 1..{classes} or None, got {top_k!r}")
    if ids.size < seq and not _causal(net.specs):
        raise ValueError(f"a prompt shorter than the network's {seq} positions needs a causal network")
    rng = np.random.default_rng(seed)
    window = np.zeros((1, seq), dtype=np.int64)
    out = list(ids)
    with net.using_buffers():  # the batch-of-one buffers are the network's own: wait for a training
        training = net.training_network(1)
        for _ in range(count):
            recent = np.asarray(out[-seq:])
            window[0, :recent.size] = recent
            training.x.set(host_batch(window, net.input_shape, net.dtype, ids=vocab))
            logits = training.forward(drop=False)[0, recent.size - 1].get().astype(np.float64)
            out.append(_draw(logits, temperature, top_k, rng))
    return np.asarray(out, dtype=np.int64)


def _draw(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    if temperature == 0:
        return int(logits.argmax())
    if top_k is not None:
        logits = np.where(logits >= np.sort(logits)[-top_k], logits, -np.inf)
    p = np.exp((logits - logits.max()) / temperature)
    return int(rng.choice(logits.size, p=p / p.sum()))
