"""Layers and networks: fully-connected layers whose parameters are views of one device buffer
per network, weight initialization, the forward pass and backpropagation."""

from .initialization import INIT_METHODS, init
from .layers import FullyConnected, FullyConnectedLayer
from .network import Network, TrainingNetwork
from .parameters import FlatArrays

__all__ = ["INIT_METHODS", "FlatArrays", "FullyConnected", "FullyConnectedLayer", "Network", "TrainingNetwork",
           "init"]
