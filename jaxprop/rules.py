"""Checking any derivative rule JAX would use: ``jax.custom_vjp``, ``jax.custom_jvp``, plain code.

:func:`check_rule` takes a function ``f(*args)`` whose derivative JAX would use (decorated with
``custom_vjp`` or ``custom_jvp``, containing such functions, or plain) and runs it through every
check a hand-written rule can fail, each against a reference that does not use the rule (finite
differences of the primal, :mod:`jaxprop.fd`) or against itself under a transformation:

- **primal**: what ``jax.vjp`` / ``jax.jvp`` return as the primal equals ``f(*args)``;
- **reverse**: an independent random cotangent c_o for every output leaf; every argument leaf's
  cotangent against the finite differences of the projected output Σ_o ⟨c_o, f_o⟩ (sampled for a
  large leaf, always including its largest element), and the dot-product identity
  ⟨Jᵀc, t⟩ = d/dε ⟨c, f(x + ε t)⟩ for a random tangent t;
- **forward** (where the rule has one): random tangents, never all-ones, against finite
  differences; linearity in the tangent; jvp and vjp consistent, ⟨c, J t⟩ = ⟨Jᵀc, t⟩;
- **types**: each cotangent has its argument's shape and dtype (JAX accepts a float32 cotangent
  for a float64 argument without a word); integer and boolean arguments get none (float0);
- **transformations**: the rule under ``jax.jit`` equals the rule eagerly; under ``jax.vmap`` over
  a leading batch axis equals the per-example results; ``jax.grad`` of ``jax.vmap`` equals
  ``jax.vmap`` of ``jax.grad`` where the output is one scalar per example;
- **probes**: at the floating arguments scaled by ``probes`` (large and near zero), wherever the
  primal is finite a non-finite cotangent is a failure named by its probe.

An exception raised inside the user's code (f, fwd, bwd, jvp; eagerly, under jit or under vmap)
is the failed check's problem, its first line, never a traceback; only misuse of check_rule's own
arguments raises.

>>> import jax, jax.numpy as jnp
>>> @jax.custom_vjp
... def square(x):
...     return x**2
>>> square.defvjp(lambda x: (x**2, x), lambda x, g: (g * x,))   # drops the factor 2
>>> report = check_rule(square, jnp.array([1.0, 2.0, 3.0]))
>>> report.ok, report.failing[:2]
(False, ('reverse args[0]', 'dot-product'))
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop import fd
from jaxprop.core import (
    FD_ERROR_MULTIPLE,
    Comparison,
    Record,
    Report,
    cast,
    compare,
    compare_fd,
    format_rows,
    is_float,
    leaf_path,
    memoised,
    peak_of,
    precision,
    reference_scale,
    tolerances,
)

__all__ = ["RuleRecord", "RuleReport", "check_rule"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class RuleRecord(Record):
    """One check of a rule at one argument (or output) leaf.

    Attributes:
      name: ``"<check> <leaf>"``, e.g. ``"reverse args[0]/w"``: what :attr:`RuleReport.failing`
        lists.
      check: the check (``primal``, ``reverse``, ``dot-product``, ``forward``, ``linearity``,
        ``consistency``, ``types``, ``jit``, ``vmap``, ``grad-of-vmap``, ``probe x1000``, …).
      leaf: the argument or output leaf, or ``""`` for a check of the whole rule.
      shape: the leaf's shape.
      comparison: the numbers, where the check compares values.
      problem: what went wrong otherwise (an exception's first line, a wrong dtype), or ``None``.
    """

    name: str
    check: str
    leaf: str
    shape: tuple[int, ...]
    comparison: Comparison | None = None
    problem: str | None = None

    @property
    def unverified(self) -> bool:
        """Finite differences could judge none of the elements: with no other reference for a
        rule, nothing was verified (a failure, not a pass)."""
        c = self.comparison
        return c is not None and c.n_compared > 0 and len(c.inconclusive) == c.n_compared

    @property
    def ok(self) -> bool:
        if self.problem is not None or self.unverified:
            return False
        return self.comparison is None or self.comparison.ok


@dataclasses.dataclass(frozen=True)
class RuleReport(Report):
    """The result of :func:`check_rule`: truthy when every check passes.

    Attributes:
      checks: one :class:`RuleRecord` per check and leaf.
      dtype: the dtype the rule ran in.
      reference_dtype: the dtype of the finite-difference reference.
      name: the function's name.
      notes: what was not checked and why (a custom_vjp has no forward mode, say).
    """

    _entries: ClassVar[str] = "checks"
    _key: ClassVar[str] = "name"
    _what: ClassVar[str] = "the rule"

    checks: tuple[RuleRecord, ...]
    dtype: str
    reference_dtype: str
    name: str | None = None
    notes: tuple[str, ...] = ()

    def _header(self) -> dict:
        return {
            "name": self.name,
            "ok": self.ok,
            "dtype": self.dtype,
            "reference_dtype": self.reference_dtype,
        }

    def _trailer(self) -> dict:
        return {"notes": list(self.notes)}

    def __str__(self) -> str:
        rows = [("check", "leaf", "shape", "rel err", "worst at", "")]
        for r in self.checks:
            c = r.comparison
            status = "ok" if r.ok else "FAIL" + (f": {r.problem}" if r.problem else "")
            if r.unverified:
                status = "FAIL: unverified, finite differences inconclusive at every element"
            elif c is not None and c.reference.startswith("finite") and c.inconclusive:
                status += f" (FD inconclusive at {len(c.inconclusive)})"
            compared = c is not None and not r.unverified
            rows.append(
                (
                    r.check,
                    r.leaf or "-",
                    "x".join(map(str, r.shape)) or "scalar",
                    f"{c.max_rel:.2e}" if compared and c else "-",
                    str(list(c.worst_index)) if compared and c else "-",
                    status,
                )
            )
        title = f"{self.name or 'rule check'}  [{self.dtype}, reference {self.reference_dtype}]"
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        return f"{title}\n{format_rows(rows)}{notes}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _arg_paths(args: tuple) -> list[str]:
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(args)[0]:
        head, rest = path[0], path[1:]
        index = getattr(head, "idx", head)
        out.append(f"args[{index}]" + (f"/{leaf_path(rest)}" if rest else ""))
    return out


def _out_paths(out: PyTree) -> list[str]:
    return [
        "out" + (f"/{leaf_path(p)}" if p else "")
        for p, _ in jax.tree_util.tree_flatten_with_path(out)[0]
    ]


def _random_like(seed: int, name: str, x: Any) -> jax.Array:
    """A standard normal array shaped like ``x``, from a generator seeded with ``seed`` and the
    leaf's name: adding a leaf changes no other leaf's random vectors."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return jnp.asarray(rng.standard_normal(np.shape(x)), jnp.result_type(x))


def _vdot(a: Any, b: Any) -> float:
    return float(np.vdot(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()))


class _Rule:
    """``f`` as a function of its floating leaves alone (the others held), in a given dtype."""

    def __init__(self, f: Callable, args: tuple, held: set[int] | None = None):
        self.f = f
        self.leaves, self.treedef = jax.tree.flatten(args)
        self.paths = _arg_paths(args)
        # The argument each leaf belongs to: leaves of held (nondiff) arguments are not traced.
        owner = [k for k, a in enumerate(args) for _ in jax.tree.leaves(a)]
        held = held or set()
        self.where = [
            i for i, leaf in enumerate(self.leaves) if is_float(leaf) and owner[i] not in held
        ]

    def floats(self, leaves: list | None = None) -> tuple:
        leaves = self.leaves if leaves is None else leaves
        return tuple(leaves[i] for i in self.where)

    def call(self, *floats: Any) -> PyTree:
        full = list(self.leaves)
        for i, v in zip(self.where, floats, strict=True):
            full[i] = v
        return self.f(*jax.tree.unflatten(self.treedef, full))


def check_rule(
    f: Callable[..., Any],
    *args: Any,
    dtype: Any = "float64",
    seed: int = 0,
    rtol: float | None = None,
    fd_samples: int = 16,
    jit: bool = True,
    vmap: bool = True,
    probes: Sequence[float] = (10.0, 1e3, 1e-3),
    name: str | None = None,
) -> RuleReport:
    """Checks the derivative rule JAX uses for ``f`` at ``args``: every check of the module's list.

    Args:
      f: ``f(*args) -> pytree of arrays``; decorated with ``jax.custom_vjp`` / ``custom_jvp``,
        containing such functions, or plain.
      *args: pytrees; their floating leaves are cast to ``dtype`` and differentiated, integer and
        boolean leaves are held.
      dtype: ``"float64"`` (default), ``"float32"``, ``"bfloat16"`` or ``"float16"``; the finite
        differences are taken in float64 where ``f`` runs in it.
      seed: seeds every random cotangent, tangent and sample.
      rtol: the tolerance of the exact comparisons (the dtype's default of
        :func:`jaxprop.default_tolerances`).
      fd_samples: the most elements per argument leaf compared with finite differences.
      jit, vmap: also run the transformation checks.
      probes: factors the floating arguments are scaled by for the finiteness probes.
      name: a name for the report (default: ``f``'s).

    Returns:
      A :class:`RuleReport`.

    Raises:
      TypeError: if ``f`` is not callable.
      ValueError: if there is no floating argument, the dtype is not supported, ``seed`` is not a
        non-negative integer, or ``fd_samples`` not a positive integer.
    """
    if not callable(f):
        raise TypeError(f"check_rule needs a function f, got {type(f).__name__}")
    for arg, value, least in (("seed", seed, 0), ("fd_samples", fd_samples, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{arg} must be an integer >= {least}, got {value!r}")
    dtype, rtol, _ = tolerances(dtype, rtol)
    name = name or getattr(f, "__name__", None) or type(f).__name__
    held = set(getattr(f, "nondiff_argnums", None) or ())
    with precision(dtype):
        # Arguments in a custom rule's nondiff_argnums are held as given, never traced.
        args = tuple(a if k in held else cast(a, dtype) for k, a in enumerate(args))
        rule = _Rule(f, args, held)
        empty = [rule.paths[i] for i in rule.where if np.size(rule.leaves[i]) == 0]
        if empty:
            raise ValueError(
                f"check_rule: argument leaf {', '.join(empty)} has no elements; there is "
                "nothing to differentiate there (pass arrays with at least one element)"
            )
        if not rule.where:
            raise ValueError(
                "check_rule: no floating-point argument to differentiate; pass the arrays f's "
                "derivative is taken with respect to"
            )
        return _run(rule, args, dtype, seed, rtol, fd_samples, jit, vmap, tuple(probes), name)


def _run(rule, args, dtype, seed, rtol, fd_samples, jit, vmap, probes, name) -> RuleReport:
    records: list[RuleRecord] = []
    notes: list[str] = []

    def fail(check: str, leaf: str, problem: str, shape=()) -> None:
        records.append(
            RuleRecord(f"{check} {leaf}".strip(), check, leaf, tuple(shape), problem=problem)
        )

    def record(check: str, leaf: str, comparison: Comparison, shape=()) -> None:
        records.append(
            RuleRecord(f"{check} {leaf}".strip(), check, leaf, tuple(shape), comparison=comparison)
        )

    def report() -> RuleReport:
        return RuleReport(tuple(records), dtype.name, ref.dtype.name, name, tuple(notes))

    ref = _FloatReference.of(rule, dtype)
    floats = rule.floats()
    try:
        out = rule.call(*floats)
    except Exception as e:  # the user's f
        fail("primal", "", _first_line(e))
        return report()
    out_leaves, out_tree = jax.tree.flatten(out)
    out_names = _out_paths(out)
    float_out = [is_float(o) for o in out_leaves]

    # Reverse mode: an independent random cotangent for every floating output leaf.
    cot_out = [
        _random_like(seed, n, o) if isf else np.zeros(np.shape(o), jax.dtypes.float0)
        for n, o, isf in zip(out_names, out_leaves, float_out, strict=True)
    ]
    try:
        primal_v, vjp_fn = jax.vjp(rule.call, *floats)
        cots = vjp_fn(jax.tree.unflatten(out_tree, cot_out))
    except Exception as e:  # the user's fwd or bwd
        leaf = _leaf_from_message(str(e))
        fail("reverse", leaf, _first_line(e))
        cots = None
        primal_v = None
    if primal_v is not None:
        for n, a, b in zip(out_names, jax.tree.leaves(primal_v), out_leaves, strict=True):
            record("primal", n, compare("f(*args)", a, b, rtol=rtol, dtype=dtype), np.shape(b))
    projected = _projected(rule, out_tree, cot_out, float_out)
    hand: dict[str, np.ndarray] = {}
    if cots is not None:
        for i, p, c in zip(rule.where, [rule.paths[i] for i in rule.where], cots, strict=True):
            arg = rule.leaves[i]
            if jnp.shape(c) != jnp.shape(arg) or jnp.result_type(c) != jnp.result_type(arg):
                fail(
                    "types",
                    p,
                    f"cotangent is {jnp.result_type(c)}{list(jnp.shape(c))}, the "
                    f"argument {jnp.result_type(arg)}{list(jnp.shape(arg))}",
                    jnp.shape(arg),
                )
                if jnp.shape(c) != jnp.shape(arg):
                    continue
            hand[p] = np.asarray(c, np.float64)
        records.extend(_fd_records(rule, ref, projected, hand, seed, dtype, rtol, fd_samples))
        records.extend(_dot_product(rule, ref, projected, hand, seed, dtype, rtol))
    records.extend(_integer_arguments(rule, args, out_tree, cot_out))

    # Forward mode, where the rule has one.
    tangents = tuple(
        _random_like(seed, "tangent " + rule.paths[i], rule.leaves[i]) for i in rule.where
    )
    try:
        primal_j, jt = jax.jvp(rule.call, floats, tangents)
    except TypeError as e:
        if "custom_vjp" in str(e):
            notes.append("forward mode not checked: a custom_vjp rule has none")
            primal_j = jt = None
        else:
            fail("forward", "", _first_line(e))
            primal_j = jt = None
    except Exception as e:  # the user's jvp
        fail("forward", "", _first_line(e))
        primal_j = jt = None
    if jt is not None:
        records.extend(
            _forward_records(
                rule, ref, floats, tangents, out, primal_j, jt, cot_out, hand, seed, dtype, rtol
            )
        )

    if jit and cots is not None:
        records.extend(_jit_records(rule, floats, out_tree, cot_out, cots, dtype, rtol))
    if vmap:
        records.extend(_vmap_records(rule, args, seed, dtype, rtol))
    records.extend(_probe_records(rule, out_tree, cot_out, probes))
    return report()


def _leaf_from_message(message: str) -> str:
    """The argument a JAX error names ("at output[1] the bwd rule produced …"), or ``""``."""
    m = re.search(r"at output\[(\d+)\]", message)
    if m is None:
        return ""
    k = int(m.group(1))
    return f"args[{k}]"


@dataclasses.dataclass
class _FloatReference:
    """The rule's floating arguments in the dtype the finite differences are taken in."""

    rule: _Rule
    floats: tuple
    dtype: np.dtype

    @classmethod
    def of(cls, rule: _Rule, dtype: np.dtype) -> _FloatReference:
        if dtype != jnp.float64:
            try:
                with jax.enable_x64(True):
                    f64 = tuple(jnp.asarray(v, jnp.float64) for v in rule.floats())
                    out = rule.call(*f64)
                if all(
                    jnp.result_type(o) == jnp.float64 for o in jax.tree.leaves(out) if is_float(o)
                ):
                    return cls(rule, f64, jnp.dtype(jnp.float64))
            except Exception:  # f runs in its own dtype only
                pass
        return cls(rule, rule.floats(), jnp.dtype(dtype))


def _projected(rule, out_tree, cot_out, float_out) -> Callable:
    """Σ_o ⟨c_o, f_o(floats)⟩: the scalar whose gradient is the rule's vjp of the cotangents."""

    def g(*floats):
        outs = jax.tree.leaves(rule.call(*floats))
        total: Any = 0.0
        for o, c, isf in zip(outs, cot_out, float_out, strict=True):
            if isf:
                total = total + jnp.sum(
                    jnp.asarray(o, floats[0].dtype) * jnp.asarray(c, floats[0].dtype)
                )
        return total

    return g


def _fd_runner(fn):
    """``(base, d, t) -> (fn(base + t d), fn(base − t d))`` over the steps t, compiled once per
    function: every leaf's probes of one check reuse it."""

    def at(base, d, t):
        return jnp.ravel(jnp.asarray(fn(*(b + t * di for b, di in zip(base, d, strict=True)))))

    return jax.jit(
        lambda base, d, t: jax.lax.map(lambda tt: (at(base, d, tt), at(base, d, -tt)), t)
    )


def _fd_estimates(fn, base: tuple, directions: list, dtype) -> fd.Estimate:
    """Finite differences of ``fn`` (array-valued allowed) along each direction, one per probe;
    each direction a tuple like ``base`` of perturbations of unit scale."""
    steps = fd.ladder(np.ones(len(directions)), dtype)
    K = steps.shape[1]
    run = memoised(_fd_runner, fn)
    values_p, values_m = [], []
    for p, d in enumerate(directions):
        plus, minus = run(base, d, jnp.asarray(steps[p], dtype))
        values_p.append(np.asarray(plus))
        values_m.append(np.asarray(minus))
    f0 = np.ravel(np.asarray(fn(*base)))
    plus = np.stack(values_p).reshape(len(directions), K, -1)
    minus = np.stack(values_m).reshape(len(directions), K, -1)
    return fd.estimate(f0, plus, minus, steps, dtype, FD_ERROR_MULTIPLE)


def _fd_records(rule, ref, projected, hand, seed, dtype, rtol, fd_samples) -> list[RuleRecord]:
    """Every argument leaf's cotangent against finite differences of the projected output."""
    records = []
    paths = [rule.paths[i] for i in rule.where]
    peak = peak_of(hand.values())
    rng = np.random.default_rng(seed)
    with precision(ref.dtype):
        for k, p in enumerate(paths):
            if p not in hand:
                continue
            h = hand[p]
            n = h.size
            if n <= fd_samples:
                picks = np.arange(n)
            else:
                largest = int(np.argmax(np.abs(h)))
                rest = np.delete(np.arange(n), largest)
                picks = np.sort(
                    np.concatenate([[largest], rng.choice(rest, fd_samples - 1, replace=False)])
                )
            base = ref.floats
            leaf64 = np.asarray(base[k], np.float64).ravel()
            scale_el = fd.element_scale(leaf64[picks], leaf64)
            dirs = []
            for j, s in zip(picks, scale_el, strict=True):
                d = [jnp.zeros_like(b) for b in base]
                d[k] = jnp.zeros_like(base[k]).ravel().at[j].set(s).reshape(jnp.shape(base[k]))
                dirs.append(tuple(d))
            e = _fd_estimates(projected, base, dirs, ref.dtype)
            value = e.value[:, 0] / scale_el
            err = e.error[:, 0] / scale_el
            left, right = e.left[:, 0] / scale_el, e.right[:, 0] / scale_el
            scale = reference_scale(
                np.concatenate([value, h.ravel()[picks]]), dtype=dtype, peak=peak
            )
            shape = np.shape(rule.leaves[rule.where[k]])

            def index_of(i, picks=picks, shape=shape):
                return tuple(int(v) for v in np.unravel_index(picks[i], shape)) if shape else ()

            c = compare_fd(
                "finite differences", h.ravel()[picks], value, err, rtol=rtol, scale=scale,
                dtype=dtype, left=left, right=right, kink=e.kink[:, 0], index_of=index_of,
            )  # fmt: skip
            records.append(RuleRecord(f"reverse {p}", "reverse", p, shape, comparison=c))
    return records


def _dot_product(rule, ref, projected, hand, seed, dtype, rtol) -> list[RuleRecord]:
    """⟨Jᵀc, t⟩ against d/dε ⟨c, f(x + ε t)⟩ for one random tangent t over every argument."""
    paths = [rule.paths[i] for i in rule.where]
    if any(p not in hand for p in paths):
        return []
    with precision(ref.dtype):
        t = tuple(_random_like(seed, "dot " + p, b) for p, b in zip(paths, ref.floats, strict=True))
        e = _fd_estimates(projected, ref.floats, [t], ref.dtype)
        lhs = sum(_vdot(hand[p], ti) for p, ti in zip(paths, t, strict=True))
    size = sum(
        float(np.sum(np.abs(hand[p] * np.asarray(ti, np.float64))))
        for p, ti in zip(paths, t, strict=True)
    )
    scale = reference_scale(np.asarray([size]), dtype=dtype)
    c = compare_fd(
        "finite differences", np.asarray([lhs]), e.value[0], e.error[0], rtol=rtol,
        scale=scale, dtype=dtype, index_of=lambda k: (),
    )  # fmt: skip
    return [RuleRecord("dot-product", "dot-product", "", (), comparison=c)]


def _integer_arguments(rule, args, out_tree, cot_out) -> list[RuleRecord]:
    """Integer and boolean arguments get no cotangent. JAX drops whatever a custom_vjp's bwd
    returns for them, so a top-level rule's bwd is called directly and its output read."""
    ints = {i for i, leaf in enumerate(rule.leaves) if i not in rule.where}
    fwd, bwd = getattr(rule.f, "fwd", None), getattr(rule.f, "bwd", None)
    if not ints or fwd is None or bwd is None or getattr(rule.f, "nondiff_argnums", None):
        return []
    records = []
    try:
        _, res = fwd(*args)
        cots = bwd(res, jax.tree.unflatten(out_tree, cot_out))
    except Exception as e:
        return [RuleRecord("types", "types", "", (), problem=_first_line(e))]
    for k, (arg, c) in enumerate(zip(args, cots, strict=False)):
        arg_leaves = jax.tree.leaves(arg)
        if not arg_leaves or any(is_float(v) for v in arg_leaves) or c is None:
            continue
        for v in jax.tree.leaves(c):
            if jnp.result_type(v) != jax.dtypes.float0:
                records.append(
                    RuleRecord(
                        f"types args[{k}]",
                        "types",
                        f"args[{k}]",
                        tuple(np.shape(v)),
                        problem=f"an integer argument got a {jnp.result_type(v)} cotangent "
                        "(JAX drops it without a word); return None",
                    )
                )
                break
    return records


def _forward_records(
    rule, ref, floats, tangents, out, primal_j, jt, cot_out, hand, seed, dtype, rtol
) -> list[RuleRecord]:
    records = []
    out_names = _out_paths(out)
    for n, a, b in zip(out_names, jax.tree.leaves(primal_j), jax.tree.leaves(out), strict=True):
        records.append(
            RuleRecord(
                f"primal (jvp) {n}",
                "primal (jvp)",
                n,
                tuple(np.shape(b)),
                comparison=compare("f(*args)", a, b, rtol=rtol, dtype=dtype),
            )
        )
    jt_leaves = jax.tree.leaves(jt)
    # The jvp against finite differences of f along the same tangent.
    with precision(ref.dtype):
        t64 = tuple(jnp.asarray(t, ref.dtype) for t in tangents)

        def flat_out(*x):
            outs = [o for o in jax.tree.leaves(rule.call(*x)) if is_float(o)]
            return jnp.concatenate([jnp.ravel(jnp.asarray(o, ref.dtype)) for o in outs])

        e = _fd_estimates(flat_out, ref.floats, [t64], ref.dtype)
    start = 0
    for n, o, j in zip(out_names, jax.tree.leaves(out), jt_leaves, strict=True):
        if not is_float(o):
            continue
        size = int(np.size(o))
        v, err = e.value[0, start : start + size], e.error[0, start : start + size]
        start += size
        scale = reference_scale(v, dtype=dtype)
        c = compare_fd(
            "finite differences", np.asarray(j, np.float64).ravel(), v, err, rtol=rtol,
            scale=scale, dtype=dtype,
        )  # fmt: skip
        records.append(RuleRecord(f"forward {n}", "forward", n, tuple(np.shape(o)), comparison=c))
    # Linearity: jvp(a t1 + b t2) = a jvp(t1) + b jvp(t2).
    t2 = tuple(
        _random_like(seed + 1, "tangent2 " + rule.paths[i], rule.leaves[i]) for i in rule.where
    )
    try:
        _, j2 = jax.jvp(rule.call, floats, t2)
        _, j12 = jax.jvp(
            rule.call, floats, tuple(2.0 * a - 0.5 * b for a, b in zip(tangents, t2, strict=True))
        )
        for n, a1, a2, a12 in zip(
            out_names, jt_leaves, jax.tree.leaves(j2), jax.tree.leaves(j12), strict=True
        ):
            expect = 2.0 * np.asarray(a1, np.float64) - 0.5 * np.asarray(a2, np.float64)
            records.append(
                RuleRecord(
                    f"linearity {n}",
                    "linearity",
                    n,
                    tuple(np.shape(a12)),
                    comparison=compare(
                        "2 jvp(t1) − ½ jvp(t2)",
                        np.asarray(a12, np.float64),
                        expect,
                        rtol=rtol,
                        dtype=dtype,
                    ),
                )
            )
    except Exception as ex:
        records.append(RuleRecord("linearity", "linearity", "", (), problem=_first_line(ex)))
    # Consistency of the jvp with the vjp: ⟨c, J t⟩ = ⟨Jᵀc, t⟩.
    paths = [rule.paths[i] for i in rule.where]
    if all(p in hand for p in paths):
        lhs = sum(
            _vdot(c, j)
            for c, j, o in zip(cot_out, jt_leaves, jax.tree.leaves(out), strict=True)
            if is_float(o)
        )
        rhs = sum(_vdot(hand[p], t) for p, t in zip(paths, tangents, strict=True))
        records.append(
            RuleRecord(
                "consistency",
                "consistency",
                "",
                (),
                comparison=compare(
                    "⟨Jᵀc, t⟩", np.asarray([lhs]), np.asarray([rhs]), rtol=rtol, dtype=dtype
                ),
            )
        )
    return records


def _jit_records(rule, floats, out_tree, cot_out, cots, dtype, rtol) -> list[RuleRecord]:
    """The rule under jax.jit against the rule eagerly."""

    def vjp_of(*floats):
        return jax.vjp(rule.call, *floats)[1](jax.tree.unflatten(out_tree, cot_out))

    try:
        jitted = jax.jit(vjp_of)(*floats)
    except Exception as e:  # a Python branch on a traced value, say
        return [RuleRecord("jit", "jit", "", (), problem=_first_line(e))]
    records = []
    for i, a, b in zip(rule.where, jitted, cots, strict=True):
        p = rule.paths[i]
        if jnp.shape(a) != jnp.shape(b):
            continue
        records.append(
            RuleRecord(
                f"jit {p}",
                "jit",
                p,
                tuple(np.shape(b)),
                comparison=compare(
                    "the rule eagerly",
                    np.asarray(a, np.float64),
                    np.asarray(b, np.float64),
                    rtol=rtol,
                    dtype=dtype,
                ),
            )
        )
    return records


def _vmap_records(rule, args, seed, dtype, rtol) -> list[RuleRecord]:
    """Under jax.vmap over a leading batch axis of 3 examples: the primal and the vjp equal the
    per-example ones; jax.grad of vmap equals vmap of grad where the output is one scalar."""
    B = 3
    scales = [1.0, 0.9, 1.1]
    examples = [tuple(jnp.asarray(v * s, v.dtype) for v in rule.floats()) for s in scales]
    batched = tuple(jnp.stack([ex[k] for ex in examples]) for k in range(len(rule.where)))
    records: list[RuleRecord] = []
    try:
        out_b = jax.vmap(rule.call)(*batched)
        outs = [rule.call(*ex) for ex in examples]
    except Exception as e:
        return [RuleRecord("vmap", "vmap", "", (), problem=_first_line(e))]
    out_tree = jax.tree.structure(outs[0])
    names = _out_paths(outs[0])
    for k, n in enumerate(names):
        per = np.stack([np.asarray(jax.tree.leaves(o)[k], np.float64) for o in outs])
        got = np.asarray(jax.tree.leaves(out_b)[k], np.float64)
        if got.shape != per.shape:
            records.append(
                RuleRecord(
                    f"vmap {n}",
                    "vmap",
                    n,
                    per.shape[1:],
                    problem=f"batched output has shape {got.shape}, expected {per.shape}",
                )
            )
            continue
        records.append(
            RuleRecord(
                f"vmap {n}",
                "vmap",
                n,
                per.shape[1:],
                comparison=compare("per example", got, per, rtol=rtol, dtype=dtype),
            )
        )
    out_leaves = jax.tree.leaves(outs[0])
    if not all(is_float(o) for o in out_leaves):
        return records
    cot = [
        jnp.stack([_random_like(seed + b, "vmap " + n, o) for b in range(B)])
        for n, o in zip(names, out_leaves, strict=True)
    ]

    def vjp_one(floats, c):
        return jax.vjp(rule.call, *floats)[1](jax.tree.unflatten(out_tree, c))

    try:
        vb = jax.vmap(vjp_one)(batched, cot)
        per_vjp = [vjp_one(ex, [c[b] for c in cot]) for b, ex in enumerate(examples)]
    except Exception as e:
        return [*records, RuleRecord("vmap (vjp)", "vmap (vjp)", "", (), problem=_first_line(e))]
    for k, i in enumerate(rule.where):
        p = rule.paths[i]
        want = np.stack([np.asarray(pe[k], np.float64) for pe in per_vjp])
        got = np.asarray(vb[k], np.float64)
        if got.shape != want.shape:
            continue
        records.append(
            RuleRecord(
                f"vmap (vjp) {p}",
                "vmap (vjp)",
                p,
                want.shape[1:],
                comparison=compare("per example", got, want, rtol=rtol, dtype=dtype),
            )
        )
    if len(out_leaves) == 1 and np.size(out_leaves[0]) == 1:
        try:
            gv = jax.grad(
                lambda *b: jnp.sum(jax.vmap(rule.call)(*b)), argnums=tuple(range(len(batched)))
            )(*batched)
            vg = jax.vmap(
                jax.grad(lambda *x: jnp.sum(rule.call(*x)), argnums=tuple(range(len(batched))))
            )(*batched)
        except Exception as e:
            return [
                *records,
                RuleRecord("grad-of-vmap", "grad-of-vmap", "", (), problem=_first_line(e)),
            ]
        for k, i in enumerate(rule.where):
            p = rule.paths[i]
            records.append(
                RuleRecord(
                    f"grad-of-vmap {p}",
                    "grad-of-vmap",
                    p,
                    tuple(np.shape(rule.leaves[i])),
                    comparison=compare(
                        "vmap of grad",
                        np.asarray(gv[k], np.float64),
                        np.asarray(vg[k], np.float64),
                        rtol=rtol,
                        dtype=dtype,
                    ),
                )
            )
    return records


def _probe_records(rule, out_tree, cot_out, probes) -> list[RuleRecord]:
    """At the floating arguments scaled by each probe: where the primal is finite, a non-finite
    cotangent is a failure."""
    records = []
    for s in probes:
        label = f"probe x{s:g}"
        scaled = tuple(jnp.asarray(v * s, v.dtype) for v in rule.floats())
        try:
            out = rule.call(*scaled)
            if not all(
                np.all(np.isfinite(np.asarray(o))) for o in jax.tree.leaves(out) if is_float(o)
            ):
                continue  # the primal itself is not finite here: nothing to hold the rule to
            cots = jax.vjp(rule.call, *scaled)[1](jax.tree.unflatten(out_tree, cot_out))
        except Exception as e:
            records.append(RuleRecord(label, label, "", (), problem=_first_line(e)))
            continue
        for i, c in zip(rule.where, cots, strict=True):
            p = rule.paths[i]
            bad = ~np.isfinite(np.asarray(c, np.float64))
            records.append(
                RuleRecord(
                    f"{label} {p}",
                    label,
                    p,
                    tuple(np.shape(c)),
                    problem=None
                    if not bad.any()
                    else f"cotangent not finite at {int(bad.sum())} of {bad.size} elements, the "
                    "primal finite",
                )
            )
    return records
