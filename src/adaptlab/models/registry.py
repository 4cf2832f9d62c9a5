"""A name -> model-factory registry: ``models.create("vgg", widths=(8, 16))``.

Every model of the library is registered here with the input shape of one example and the shape of its
output for a batch, so one contract test (``tests/test_models_registry.py``) builds every entry, runs a small
batch through it and checks a finite gradient for every parameter: a model is tested the moment it is
registered.

Example::

    >>> import torch
    >>> from adaptlab import models
    >>> net = models.create("mlp", sizes=(1, 8, 1))
    >>> net(torch.zeros(3, 1)).shape
    torch.Size([3, 1])
    >>> "conv4" in models.names()
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from adaptlab.errors import ConfigError

# Output shape for a batch of b examples: a tuple for a tensor output, or a dict / tuple of such shapes for
# a model returning several tensors (e.g. a multi-task net's ({task: (b, classes)}, (b, features))).
OutputShape = Callable[[int], Any]

# The modules whose import registers the built-in models (imported on first use of the registry).
_BUILTIN = ("adaptlab.models.mlp", "adaptlab.models.conv4", "adaptlab.models.cnn", "adaptlab.models.mtl_lenet",
            "adaptlab.models.vit", "adaptlab.models.captioner",
            "adaptlab.models.resnet")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``factory(**kwargs) -> nn.Module`` and the shapes the contract test checks.

    Attributes:
        name: registry key.
        factory: a class or function building the model; its defaults give the tested configuration.
        input_shape: shape of ONE example accepted by the default configuration (the batch dim excluded).
        output_shape: ``b -> shape`` of the default configuration's output for a batch of b examples.
    """

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    output_shape: OutputShape


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register(name: str, factory: Callable[..., nn.Module] | None = None, *, input_shape: tuple[int, ...],
             output_shape: OutputShape):
    """Register ``factory`` under ``name``; usable as a decorator (``@register("mlp", ...)``) or a call.

    Args:
        name: registry key; registering a taken name is an error.
        factory: class or function returning an ``nn.Module``; omit it to use ``register`` as a decorator.
        input_shape: one example's input shape for the factory's default arguments.
        output_shape: ``b -> output shape`` for a batch of b (see :class:`ModelSpec`).

    Returns:
        ``factory`` unchanged (or the decorator that registers and returns it).
    """
    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].factory is not f:
            raise ValueError(f"model name {name!r} is already registered (by {_REGISTRY[name].factory!r})")
        _REGISTRY[name] = ModelSpec(name, f, tuple(input_shape), output_shape)
        return f

    return add if factory is None else add(factory)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        for mod in _BUILTIN:
            importlib.import_module(mod)
        _loaded = True


def names() -> list[str]:
    """Sorted names of all registered models."""
    _load_builtin()
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``; an unknown name raises ConfigError naming them all."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, **kwargs) -> nn.Module:
    """A fresh model: ``factory(**kwargs)`` of the entry registered as ``name``.

    The factory runs exactly as a direct call would (same layers, same initialisation order), so
    ``create("vgg", widths=w)`` under a seed equals ``VGGNet(widths=w)`` under that seed.
    """
    return spec(name).factory(**kwargs)
