"""What the mistake is: a diagnosis of a wrong hand adjoint (or gradient leaf).

:func:`jaxprop.check_nodes` names the first node of a hand backward pass whose adjoint departs;
:func:`diagnose` then says how it departs, by comparing the hand adjoint h with the true one t, with
the true adjoints of the nodes it feeds, and with the forward values saved around it:

- ``sign``: h ≈ −t;
- ``scale``: h ≈ c·t for one scalar c (named when c is the batch size B or 1/B, or 2 or 1/2);
- ``transpose``: h ≈ tᵀ, or the same values in another layout;
- ``zero``: h = 0 where t is not;
- ``missing-local-derivative``: h equals the true adjoint of the node this one feeds (the step's
  local derivative was not applied);
- ``elementwise-factor``: h/t varies per element across an elementwise step; the diagnosis says
  whether it matches a known wrong factor built from the saved values;
- ``unclassified``: none of these, with the statistics that were tried.

>>> import numpy as np
>>> from jaxprop.check.diagnosis import diagnose
>>> t = np.array([[0.5, -1.0], [2.0, 0.25]])
>>> d = diagnose("z2", 3 * t, t, dtype="float64", batch=3)
>>> d.kind, d.figures["c"]
('scale', 3.0)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import json_float, mismatch
from jaxprop.check.tolerance import precision, tolerances
from jaxprop.nn.activations import ACTIVATIONS, Activation

__all__ = ["KINDS", "Diagnosis", "diagnose"]

#: The kinds of mistake a diagnosis names, in the order they are tried.
KINDS = (
    "zero",
    "transpose",
    "sign",
    "scale",
    "missing-local-derivative",
    "elementwise-factor",
    "unclassified",
)


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """What is wrong with one hand adjoint (or gradient leaf).

    Attributes:
      node: the node's name (or the leaf's path).
      kind: one of :data:`KINDS`.
      message: one line in the document's terms, e.g. ``"∂L/∂z2 is B = 3 times the true adjoint:
        the 1/B of the batch mean is missing"``.
      figures: the numbers behind it (JSON-ready): the scalar ``c``, the residuals of the
        candidates tried, the range of h/t, the wrong factor matched, ...
    """

    node: str
    kind: str
    message: str
    figures: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: ``node``, ``kind``, ``message`` and ``figures``."""
        return {
            "node": self.node,
            "kind": self.kind,
            "message": self.message,
            "figures": dict(self.figures),
        }

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def diagnose(
    name: str,
    hand: Any,
    true: Any,
    *,
    dtype: Any = "float64",
    rtol: float | None = None,
    batch: int | None = None,
    downstream: Sequence[tuple[str, Any]] = (),
    saved: Mapping[str, Any] | None = None,
    problem: str | None = None,
    noun: str = "adjoint",
) -> Diagnosis:
    """How a hand adjoint ``hand`` of node ``name`` departs from the true one, ``true``.

    The kinds of :data:`KINDS` are tried in order; the first that explains ``hand`` to the
    tolerance of the check (``rtol``, by default the dtype's against ``jax.grad``) is the
    diagnosis. A kind explains ``hand`` when a candidate built from the true values (−t, c·t,
    tᵀ, the adjoint of the node ``name`` feeds, …) is within ``rtol`` of it, relative to the
    larger of the two (:func:`jaxprop.check.mismatch`).

    Args:
      name: the node's name (or a gradient leaf's path), as the message calls it.
      hand: the hand adjoint h (``None`` when it is missing).
      true: the true adjoint t, an array.
      dtype: the dtype the check ran in (it sets the default ``rtol``).
      rtol: the tolerance a candidate must meet.
      batch: the batch size B, to name a scale of B or 1/B (the batch mean missing or applied
        twice); ``None`` where there is no batch.
      downstream: ``(name, true adjoint)`` of the nodes this one feeds, nearest first (the
        nodes after it in forward order): the candidates of ``missing-local-derivative`` and
        the adjoint an ``elementwise-factor`` step multiplies.
      saved: the forward values by name (this node's and the downstream nodes'), to identify an
        elementwise activation between this node and the next (``a = f(z)`` for an
        :class:`~jaxprop.Activation` of ``jaxprop.ACTIVATIONS``) and to build its known wrong
        derivatives.
      problem: the structural problem the check found (a missing adjoint, a wrong shape), if
        any.
      noun: what the hand value is called in the message (``"adjoint"``, ``"gradient"``).

    Returns:
      The :class:`Diagnosis`.

    >>> import numpy as np
    >>> z = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    >>> a, g = np.tanh(z), np.ones((2, 3))            # a = tanh(z), ∂L/∂a = g
    >>> t = g * (1 - a**2)                             # the true ∂L/∂z
    >>> d = diagnose("z", g, t, downstream=[("a", g)], saved={"z": z, "a": a})
    >>> d.kind
    'missing-local-derivative'
    >>> d.figures["equals_adjoint_of"], d.figures["activation"]
    ('a', 'tanh')
    >>> diagnose("z", g * a, t, downstream=[("a", g)], saved={"z": z, "a": a}).figures["factor"]
    'the value tanh(z) instead of its derivative tanh′(z)'
    """
    dtype, rtol, _ = tolerances(dtype, rtol)
    with precision(dtype):  # the activations are re-evaluated in the check's precision
        return _diagnose(name, hand, true, rtol, batch, downstream, saved or {}, problem, noun)


