"""Layers and networks: the layer protocol (blueprint, inference and training halves), clnet's
layers (fully-connected, activation, flatten, dropout), the registry that saving uses, networks
whose parameters are views of one device buffer, blocks whose inside branches (residual, concatenation,
product), weight initialization, backpropagation."""

from .activation import Activation, ActivationLayer
from .attention import MultiHeadAttention
from .blocks import Add, Branches, Concat, Multiply, Residual
from .conv1d import Conv1d
from .conv2d import Conv2d
from .dropout import Dropout
from .embedding import Embedding, PositionalEmbedding
from .flatten import Flatten
from .fully_connected import FullyConnected, FullyConnectedLayer
from .initialization import INIT_METHODS, init
from .network import Network, TrainingNetwork
from .normalization import BatchNorm, LayerNorm
from .parameters import FlatArrays
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step, in_place_delta
from .registry import register_layer
from .sequence_mean import SequenceMean
from .transformer import gpt, transformer_block
from .upsample import Upsample2d

__all__ = [
    "Activation", "ActivationLayer", "AdaptiveAvgPool2d", "Add", "AvgPool2d", "BatchNorm", "Branches",
    "BuiltLayer", "Concat", "Conv1d", "Conv2d", "Dropout", "Embedding", "FlatArrays", "Flatten", "FullyConnected",
    "FullyConnectedLayer", "GlobalAvgPool2d", "INIT_METHODS", "Layer", "LayerNorm", "LayerTraining", "Link",
    "MaxPool2d", "MultiHeadAttention", "Multiply", "Network", "Parameter", "PositionalEmbedding", "Residual",
    "SequenceMean", "Step", "TrainingNetwork", "Upsample2d", "gpt", "in_place_delta", "init", "register_layer",
    "transformer_block"
]
