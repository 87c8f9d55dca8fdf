"""The one registry of layer types: a saved or checkpointed network names each layer's type and
config, and loading finds the type here. clnet's layers register themselves; a layer type
defined elsewhere is registered by its author (`clnet.register_layer(MyLayer)`) before a
network that holds it is loaded or resumed."""

from __future__ import annotations

from .protocol import Layer

_TYPES: dict[str, type[Layer]] = {}


def register_in(types: dict, cls: type, base: type, name: str | None, what: str) -> str:
    """Put `cls`, a subclass of `base`, in `types` under `name` (default: the class name); returns
    the name. Another class under a taken name raises (a module imported again, or a redefined
    class, replaces its own entry). The layers' registry and the optimizers' share it."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"register_{what} takes a subclass of clnet.{base.__name__}, got {cls!r}")
    name = cls.__name__ if name is None else name
    known = types.get(name)
    if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"the {what} type name {name!r} is taken by {known.__module__}.{known.__qualname__}")
    types[name] = cls
    return name


def register_layer(cls: type[Layer], name: str | None = None) -> type[Layer]:
    """Register the layer type `cls` under `name` (default: the class name); returns cls, so it
    also works as a class decorator. Registering another class under a taken name raises."""
    cls.type_name = register_in(_TYPES, cls, Layer, name, "layer")
    return cls


def describe(layer: Layer) -> dict:
    """The plain description of a layer: {"type": its registered name, "config": its config}, and
    "trainable": False for a frozen one."""
    name = getattr(type(layer), "type_name", None)
    if _TYPES.get(name) is not type(layer):
        raise ValueError(f"the layer type {type(layer).__name__} is not registered: call "
                         f"clnet.register_layer({type(layer).__name__}) so that networks holding it can be saved "
                         "and loaded")
    found = {"type": name, "config": layer.config()}
    if not layer.trainable:
        found["trainable"] = False
    return found


def from_description(description: dict) -> Layer:
    """The layer a `describe` result describes; ValueError naming an unknown type."""
    try:
        name, config = description["type"], description["config"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a layer description needs 'type' and 'config', got {description!r}") from exc
    cls = _TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown layer type {name!r}: register it with clnet.register_layer before loading "
                         f"(registered: {', '.join(sorted(_TYPES))})")
    layer = cls.from_config(dict(config))
    if description.get("trainable", True) is False:
        layer.trainable = False
    return layer


def registered() -> dict[str, type[Layer]]:
    """Every registered layer type by name."""
    return dict(_TYPES)
