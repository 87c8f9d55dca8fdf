"""Networks: a sequence of layers (any clnet.Layer) on one device, for inference, and set up to
train on one batch size.

    net = Network(ctx, 2, [FullyConnected(4, "tanh"), FullyConnected(1, "sigmoid")])
    net(x)                                  # (batch, *output_shape) device array
    training = TrainingNetwork(net, x)      # shares net's weights; buffers for x's batch

A network keeps all its trainable parameters in one device buffer (`parameter_buffer`), their
gradients in another (`gradient_buffer`, once it trains) and non-trainable state (running
statistics) in a third (`state_buffer`, None when no layer has any); the layers' arrays are views.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import pyopencl.array as cla

from ..ops import memory
from ..ops.arrays import check_sample_shape, host_batch, to_device_batch
from ..runtime import allocation
from ..runtime.errors import ContextClosedError
from . import generation, initialization, registry
from .parameters import FlatArrays
from .placement import check_layers, place
from .prediction import Predictions
from .protocol import BuiltLayer, Layer
from .summary import summary as summary_table
from .training_network import TrainingNetwork


def check_network_layers(layers) -> list[Layer]:
    layers = check_layers(layers)
    if not layers:
        raise TypeError("layers must be a non-empty list of clnet.FullyConnected, Conv2d, Activation, Flatten, "
                        "Dropout or other clnet.Layer objects, got []")
    if layers[-1].dropout:
        raise ValueError("dropout on the output layer is not supported: give it to a hidden layer")
    for i, layer in enumerate(layers[1:], 1):
        if getattr(layer, "takes_ids", None):
            raise ValueError(f"layer {i} ({layer!r}) takes token ids: an Embedding is only a network's first layer")
    return layers


class Network(Predictions):
    """A sequence of layers on one device, for float32 or float64.

    `inputs` is the shape of one sample: an int for (batch, features) data, a tuple for other
    ranks, such as (channels, height, width). The weights start initialized by `init`
    (clnet.INIT_METHODS; "auto": He for the relu family, Xavier for the others) from `seed`, so
    the same script gives the same network; init=None leaves every weight and bias at zero.
    """

    def __init__(self, ctx, inputs: int | tuple[int, ...], layers: Sequence[Layer], dtype=np.float32,
                 init: str | None = "auto", seed: int = 0):
        try:
            self.input_shape = check_sample_shape(inputs)
        except ValueError:
            raise ValueError(f"a network needs a positive whole number of inputs, or a tuple of them (the shape of "
                             f"one sample), got {inputs!r}") from None
        self.specs = check_network_layers(layers)
        if init is not None and init not in initialization.INIT_METHODS:
            raise ValueError(f"unknown init method {init!r}; choose one of "
                             f"{', '.join(initialization.INIT_METHODS)}, or None")
        self.ctx = ctx
        self.dtype = ctx.real_dtype(dtype)
        self._lay_out()
        self.seed: int | None = None
        self._closed = False
        self._being_trained = threading.Lock()
        self._buffers_lock = threading.RLock()  # see using_buffers
        if init is not None:
            initialization.init(self, init, seed)
        ctx.own(self)

    @contextlib.contextmanager
    def trained_by(self, what: str) -> Iterator[None]:
        """Held while `what` (fit, sgd) trains the network: its training buffers are the network's
        own, so a second thread training the same network at once is refused, not interleaved
        (and every other use of its buffers waits: `using_buffers`)."""
        self._check_open()
        if not self._being_trained.acquire(blocking=False):
            raise RuntimeError(f"{what}: this network is being trained by another thread; a network trains in one "
                               "thread at a time (a context may be shared: give each thread a network of its own)")
        try:
            with self.using_buffers():
                yield
        finally:
            self._being_trained.release()

    def using_buffers(self) -> threading.RLock:
        """The lock held by whatever reads or writes the network's buffers (its parameters and its
        training networks): training, evaluate, generate and each forward pass wait for one another
        instead of interleaving their launches on the shared buffers. Reentrant: what a thread
        does while it holds it (a forward pass inside fit) goes on."""
        return self._buffers_lock

    def _lay_out(self) -> None:
        """Place the layers, allocate the parameter and state buffers, build the layers on views."""
        self.placements = place(self.input_shape, self.specs)
        self.output_shape = self.placements[-1].output_shape
        self.parameter_buffer, self.state_buffer = self._allocate()
        arrays = self._arrays_by_layer()
        self.layers: list[BuiltLayer] = [spec.build(self.ctx, placed.input_shape, self.dtype, found) for spec, placed,
                                         found in zip(self.specs, self.placements, arrays)]
        self._gradient_buffer: FlatArrays | None = None
        self._kept: FlatArrays | None = None
        self._training: dict[int, TrainingNetwork] = {}

    def freeze(self, layers: int | Sequence[int] | slice | None = None) -> None:
        """Freeze layers (indices into `specs`, a slice, or None: every layer but the last, the
        body under a new head): their parameters stop training (the optimizer and the gradients
        skip them, and nothing before them is backpropagated through) while they still compute as
        in training (batch statistics too, as PyTorch's modules with requires_grad False). The
        network's buffers are laid out anew with the same values; saving, checkpoints and resume
        keep the choice (`Layer.trainable`)."""
        self._set_trainable(range(len(self.specs) - 1) if layers is None else layers, False)

    def unfreeze(self, layers: int | Sequence[int] | slice | None = None) -> None:
        """Let frozen layers (indices, a slice, or None: all) train again; see `freeze`."""
        self._set_trainable(range(len(self.specs)) if layers is None else layers, True)

    def _set_trainable(self, layers, trainable: bool) -> None:
        indices = list(range(len(self.specs)))
        try:
            chosen = indices[layers] if isinstance(layers, slice) else [indices[i] for i in (
                [layers] if isinstance(layers, (int, np.integer)) else layers)]
        except (IndexError, TypeError):
            raise ValueError(f"layers must be indices of this network's {len(self.specs)} layers, a slice or None, "
                             f"got {layers!r}") from None
        with self.trained_by("freeze" if not trainable else "unfreeze"):
            arrays = self.host_arrays()
            self.specs = list(self.specs)
            for i in set(chosen):
                self.specs[i] = copy.copy(self.specs[i])  # the blueprint may be another network's too
                self.specs[i].trainable = trainable
            self._release_buffers()
            self._lay_out()
            self.set_arrays(arrays)

    def with_head(self, layers: Sequence[Layer], keep: int | None = None, seed: int = 0) -> Network:
        """A new network of this type on the same device: this one's first `keep` layers (None: all
        but the last) with their arrays and frozen choice, then `layers` initialized by "auto"
        from `seed`; how an imported classifier gets a head for other classes."""
        keep = len(self.specs) - 1 if keep is None else keep
        if not 0 <= keep <= len(self.specs):
            raise ValueError(f"keep must be in 0..{len(self.specs)}, got {keep}")
        net = type(self)(self.ctx, self.input_shape, list(self.specs[:keep]) + list(layers), self.dtype, seed=seed)
        kept = self.host_arrays()
        for i, layer in enumerate(net.layers[:keep]):
            for name, target in layer.arrays.items():
                target.set(np.ascontiguousarray(kept[f"layer_{i}.{name}"], dtype=self.dtype))
        return net

    def _allocate(self) -> tuple[FlatArrays, FlatArrays | None]:
        trainable = [p.shape for placed in self.placements for p in placed.parameters if p.trainable]
        state = [p.shape for placed in self.placements for p in placed.parameters if not p.trainable]
        count = sum(math.prod(shape) for shape in trainable)
        parameters = FlatArrays(self.ctx, trainable, self.dtype, f"a network of {count:,} {self.dtype.name} "
                                "parameters", "use fewer or smaller layers")
        return parameters, (FlatArrays(self.ctx, state, self.dtype, "the network's state") if state else None)

    def _arrays_by_layer(self) -> list[dict[str, cla.Array]]:
        trainable = iter(self.parameter_buffer.views)
        state = iter(self.state_buffer.views if self.state_buffer is not None else ())
        return [{p.name: next(trainable if p.trainable else state) for p in placed.parameters}
                for placed in self.placements]

    @property
    def inputs(self) -> int | tuple[int, ...]:
        """The width of a (batch, features) input, else the shape of one sample."""
        return self.input_shape[0] if len(self.input_shape) == 1 else self.input_shape

    @property
    def outputs(self) -> int | tuple[int, ...]:
        """The width of a (batch, outputs) output, else the shape of one sample's output."""
        return self.output_shape[0] if len(self.output_shape) == 1 else self.output_shape

    @property
    def vocabulary(self) -> int | None:
        """The vocabulary size when the network takes token ids (its first layer is an
        Embedding): its inputs are then integer ids in 0..vocabulary-1; None otherwise."""
        return getattr(self.specs[0], "takes_ids", None)

    @property
    def output_activation(self) -> str:
        """The activation the last layer applies ("linear" when it applies none)."""
        return self.specs[-1].activation

    def parameters(self) -> list[cla.Array]:
        """Every trainable parameter, in order: [W0, b0, W1, b1, ...] (views of one buffer)."""
        return self.parameter_buffer.views

    def named_arrays(self) -> dict[str, cla.Array]:
        """Every parameter and state array by name, "layer_<i>.<name>" (PyTorch's state_dict
        shape: device arrays that are views of the network's buffers)."""
        return {f"layer_{i}.{name}": array for i, layer in enumerate(self.layers)
                for name, array in layer.arrays.items()}

    def host_arrays(self) -> dict[str, np.ndarray]:
        """Every parameter and state array by name (as `named_arrays`), copied to the host in one
        transfer per buffer."""
        self._check_open()
        found = dict(zip(self._names(trainable=True), self.parameter_buffer.get()))
        if self.state_buffer is not None:
            found.update(zip(self._names(trainable=False), self.state_buffer.get()))
        return {name: found[name] for name in self.named_arrays()}  # layer by layer, as named_arrays

    def set_arrays(self, arrays) -> None:
        """Set every parameter and state array from a mapping name -> array-like with the names of
        `named_arrays` (a loaded file, another network's `host_arrays`). Queued."""
        self._check_open()
        named = self.named_arrays()
        missing, unknown = sorted(set(named) - set(arrays)), sorted(set(arrays) - set(named))
        if missing or unknown:
            raise ValueError(f"set_arrays needs exactly this network's arrays: missing {missing}, unknown {unknown}")
        values = {name: np.ascontiguousarray(arrays[name], dtype=self.dtype) for name in named}
        for name, target in named.items():  # every check before the first copy: a refusal changes nothing
            if values[name].shape != tuple(target.shape):
                raise ValueError(f"{name} must have shape {tuple(target.shape)}, got {values[name].shape}")
        for name, target in named.items():
            target.set(values[name])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and state array by name, as numpy (PyTorch's state_dict; weights are
        (outputs, inputs), as torch.nn.Linear's): `host_arrays`."""
        return self.host_arrays()

    def load_state_dict(self, arrays) -> None:
        """Set every array from a mapping like `state_dict`'s (PyTorch's name): `set_arrays`."""
        self.set_arrays(arrays)

    def get_weights(self) -> list[np.ndarray]:
        """Every parameter and state array as numpy, in the order of `named_arrays`: layer by
        layer, each layer's arrays as it declares them (a batch norm's scale, shift, running mean,
        running variance). Keras' name; the layout is PyTorch's: a dense layer's weights are
        (outputs, inputs)."""
        return list(self.host_arrays().values())

    def set_weights(self, weights: Sequence) -> None:
        """Set every array from a list in the order of `get_weights`; every array is checked
        before the first is copied, so a refusal changes nothing. Queued."""
        names = list(self.named_arrays())
        if len(weights) != len(names):
            raise ValueError(f"set_weights needs {len(names)} arrays ({', '.join(names)}), got {len(weights)}")
        self.set_arrays(dict(zip(names, weights)))

    def generate(self, prompt, count: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None) -> np.ndarray:
        """The ids of `prompt` followed by `count` ids drawn one at a time from the logits of the
        last position (a GPT's sampling; temperature, top_k, seed): clnet.nn.generation.generate."""
        return generation.generate(self, prompt, count, temperature, top_k, seed)

    def summary(self, print_fn=print) -> str:
        """A table of the layers (and those inside blocks), their output shapes and parameter
        counts, with the totals (as Keras' summary); printed with print_fn (None: not printed)
        and returned."""
        text = summary_table(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def _names(self, trainable: bool) -> list[str]:
        return [f"layer_{i}.{p.name}" for i, placed in enumerate(self.placements) for p in placed.parameters
                if p.trainable == trainable]

    def description(self) -> dict:
        """What rebuilds this network: sample shape, dtype, and every layer's type and config."""
        return {"input_shape": list(self.input_shape), "dtype": self.dtype.name,
                "layers": [registry.describe(spec) for spec in self.specs]}

    @property
    def gradient_buffer(self) -> FlatArrays:
        """One buffer for the gradients of every parameter, laid out like `parameter_buffer`;
        made on first use and shared by every TrainingNetwork of this network."""
        if self._gradient_buffer is None:
            self._gradient_buffer = self.parameter_buffer.like()
        return self._gradient_buffer

    @property
    def kept_buffer(self) -> FlatArrays:
        """The second parameter buffer (made on first use) that `keep_parameters` fills, or an
        optimizer step given keep=; what training falls back on when its cost stops being finite."""
        if self._kept is None:
            self._kept = self.parameter_buffer.like()
        return self._kept

    def training_network(self, batch: int) -> TrainingNetwork:
        """A TrainingNetwork for batches of `batch` rows whose x the caller fills, made on first
        use and kept, with its buffers and recorded passes, until the network is released: `fit`
        and its validation reuse it from call to call."""
        self._check_open()
        found = self._training.get(batch)
        if found is None or found._closed:
            x = cla.empty(self.ctx.queue, (batch, *self.input_shape), self.dtype)
            found = self._training[batch] = TrainingNetwork(self, x)
            found.net = weakref.proxy(self)  # no cycle: a dropped network frees its memory at once, not at a GC
        return found

    def keep_parameters(self) -> None:
        """Copy every parameter into `kept_buffer`. One kernel launch, queued."""
        memory.copy(self.ctx, self.parameter_buffer.flat, self.kept_buffer.flat)

    def restore_parameters(self) -> None:
        """Put back the parameters of the last `keep_parameters`. Queued."""
        if self._kept is None:
            raise RuntimeError("restore_parameters needs an earlier keep_parameters")
        memory.copy(self.ctx, self._kept.flat, self.parameter_buffer.flat)

    def __call__(self, x) -> cla.Array:
        """The network's output for a batch x (batch, *input_shape), host or device: a device array.
        A batch too large for the device in one pass runs in chunks of `inference_rows()` rows
        into one output array (refused with DeviceMemoryError before anything is allocated when
        the output itself does not fit: `predict` then works in batches, to the host)."""
        if not isinstance(x, cla.Array):
            x = host_batch(x, self.input_shape, self.dtype, ids=self.vocabulary)  # converted once, on the host
        elif self.vocabulary is not None:
            x = to_device_batch(self.ctx, x, self.input_shape, self.dtype, ids=self.vocabulary)
        with self.using_buffers():  # not halfway through another thread's training step
            self._check_open()
            return self._outputs(x)

    def _outputs(self, x) -> cla.Array:
        rows, chunk = x.shape[0], self.inference_rows()
        if rows <= chunk:
            return self._forward(to_device_batch(self.ctx, x, self.input_shape, self.dtype))
        nbytes = rows * math.prod(self.output_shape) * self.dtype.itemsize
        purpose, advice = f"the output of {rows:,} rows", "pass fewer rows at once (predict works in batches)"
        allocation.check(self.ctx, {"the output": nbytes}, purpose, advice)
        out = allocation.guarded(self.ctx, purpose, advice, lambda: cla.empty(
            self.ctx.queue, (rows, *self.output_shape), self.dtype))
        for first in range(0, rows, chunk):
            part = self._forward(to_device_batch(self.ctx, x[first:first + chunk], self.input_shape, self.dtype))
            memory.copy(self.ctx, part, out[first:first + part.shape[0]])
        return out

    def _forward(self, x: cla.Array) -> cla.Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def inference_rows(self) -> int:
        """Rows per forward pass: as many as keep each layer's input and output within the device's
        largest buffer and half the memory that clnet does not hold already."""
        info, item = self.ctx.info, self.dtype.itemsize
        sizes = [(math.prod(p.input_shape), math.prod(p.output_shape)) for p in self.placements]
        per_row = max((a + b) * item for a, b in sizes)
        widest = max(max(a, b) * item for a, b in sizes)
        free = max(info.global_mem_bytes - self.ctx.memory_in_use, 0)
        return max(1, min(free // 2 // per_row, info.largest_allocation // widest))

    def release(self) -> None:
        """Drop the device memory of the parameters and gradients (the context does this on close)."""
        self._release_buffers()

    def close(self) -> None:
        """Release the network's device memory now (its parameters, gradients, optimizer-facing
        buffers and training networks); using it afterwards raises ContextClosedError. A network
        that is dropped frees the same at once; `with net:` closes it at the end of the block."""
        with self.using_buffers():
            self._release_buffers()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed or self.ctx.closed:
            how = " with its context" if self.ctx.closed else ""
            raise ContextClosedError(f"this network ({self!r}) was closed{how}: its device memory is released. Load "
                                     "or make it again")

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _release_buffers(self) -> None:
        for training in self._training.values():
            training.release()
        self._training.clear()
        for layer in self.layers:
            layer.release()
        for buffer in (self.parameter_buffer, self.state_buffer, self._gradient_buffer, self._kept):
            if buffer is not None:
                buffer.release()

    def __reduce__(self):
        raise TypeError(f"a {type(self).__name__} does not pickle (its arrays live on an OpenCL device); make a "
                        "clnet.InferenceNetwork, which pickles through its saved form, or save it: "
                        "clnet.train.saving.save(net, path), then clnet.load(path, ctx)")

    def __repr__(self) -> str:
        shape = " -> ".join([" x ".join(map(str, self.input_shape))] + [spec.brief() for spec in self.specs])
        return f"InferenceNetwork({shape}, {self.dtype.name}, on {self.ctx.info.name!r})"
