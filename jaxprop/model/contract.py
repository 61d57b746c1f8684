"""The model contract: a forward pass and a hand-derived backward pass over a parameter pytree.

A :class:`Model` is one small immutable object, in the way ``optax.GradientTransformation`` is
``(init, update)``:

- ``init(key, **sizes) -> params``: a plain pytree of arrays (a dict);
- ``forward(params, x, taps=None) -> (out, saved)``: the network output and a dict of the values
  the backward pass needs (the named intermediates among them);
- ``objective``: a :class:`jaxprop.nn.losses.Loss` on the output, the mean over the batch, so that
  ``model.loss(params, x, Y)`` is the scalar loss;
- ``backward(params, x, saved, Y) -> (grads, adjoints)``: the hand-derived chain rule, written
  from the saved values only; ``grads`` has the structure of ``params``, ``adjoints`` maps every
  name in ``nodes`` to ∂L/∂(that node), the same shape as the node;
- ``sample(key, params, batch) -> (x, Y)``: inputs and labels that fit ``params``;
- ``nodes``: the names of the intermediate values, in forward order: a tuple, or a function of
  ``params`` for a model whose depth is set by its parameters (``model.node_names(params)``
  answers either way).

Each signature is stated once as a typed Protocol (:class:`InitFn`, :class:`ForwardFn`,
:class:`BackwardFn`, :class:`SampleFn`, :class:`NodesFn`, :class:`CheckLabelsFn`). The contract is
passive: this module knows nothing of the checker, which dispatches on :class:`Entry`.

The taps convention (used by the node-by-node check): when ``taps`` is a dict, ``forward`` adds
``taps[name]`` to every named intermediate right where it is computed (:func:`tap`). With zero taps
the forward pass is unchanged, and ``jax.grad`` of the loss with respect to the taps is the true
adjoint of every node at once.

>>> import jax, jax.numpy as jnp
>>> from jaxprop import get_model
>>> model = get_model("tanh-softmax")
>>> params = model.init(jax.random.key(0), n_in=2, n_hidden=8, n_out=2)
>>> x, Y = model.sample(jax.random.key(1), params, batch=4)
>>> grads = model.grad(params, x, Y)
>>> sorted(grads) == sorted(params)
True
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from jaxprop.model.validate import _describe, _dtype, check_same_shape
from jaxprop.nn.losses import Loss

__all__ = [
    "BackwardFn",
    "CheckLabelsFn",
    "Entry",
    "ForwardFn",
    "InitFn",
    "Model",
    "NodesFn",
    "SampleFn",
    "SelfChecking",
    "random_point",
    "tap",
]

Params = Any


Array = jax.Array


Saved = Mapping[str, Array]


class InitFn(Protocol):
    """``init(key, **sizes) -> params``: a plain pytree of arrays (a dict)."""

    # ``*args: Any, **sizes: Any`` reads as "any parameters after the key", so each model's init
    # with its own named sizes (``n_in``, ``sizes``, ``dtype``, ...) fits the contract.
    def __call__(self, key: Array, /, *args: Any, **sizes: Any) -> Params: ...


class ForwardFn(Protocol):
    """``forward(params, x, taps=None) -> (out, saved)``: the output and a dict of the values the
    backward pass needs; each named node passes through :func:`tap` where it is computed."""

    def __call__(
        self, params: Params, x: Array, taps: Mapping[str, Array] | None = None, /
    ) -> tuple[Array, Saved]: ...


class BackwardFn(Protocol):
    """``backward(params, x, saved, Y) -> (grads, adjoints)``: the hand chain rule, from the saved
    values only; ``grads`` like ``params``, ``adjoints[name]`` = ∂L/∂(node ``name``)."""

    def __call__(
        self, params: Params, x: Array, saved: Saved, Y: Array, /
    ) -> tuple[Params, Saved]: ...


class SampleFn(Protocol):
    """``sample(key, params, batch) -> (x, Y)``: inputs and labels that fit ``params``."""

    def __call__(self, key: Array, params: Params, batch: int, /) -> tuple[Array, Array]: ...


class NodesFn(Protocol):
    """``nodes(params) -> names``: the node names of a model whose depth its parameters set."""

    def __call__(self, params: Params, /) -> tuple[str, ...]: ...


class CheckLabelsFn(Protocol):
    """``check_labels(out, Y) -> None``: raises ``ValueError`` when ``Y`` does not fit ``out``."""

    def __call__(self, out: Array, Y: Array, /) -> None: ...


@runtime_checkable
class Entry(Protocol):
    """A registry entry: a name, a source, and either the network contract (a :class:`Model`) or
    a check of its own (a :class:`jaxprop.Example`). Verification dispatches on which."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...


