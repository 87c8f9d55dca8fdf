"""Transformers as compositions of clnet's layers: a pre-LayerNorm block (GPT-2's) and a whole
GPT, lists of layers to put in a network.

    block = transformer_block(dim=128, heads=4)      # two residual blocks:
        Residual([LayerNorm(128), MultiHeadAttention(4, causal=True)])
        Residual([LayerNorm(128), FullyConnected(512, "gelu"), FullyConnected(128)])

    net = clnet.InferenceNetwork(ctx, 64, gpt(vocab=96, context=64, dim=128, heads=4, layers=4))
    net.fit(ids, next_ids)          # ids (samples, 64), next_ids (samples, 64): cross-entropy per position

PyTorch writes the same block as x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).
"""

from __future__ import annotations

from .attention import MultiHeadAttention
from .blocks import Residual
from .dropout import Dropout
from .embedding import Embedding, PositionalEmbedding
from .fully_connected import FullyConnected
from .normalization import LayerNorm
from .protocol import Layer


def transformer_block(dim: int, heads: int, causal: bool = True, hidden: int | None = None, dropout: float = 0.0,
                      activation: str = "gelu") -> list[Layer]:
    """A pre-LayerNorm transformer block on (seq, dim) samples: attention, then an MLP of `hidden`
    units (4 * dim by default) with `activation`, each in a residual connection; dropout: on the
    attention weights and after each branch, as GPT-2's."""
    hidden = 4 * dim if hidden is None else hidden
    after = [Dropout(dropout)] if dropout else []
    return [Residual([LayerNorm(dim), MultiHeadAttention(heads, causal=causal, dropout=dropout)] + after),
            Residual([LayerNorm(dim), FullyConnected(hidden, activation), FullyConnected(dim)] + after)]


def gpt(vocab: int, context: int, dim: int, heads: int, layers: int, dropout: float = 0.0,
        activation: str = "gelu") -> list[Layer]:
    """A GPT's layers for (batch, context) token ids: token and positional embeddings, `layers`
    causal transformer blocks (their MLPs' `activation`: "gelu", or GPT-2's "gelu_tanh"), a final
    LayerNorm and a linear layer to `vocab` logits per position. `context` is the sequence length
    the network is built for (its input shape)."""
    del context  # the network's input shape carries it; named here so that calls read as a model's size
    return ([Embedding(vocab, dim), PositionalEmbedding()] + ([Dropout(dropout)] if dropout else [])
            + [layer for _ in range(layers) for layer in transformer_block(dim, heads, dropout=dropout,
                                                                           activation=activation)]
            + [LayerNorm(dim), FullyConnected(vocab)])