def _diagnose(name, hand, true, rtol, batch, downstream, saved, problem, noun) -> Diagnosis:
    what = f"∂L/∂{name}"
    t = np.asarray(true, np.float64)
    if hand is None:
        return Diagnosis(name, "unclassified", f"{what} is missing from the hand {noun}s",
                         {"problem": problem or "missing"})  # fmt: skip
    h = np.asarray(hand, np.float64)
    if h.shape != t.shape:
        return _layout(name, what, h, t, rtol, problem, noun)
    if not np.all(np.isfinite(h)):
        bad = int(np.sum(~np.isfinite(h)))
        return Diagnosis(name, "unclassified",
                         f"{what} is not finite at {bad} of {h.size} elements (NaN or inf)",
                         {"not_finite": bad})  # fmt: skip
    peak_t = float(np.max(np.abs(t), initial=0.0))
    if float(np.max(np.abs(h), initial=0.0)) <= rtol * peak_t:
        return Diagnosis(name, "zero",
                         f"{what} is zero where the true {noun} is not (max |true| = "
                         f"{peak_t:.3g}): nothing was propagated to it",
                         {"max_abs_true": json_float(peak_t)})  # fmt: skip
    tried: dict[str, Any] = {}
    if h.ndim == 2 and h.shape[0] == h.shape[1] > 1:
        tried["transpose_mismatch"] = json_float(r := mismatch(h, t.T))
        if r <= rtol:
            return Diagnosis(name, "transpose",
                             f"{what} is the transpose of the true {noun}: a product taken in "
                             "the wrong order, or the other layout (rows for columns)",
                             {"mismatch": json_float(r)})  # fmt: skip
    elif h.ndim == 2 and min(h.shape) > 1:
        # The right values, computed transposed and then reshaped (not transposed) back.
        for layout in (t.T.reshape(t.shape), t.reshape(t.shape[::-1]).T):
            if (r := mismatch(h, layout)) <= rtol:
                return Diagnosis(name, "transpose",
                                 f"{what} holds the true {noun}'s values in the other layout: "
                                 f"computed as its transpose {t.shape[::-1]} and reshaped to "
                                 f"{t.shape} instead of transposed",
                                 {"mismatch": json_float(r)})  # fmt: skip
    if (r := mismatch(h, t)) <= rtol:
        # The values are right: what fails is the structure (a dtype).
        return Diagnosis(name, "unclassified",
                         f"{what} has the right values, but {problem or 'fails the check'}",
                         {"mismatch": json_float(r), "problem": problem})  # fmt: skip
    c = float(np.vdot(h, t) / np.vdot(t, t)) if peak_t > 0 else 0.0
    r = mismatch(h, c * t)
    tried.update(c=json_float(c), scale_mismatch=json_float(r))
    if r <= rtol:
        return _scale(name, what, c, r, rtol, batch, noun)
    step = _step(name, t, downstream, saved, rtol)
    for u, g in downstream:
        g = np.asarray(g, np.float64)
        if g.shape != h.shape:
            continue
        tried[f"mismatch_to_adjoint_of_{u}"] = json_float(r := mismatch(h, g))
        if r <= rtol:
            local = f"∂{u}/∂{name}"
            if step is not None and step[0] == u:
                f = step[1].name
                local = f"of {u} = {f}({name}), {f}′({name}),"
            return Diagnosis(name, "missing-local-derivative",
                             f"{what} equals the true adjoint of {u}, the node it feeds: the "
                             f"local derivative {local} was not applied",
                             {"equals_adjoint_of": u, "mismatch": json_float(r),
                              "activation": step[1].name if step else None})  # fmt: skip
    if step is not None:
        return _elementwise(name, what, h, t, step, rtol, tried)
    return Diagnosis(name, "unclassified", _unclassified_message(what, h, t, tried), tried)


