"""Layers and networks: the layer protocol (blueprint, inference and training halves), clnet's
layers (fully-connected, activation, flatten, dropout), the registry that saving uses, networks
whose parameters are views of one device buffer, weight initialization, backpropagation."""

from .activation import Activation, ActivationLayer
from .dropout import Dropout
from .flatten import Flatten
from .fully_connected import FullyConnected, FullyConnectedLayer
from .initialization import INIT_METHODS, init
from .network import Network, TrainingNetwork
from .parameters import FlatArrays
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step, in_place_delta
from .registry import register_layer

__all__ = ["INIT_METHODS", "Activation", "ActivationLayer", "BuiltLayer", "Dropout", "FlatArrays", "Flatten",
           "FullyConnected", "FullyConnectedLayer", "Layer", "LayerTraining", "Link", "Network", "Parameter", "Step",
           "TrainingNetwork", "in_place_delta", "init", "register_layer"]