@runtime_checkable
class SelfChecking(Entry, Protocol):
    """A registry entry with a check of its own (an :class:`jaxprop.Example`): ``check(*, seed,
    dtype, jit, batch) -> report``."""

    def check(self, *, seed: int, dtype: Any, jit: bool, batch: int) -> Any: ...


def tap(taps: Mapping[str, Array] | None, name: str, value: Array) -> Array:
    """Returns ``value + taps[name]``, or ``value`` when there are no taps.

    Every named intermediate of a forward pass goes through this, so that the gradient of the loss
    with respect to a zero tap is the adjoint ∂L/∂value of that node.

    Raises:
      KeyError: if ``taps`` has no entry ``name`` (the name is not among the model's nodes).
      ValueError: if ``taps[name]`` (shaped like the saved node) has not the shape of ``value``.
    """
    if taps is None:
        return value
    if name not in taps:
        raise KeyError(
            f"tap {name!r}: forward taps a node that is not in the model's nodes {sorted(taps)}; "
            f"add {name!r} to Model(nodes=...) in forward order, or drop its tap"
        )
    if jnp.shape(taps[name]) != jnp.shape(value):
        # The tap is shaped like forward's saved[name]; a broadcast would hide the mismatch.
        raise ValueError(
            f"tap {name!r}: the tapped value has shape {jnp.shape(value)}, but forward saves "
            f"{name!r} with shape {jnp.shape(taps[name])}; save under {name!r} the value tapped"
        )
    return value + taps[name]


