"""The registry: every built-in entry that ``jaxprop verify`` checks, by name.

A registry entry (:class:`jaxprop.model.Entry`) has a ``name`` and a ``source``, and is either a
:class:`~jaxprop.Model` (the network contract, which :func:`jaxprop.verify_entry` checks at a random
point) or has a check of its own, ``check(*, seed, dtype, jit, batch) -> GradReport``
(:class:`jaxprop.model.SelfChecking`): an :class:`~jaxprop.Example`, a worked example that is not a
network (a Jacobian, a scalar function) but is verified the same way (:mod:`.worked`).

The models come from :mod:`jaxprop.models`, the worked examples' checks from :mod:`.worked`.
May import: ``models``, ``check``, ``model``, ``nn``, ``util``.

>>> from jaxprop import model_names
>>> "tanh-softmax" in model_names()
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from jaxprop.model.contract import Model
from jaxprop.model.example import Example
from jaxprop.models import seed000, seed001, seed002, seed002_calculus, seed002_lecture, seed003
from jaxprop.registry import worked
from jaxprop.util.names import did_you_mean

__all__ = ["FACTORIES", "REGISTRY", "get_model", "model_names", "register"]

REGISTRY: dict[str, Model | Example] = {}  # or any entry with name, source and check()

_Entry = TypeVar("_Entry", Model, Example)


def register(model: _Entry) -> _Entry:
    """Adds a model to the registry that ``jaxprop verify`` checks; returns it.

    Raises:
      ValueError: if another model is registered under the same name.
    """
    if model.name in REGISTRY and REGISTRY[model.name] is not model:
        raise ValueError(f"a model named {model.name!r} is already registered")
    REGISTRY[model.name] = model
    return model


# Entries whose configuration is a choice (the activations of seed 002's K layers): the factory
# that builds the entry for another choice, by the entry's name.
FACTORIES: dict[str, Callable[..., Model]] = {"k-layer": seed002.k_layer}


def get_model(name: str, **config: Any) -> Model | Example:
    """The registered model called ``name``; with ``config``, the same system built for another
    configuration by its factory.

    >>> get_model("k-layer", activations=("relu", "identity")).name
    'k-layer[relu,identity]'

    Args:
      name: a name in :func:`model_names`.
      **config: the factory's options (``activations=`` for ``"k-layer"``).

    Raises:
      ValueError: for an unknown name (the message lists the registered ones), or ``config``
        for an entry that has no factory or options the factory does not take.
    """
    if not isinstance(name, str):
        raise ValueError(
            f"get_model takes a model's name (a string), got {type(name).__name__} {name!r}"
        )
    try:
        entry = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}{did_you_mean(name, REGISTRY)}; expected one of {model_names()}"
        ) from None
    if not config:
        return entry
    if name not in FACTORIES:
        raise ValueError(
            f"model {name!r} has one configuration; options {sorted(config)} are for "
            f"{sorted(FACTORIES)}"
        )
    factory = FACTORIES[name]
    options = sorted(inspect.signature(factory).parameters)
    unknown = sorted(set(config) - set(options))
    if unknown:
        raise ValueError(f"model {name!r} takes the options {options}, got {unknown}")
    return factory(**config)


def model_names() -> list[str]:
    """The names of the registered models, in registration order."""
    return list(REGISTRY)


# Each model module exposes ``models()``, the models it registers, built from nothing but the
# module itself: the mutation test of tests/test_nodes.py rebuilds them from a mutated copy of the
# module's source (docs/nodes.md). The worked examples' entries (checks of seed 002's results that
# are not networks) stand beside the models of their document, in the document's order.
_ENTRIES = (
    *seed000.models(),
    *seed001.models(),
    *seed002.models(),
    worked.scalar_f_entry(),
    worked.least_squares_entry(),
    worked.df_dA_entry(),
    worked.dA_dx_entry(),
    *seed002_lecture.models(),
    worked.total_cost_entry(),
    *seed003.models(),
)
assert {e.name for e in seed002_calculus.models()} <= {e.name for e in _ENTRIES}
for _entry in _ENTRIES:
    register(_entry)
