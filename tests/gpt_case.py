"""The small GPT and token data that tests/distributed_run.py trains on several ranks and
tests/test_distributed.py in one process."""

import numpy as np

import clnet


def gpt_data():
    """Token ids and the ids one position later, for mode "gpt" (and tests/test_distributed.py)."""
    text = np.random.default_rng(5).integers(0, 7, 200)
    starts = np.arange(0, 150, 5)
    return text[starts[:, None] + np.arange(6)], text[starts[:, None] + np.arange(1, 7)]


def gpt_net(ctx, seed):
    return clnet.InferenceNetwork(ctx, 6, clnet.nn.gpt(7, 6, 8, 2, 1, dropout=0.1), dtype=np.float64, seed=seed)