@dataclasses.dataclass(frozen=True)
class Model:
    """A network: its forward pass, its loss and its hand-derived backward pass.

    Attributes:
      name: a short name, unique in the registry.
      source: the document and equations it implements, e.g. ``"001_...txt eqs (1)-(17)"``.
      init: ``(key, **sizes) -> params`` (optional for a model only given to
        :func:`jaxprop.check_nodes`).
      forward: ``(params, x, taps=None) -> (out, saved)``.
      objective: the :class:`~jaxprop.nn.losses.Loss` applied to ``out`` (or its name in
        :data:`jaxprop.LOSSES`).
      backward: ``(params, x, saved, Y) -> (grads, adjoints)``.
      sample: ``(key, params, batch) -> (x, Y)`` (optional likewise).
      nodes: names of the intermediates that ``backward`` returns adjoints of, in forward order;
        a tuple, or ``params -> tuple`` where the depth depends on the parameters.
      check_labels: ``(out, Y) -> None``, raises ``ValueError`` when ``Y`` does not fit ``out``.
      extra_checks: further checks of the model's derivation that verification runs beside the
        gradient check, each ``(*, seed, dtype, jit, batch) -> report`` whose leaves join the
        model's report (least squares: the gradient vanishes at the normal equations).
    """

    name: str
    source: str = ""
    init: InitFn | None = None
    forward: ForwardFn | None = None
    objective: Loss | str | None = None
    backward: BackwardFn | None = None
    sample: SampleFn | None = None
    nodes: tuple[str, ...] | NodesFn = ()
    check_labels: CheckLabelsFn = dataclasses.field(
        default=None,  # type: ignore[assignment]  # replaced by check_same_shape in __post_init__
        repr=False,
        compare=False,
    )
    extra_checks: tuple[Callable[..., Any], ...] = dataclasses.field(
        default=(), repr=False, compare=False
    )

    def __post_init__(self):
        # A user's own model needs only name, forward, objective, backward and nodes (for
        # check_nodes); init and sample are needed by check() and `jaxprop verify`.
        missing = [f for f in ("forward", "objective", "backward") if getattr(self, f) is None]
        if missing:
            raise ValueError(f"Model {self.name!r}: missing {', '.join(missing)}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Model name must be a non-empty string, got {self.name!r}")
        for f in ("init", "forward", "backward", "sample"):
            value = getattr(self, f)
            if value is not None and not callable(value):
                raise ValueError(
                    f"Model {self.name!r}: {f} must be a function, got {type(value).__name__}"
                )
        if isinstance(self.objective, str):
            from jaxprop.nn.losses import LOSSES

            if self.objective not in LOSSES:
                raise ValueError(
                    f"Model {self.name!r}: unknown objective {self.objective!r}; expected a Loss "
                    f"or one of {sorted(LOSSES)}"
                )
            object.__setattr__(self, "objective", LOSSES[self.objective])
        if not isinstance(self.objective, Loss):
            raise ValueError(
                f"Model {self.name!r}: objective must be a jaxprop.Loss or a name in "
                f"jaxprop.LOSSES, got {type(self.objective).__name__}"
            )
        if isinstance(self.nodes, str):
            raise ValueError(
                f"Model {self.name!r}: nodes must be a tuple of names, got the string "
                f"{self.nodes!r}; write nodes=({self.nodes!r},)"
            )
        if not callable(self.nodes):
            object.__setattr__(self, "nodes", self._valid_nodes(self.nodes))
        if self.check_labels is None:
            object.__setattr__(self, "check_labels", check_same_shape)

    def node_names(self, params: Params) -> tuple[str, ...]:
        """The names of the nodes of the network with these parameters, in forward order."""
        return self._valid_nodes(self.nodes(params)) if callable(self.nodes) else self.nodes

    def _valid_nodes(self, nodes) -> tuple[str, ...]:
        """``nodes`` as a tuple, checked to be distinct strings (the keys of taps and adjoints)."""
        nodes = tuple(nodes)
        not_str = [n for n in nodes if not isinstance(n, str)]
        if not_str:
            raise ValueError(f"Model {self.name!r}: node names must be strings, got {not_str}")
        repeated = sorted({n for n in nodes if nodes.count(n) > 1})
        if repeated:
            raise ValueError(f"Model {self.name!r}: nodes {repeated} are named more than once")
        return nodes

    def loss(self, params: Params, x: Array, Y: Array, taps=None) -> Array:
        """The scalar loss L(params; x, Y), the mean over the batch."""
        out, _ = self.run_forward(params, x, taps)
        return self.loss_of_output(out, x, Y)

    def loss_of_output(self, out: Array, x: Array, Y: Array) -> Array:
        """The objective of a network output ``out`` (of inputs ``x``) against the labels."""
        self._check_output(out, x, Y)
        assert isinstance(self.objective, Loss)  # a name is resolved in __post_init__
        return self.objective.fn(out, Y)

    def _check_output(self, out: Array, x: Array, Y: Array) -> None:
        """The labels fit the output (``check_labels``), after the one dtype mismatch whose
        cause is the forward pass, not the labels: a float output of another dtype than float
        inputs and labels that agree, i.e. a forward pass that hard-codes its dtype (casting Y
        would only move the mismatch)."""
        if (
            jnp.issubdtype(_dtype(x), jnp.floating)
            and jnp.issubdtype(_dtype(out), jnp.floating)
            and _dtype(out) != _dtype(x)
            and _dtype(Y) == _dtype(x)
        ):
            got = _dtype(out).name
            raise ValueError(
                f"Model {self.name!r}: forward returns {got} for inputs of dtype "
                f"{_dtype(x).name}: it computes in {got} whatever its inputs (a hard-coded "
                f"dtype). Check it in {got}: dtype={got!r} (jaxprop.check_grads, check_nodes, "
                f"verify_model; jaxprop verify --dtype {got}), or let forward follow its inputs "
                "(x.dtype, the parameters' dtype)"
            )
        self.check_labels(out, Y)

    def run_forward(self, params: Params, x: Array, taps=None) -> tuple[Array, Saved]:
        """``forward(params, x, taps)``, checked to return ``(out, saved)`` with ``saved`` a dict.

        A forward pass without a ``taps`` parameter runs as ``forward(params, x)`` when there are
        no taps; the node check, which needs them, then gets an error naming the convention.

        Raises:
          TypeError: naming what ``forward`` returned instead, or that ``forward`` takes no
            ``taps`` where the node check needs them.
        """
        assert self.forward is not None  # __post_init__ rejects a model without forward
        if not _takes_taps(self.forward):
            if taps is not None:
                raise TypeError(
                    f"Model {self.name!r}: forward takes no taps argument, which the node check "
                    "needs: leave out Model(nodes=...) to check it as a plain pair (the nodes "
                    "found in the traced program), or write it as forward(params, x, taps=None) "
                    "and pass each node through jaxprop.tap(taps, name, value) (docs/nodes.md)"
                )
            result = self.forward(params, x)
        else:
            result = self.forward(params, x, taps)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping)):
            raise TypeError(
                f"Model {self.name!r}: forward must return (out, saved) with saved a dict of the "
                f"values the backward pass needs, got {_describe(result)}"
            )
        return result

    def backward_from(self, params: Params, x: Array, Y: Array) -> tuple[Params, Saved]:
        """Runs the forward pass, then the hand backward: ``(grads, adjoints)``.

        Raises:
          TypeError: if ``backward`` does not return ``(grads, adjoints)`` with ``adjoints`` a
            dict.
        """
        out, saved = self.run_forward(params, x)
        self._check_output(out, x, Y)
        assert self.backward is not None  # __post_init__ rejects a model without backward
        result = self.backward(params, x, saved, Y)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping)):
            raise TypeError(
                f"Model {self.name!r}: backward must return (grads, adjoints) with adjoints a dict "
                f"of the nodes' hand adjoints ({{}} when none), got {_describe(result)}"
            )
        return result

    def grad(self, params: Params, x: Array, Y: Array) -> Params:
        """The hand-derived gradient ∂L/∂params, the structure of ``params``."""
        return self.backward_from(params, x, Y)[0]

    def value_and_grad(self, params: Params, x: Array, Y: Array) -> tuple[Array, Params]:
        """The loss and the hand-derived gradient from one forward pass."""
        out, saved = self.run_forward(params, x)
        self._check_output(out, x, Y)
        assert self.backward is not None and isinstance(self.objective, Loss)  # __post_init__
        grads, _ = self.backward(params, x, saved, Y)
        return self.objective.fn(out, Y), grads