def _ratio_range(h: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """The range of h/t over the elements where |t| is not negligible (above 1e-3 max |t|)."""
    keep = np.abs(t) > 1e-3 * np.max(np.abs(t), initial=0.0)
    if not np.any(keep):
        return math.nan, math.nan
    ratio = h[keep] / t[keep]
    return float(np.min(ratio)), float(np.max(ratio))


def _unclassified_message(what: str, h: np.ndarray, t: np.ndarray, tried: dict) -> str:
    lo, hi = _ratio_range(h, t)
    tried.update(ratio_min=json_float(lo), ratio_max=json_float(hi))
    return (
        f"{what} is wrong in none of the known ways: the best scalar fit h ≈ c·t (c = "
        f"{tried['c']:.3g}) is off by {tried['scale_mismatch']:.2g}; h/t ranges from {lo:.3g} "
        f"to {hi:.3g}"
    )


def _scale(name: str, what: str, c: float, r: float, rtol: float, batch: int | None, noun: str):
    """A scalar multiple: the sign, or a named (or plain) scale."""
    figures: dict[str, Any] = {"c": json_float(c), "mismatch": json_float(r)}
    if abs(c + 1.0) <= max(rtol, 1e-9) * 10:
        return Diagnosis(name, "sign",
                         f"{what} has the opposite sign of the true {noun} (h = −t): a "
                         "difference taken the wrong way round (y − ŷ for ŷ − y), or a minus "
                         "dropped", figures)  # fmt: skip
    sign = "" if c > 0 else ", with the opposite sign"
    named = None
    candidates: list[tuple[float, str, str]] = []
    if batch is not None and batch > 1:
        candidates += [
            (float(batch), f"B = {batch}", "the 1/B of the batch mean is missing"),
            (1.0 / batch, f"1/B = 1/{batch}", "the 1/B of the batch mean is applied twice"),
        ]
    candidates += [
        (2.0, "2", "a factor 2 that the ½ of a squared error ½(y − Y)² cancels"),
        (0.5, "1/2", "a ½ too many (the derivative of ½ e² is e, not ½ e)"),
    ]
    for value, label, why in candidates:
        if abs(abs(c) - value) <= 1e-3 * value:
            named = (label, why)
            break
    if named is None:
        return Diagnosis(name, "scale",
                         f"{what} is c = {c:.6g} times the true {noun}: one scalar factor off"
                         f"{sign}", figures)  # fmt: skip
    figures["named"] = named[0]
    times = "times" if abs(c) > 1 else "of"
    return Diagnosis(name, "scale",
                     f"{what} is {named[0]} {times} the true {noun}{sign}: {named[1]}",
                     figures)  # fmt: skip


def _layout(name: str, what: str, h: np.ndarray, t: np.ndarray, rtol: float, problem, noun):
    """A hand adjoint of another shape: the true one transposed, or its values in another
    layout (the same elements, read in the other order)."""
    figures: dict[str, Any] = {"hand_shape": list(h.shape), "true_shape": list(t.shape)}
    if h.size == t.size and h.size > 0:
        for axes in itertools.permutations(range(h.ndim)):
            if h.transpose(axes).shape == t.shape:
                if (r := mismatch(h.transpose(axes), t)) <= rtol:
                    return Diagnosis(name, "transpose",
                                     f"{what} has shape {h.shape}, the true {noun}'s transpose "
                                     f"{t.shape}: a product taken in the wrong order, or the "
                                     "other layout (rows for columns)",
                                     {**figures, "mismatch": json_float(r)})  # fmt: skip
        if (r := mismatch(h.reshape(t.shape[::-1]).T, t)) <= rtol:
            return Diagnosis(name, "transpose",
                             f"{what} holds the true {noun}'s values in the other layout "
                             f"(column-major where row-major is expected), shaped {h.shape}",
                             {**figures, "mismatch": json_float(r)})  # fmt: skip
    return Diagnosis(
        name, "unclassified", problem or f"{what} has shape {h.shape}, expected {t.shape}", figures
    )


def _step(name: str, t: np.ndarray, downstream, saved: Mapping[str, Any], rtol: float):
    """The elementwise activation from this node to the next, ``(next name, activation, its
    true adjoint, this node's value, the next's)``, where the saved values show
    ``next = f(this)`` and the true adjoints ``t = g ⊙ f′(this)``; ``None`` otherwise."""
    if not downstream or name not in saved:
        return None
    u, g = downstream[0]
    if u not in saved:
        return None
    z, a = jnp.asarray(saved[name]), jnp.asarray(saved[u])
    g = np.asarray(g, np.float64)
    if not z.shape == a.shape == g.shape == t.shape:
        return None
    for act in ACTIVATIONS.values():
        if act.deriv is None:
            continue
        with np.errstate(all="ignore"):
            if mismatch(np.asarray(act.fn(z)), a) <= rtol and (
                mismatch(g * np.asarray(act.deriv(z)), t) <= rtol
            ):
                return u, act, g, z, a
    return None


def _mistakes(act: Activation, z: jax.Array, a: jax.Array):
    """The wrong factors an elementwise step is tried against: the activation's value, its
    derivative at the output, and the activation's own known mistakes."""
    f = act.name
    assert act.deriv is not None
    yield f"the value {f}({{z}}) instead of its derivative {f}′({{z}})", np.asarray(act.fn(z))
    yield f"{f}′ taken at the output {{a}} instead of the input {{z}}", np.asarray(act.deriv(a))
    for m in act.mistakes:
        yield m.says, np.asarray(m.factor(z, a))


def _elementwise(name: str, what: str, h, t, step, rtol: float, tried: dict) -> Diagnosis:
    """Across ``u = f(name)`` elementwise, ``h = g ⊙ φ`` for some factor φ in place of f′:
    which of the known wrong factors it is, if any."""
    u, act, g, z, a = step
    f = act.name
    names = {"z": name, "a": u}
    factors = []
    for says, phi in _mistakes(act, z, a):
        with np.errstate(all="ignore"):
            r = mismatch(h, g * phi)
        factors.append((says.format(**names), r))
        if r <= rtol:
            return Diagnosis(name, "elementwise-factor",
                             f"{what} applies the wrong factor across {u} = {f}({name}): "
                             f"{says.format(**names)}",
                             {"factor": says.format(**names), "mismatch": json_float(r),
                              "activation": f, "feeds": u})  # fmt: skip
    lo, hi = _ratio_range(h, t)
    explained = _factor_of(h, g, np.asarray(z, np.float64))
    tried.update(ratio_min=json_float(lo), ratio_max=json_float(hi), activation=f, feeds=u,
                 factors_tried={k: json_float(v) for k, v in factors},
                 factor_explained_by_input=json_float(explained))  # fmt: skip
    if explained < FACTOR_EXPLAINED:
        # h is not g times some function of the input: the mistake is not in this step's
        # local derivative (a wrong matrix, the factors in the wrong order).
        return Diagnosis(name, "unclassified", _unclassified_message(what, h, t, tried), tried)
    return Diagnosis(name, "elementwise-factor",
                     f"{what} applies a wrong factor across {u} = {f}({name}): h is ∂L/∂{u} "
                     f"times a function of {name} elementwise, but not {f}′({name}) (h/t from "
                     f"{lo:.3g} to {hi:.3g}), and none of the known wrong factors",
                     tried)  # fmt: skip


#: The share of the variance of h/g that a smooth function of the input must explain for a
#: wrong factor (none of the known ones) to be called elementwise (``elementwise-factor``).
FACTOR_EXPLAINED = 0.999


def _factor_of(h: np.ndarray, g: np.ndarray, z: np.ndarray) -> float:
    """How much of the variance of φ = h/g (over the elements where g is not negligible) a
    polynomial of degree up to 8 in z explains: near 1 when h = g ⊙ φ(z) for a smooth φ, as
    every wrong derivative of an activation is; ``nan`` with too few elements to tell."""
    keep = np.abs(g) > 1e-3 * np.max(np.abs(g), initial=0.0)
    phi, zz = (h[keep] / g[keep]).ravel(), z[keep].ravel()
    if phi.size < 12 or np.ptp(zz) == 0:
        return math.nan
    total = float(np.sum((phi - phi.mean()) ** 2))
    if total == 0:
        return 1.0
    zz = (zz - zz.mean()) / np.ptp(zz)
    fit = np.polynomial.Polynomial.fit(zz, phi, deg=min(8, phi.size // 3))
    return 1.0 - float(np.sum((phi - fit(zz)) ** 2)) / total