def random_point(model: Model, key: Array, batch: int = 16, **sizes: Any) -> tuple:
    """Random parameters (the model's init, every leaf then perturbed, so that zero biases do not
    hide a wrong term) and data that fits them: ``(params, x, Y)``.

    Raises:
      ValueError: if the model has no ``init`` or no ``sample``.
    """
    if model.init is None or model.sample is None:
        raise ValueError(
            f"{model.name}: a random point needs the model's init and sample; pass params, x and "
            "Y yourself (check_grads, check_nodes) or give the Model init= and sample="
        )
    k_init, k_noise, k_data = jax.random.split(key, 3)
    params = model.init(k_init, **sizes)
    leaves, treedef = jax.tree.flatten(params)
    noise = jax.random.split(k_noise, len(leaves))
    params = jax.tree.unflatten(
        treedef,
        [
            p + 0.1 * jax.random.normal(k, p.shape, p.dtype)
            for p, k in zip(leaves, noise, strict=False)
        ],
    )
    x, Y = model.sample(k_data, params, batch)
    return params, x, Y


def _takes_taps(forward: Callable) -> bool:
    """Whether ``forward`` can be called as ``forward(params, x, taps)`` (a callable whose
    signature cannot be read is assumed to); memoised where ``forward`` is hashable."""
    try:
        return _takes_taps_memo(forward)
    except TypeError:  # unhashable
        return _binds_three(forward)


@functools.lru_cache(maxsize=256)
def _takes_taps_memo(forward: Callable) -> bool:
    return _binds_three(forward)


def _binds_three(forward: Callable) -> bool:
    try:
        inspect.signature(forward).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin)
        return True
    return True
