"""The checks :func:`jaxprop.check_rule` runs on a rule: reverse and forward against finite
differences, the dot-product test, integer arguments, jit, vmap and the probes.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check import fd
from jaxprop.check.compare import compare, compare_fd, mismatch, peak_of
from jaxprop.check.diagnosis import Diagnosis, diagnose
from jaxprop.check.rule_report import RuleRecord
from jaxprop.check.tolerance import FD_ERROR_MULTIPLE, is_float, precision, reference_scale
from jaxprop.check.trees import PyTree, leaf_path, memoised


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


def _consistent(what: str, a, b, *, rtol, dtype):
    """``a`` against ``b`` for a check of the rule against itself (eager, jit, vmap): where both
    are the same non-finite value (an overflow the rule has either way) they agree."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape == b.shape:
        same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
        a, b = np.where(same, 0.0, a), np.where(same, 0.0, b)
    return compare(what, a, b, rtol=rtol, dtype=dtype)


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


def _projected(rule, out_tree, cot_out, float_out, finite=None) -> Callable:
    """Σ_o ⟨c_o, f_o(floats)⟩: the scalar whose gradient is the rule's vjp of the cotangents;
    with ``finite`` (per output leaf, the elements finite at the point), the others left out."""
    masks = [None] * len(cot_out) if finite is None else finite

    def g(*floats):
        outs = jax.tree.leaves(rule.call(*floats))
        total: Any = 0.0
        for o, c, isf, m in zip(outs, cot_out, float_out, masks, strict=True):
            if isf:
                o = jnp.asarray(o, floats[0].dtype)
                if m is not None:
                    o = jnp.where(m, o, jnp.zeros_like(o))
                total = total + jnp.sum(o * jnp.asarray(c, floats[0].dtype))
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


def _coordinate_runner(fn, k: int):
    """``(base, js, ss, t) -> (f⁺, f⁻)``: ``fn`` with element ``js[p]`` of leaf ``k`` moved by
    ``± t ss[p]``, over every pick p and step t in one compiled program (one leaf of a million
    elements is copied per evaluation, never a dense direction per pick)."""

    def at(base, j, s, t):
        leaf = base[k]
        moved = leaf.ravel().at[j].add(t * s).reshape(leaf.shape)
        return jnp.ravel(jnp.asarray(fn(*base[:k], moved, *base[k + 1 :])))

    def run(base, js, ss, steps):
        def pick(js_ss):
            j, s = js_ss
            return jax.lax.map(lambda tt: (at(base, j, s, tt), at(base, j, s, -tt)), steps)

        return jax.lax.map(pick, (js, ss))

    return jax.jit(run)


def _leaf_fd(projected, ref, k: int, picks: np.ndarray):
    """Finite differences of the projected output along coordinate ``picks`` of float leaf
    ``k``: (value, error, left, right, kink), each per pick."""
    base = ref.floats
    leaf64 = np.asarray(base[k], np.float64).ravel()
    scale_el = fd.element_scale(leaf64[picks], leaf64)
    steps = fd.ladder(np.ones(len(picks)), ref.dtype)
    run = memoised(_coordinate_runner, projected, k)
    with precision(ref.dtype):
        plus, minus = run(
            base, jnp.asarray(picks), jnp.asarray(scale_el, ref.dtype),
            jnp.asarray(steps[0], ref.dtype),
        )  # fmt: skip
    f0 = np.ravel(np.asarray(projected(*base)))
    P, K = steps.shape
    plus, minus = np.asarray(plus).reshape(P, K, -1), np.asarray(minus).reshape(P, K, -1)
    e = fd.estimate(f0, plus, minus, steps, ref.dtype, FD_ERROR_MULTIPLE)
    value, error, left, right = (v[:, 0] / scale_el for v in (e.value, e.error, e.left, e.right))
    return value, error, left, right, e.kink[:, 0]


# A failing cotangent is diagnosed against the finite differences of every element, for a leaf
# of at most this many elements (the others on their sampled elements).
DIAGNOSE_UP_TO = 256


def _fd_records(rule, ref, projected, hand, seed, dtype, options, fd_samples) -> list[RuleRecord]:
    """Every argument leaf's cotangent against finite differences of the projected output."""
    records = []
    paths = [rule.paths[i] for i in rule.where]
    peak = peak_of(hand.values())
    rng = np.random.default_rng(seed)
    full: dict[str, np.ndarray] = {}  # a leaf's reference at every element, where computed
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
            shape = np.shape(rule.leaves[rule.where[k]])
            if not np.all(np.isfinite(h)):
                problem = _not_finite(hand, [p])
                records.append(RuleRecord(f"reverse {p}", "reverse", p, shape, problem=problem))
                continue
            value, err, left, right, kink = _leaf_fd(projected, ref, k, picks)
            if len(picks) == n:
                full[p] = value
            rtol = options.rtol_of(p)
            # An overflowed difference sets no scale: it is inconclusive on its own.
            both = np.concatenate([value, h.ravel()[picks]])
            scale = reference_scale(both[np.isfinite(both)], dtype=dtype, peak=peak)

            def index_of(i, picks=picks, shape=shape):
                return tuple(int(v) for v in np.unravel_index(picks[i], shape)) if shape else ()

            c = compare_fd(
                "finite differences", h.ravel()[picks], value, err, rtol=rtol, scale=scale,
                dtype=dtype, left=left, right=right, kink=kink, index_of=index_of,
            )  # fmt: skip
            diagnosis = None
            if not c.ok and not c.inconclusive:
                if len(picks) < n <= DIAGNOSE_UP_TO:
                    full[p] = _leaf_fd(projected, ref, k, np.arange(n))[0]
                    picks = np.arange(n)
                diagnosis = (p, picks, value if p not in full else full[p])
            records.append(
                RuleRecord(f"reverse {p}", "reverse", p, shape, comparison=c, diagnosis=diagnosis)
            )
    return [_diagnosed(r, hand, full, dtype) for r in records]


def _diagnosed(record: RuleRecord, hand, full, dtype) -> RuleRecord:
    """A failing reverse record with its diagnosis: the cotangent of another argument (swapped),
    or a kind of :func:`jaxprop.check.diagnose` against the finite differences."""
    if record.diagnosis is None:
        return record
    p, picks, ref = record.diagnosis
    h = hand[p].ravel()[picks]
    tol = DIAGNOSIS_RTOL
    for q, other in full.items():
        if q != p and other.shape == h.shape and np.shape(hand[q]) == np.shape(hand[p]):
            if mismatch(h, other) <= tol < mismatch(h, ref):
                d = Diagnosis(
                    p, "swapped", f"the cotangent of {p} is the one of {q}: the bwd returns "
                    "the arguments' cotangents in another order", {"other": q},
                )  # fmt: skip
                return dataclasses.replace(record, diagnosis=d)
    shape = np.shape(hand[p]) if len(picks) == hand[p].size else (len(picks),)
    d = diagnose(p, h.reshape(shape), np.reshape(ref, shape), dtype=dtype, rtol=tol,
                 noun="cotangent")  # fmt: skip
    return dataclasses.replace(record, diagnosis=d)


# Finite differences are good to about 1e-8 relative: the diagnosis's candidates are held there.
DIAGNOSIS_RTOL = 1e-6


def _dot_product(rule, ref, projected, hand, seed, dtype, rtol) -> list[RuleRecord]:
    """⟨Jᵀc, t⟩ against d/dε ⟨c, f(x + ε t)⟩ for one random tangent t over every argument."""
    paths = [rule.paths[i] for i in rule.where]
    if any(p not in hand for p in paths):
        return []
    bad = [p for p in paths if not np.all(np.isfinite(hand[p]))]
    if bad:
        return [RuleRecord("dot-product", "dot-product", "", (), problem=_not_finite(hand, bad))]
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
        scale=scale, dtype=dtype, left=e.left[0], right=e.right[0], kink=e.kink[0],
        index_of=lambda k: (),
    )  # fmt: skip
    return [RuleRecord("dot-product", "dot-product", "", (), comparison=c)]


def _not_finite(hand, bad) -> str:
    """``cotangent not finite at 2 of 3 elements of args[0]``, for the first such leaf."""
    a = hand[bad[0]]
    n = int(np.sum(~np.isfinite(a)))
    return f"cotangent not finite at {n} of {a.size} elements of {bad[0]}"


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
    rule, ref, floats, tangents, out, primal_j, jt, cot_out, hand, seed, dtype, rtol, fd=True
) -> list[RuleRecord]:
    """The jvp: its primal, against finite differences along the same tangent (unless ``fd`` is
    false: a rule declared intended), linear in the tangent, and consistent with the vjp."""
    records = []
    out_names = _out_paths(out)
    for n, a, b in zip(out_names, jax.tree.leaves(primal_j), jax.tree.leaves(out), strict=True):
        records.append(
            RuleRecord(
                f"primal (jvp) {n}",
                "primal (jvp)",
                n,
                tuple(np.shape(b)),
                comparison=_consistent("f(*args)", a, b, rtol=rtol, dtype=dtype),
            )
        )
    jt_leaves = jax.tree.leaves(jt)
    if fd:
        records += _forward_fd(rule, ref, tangents, out, jt_leaves, out_names, dtype, rtol)
    return records + _linearity(rule, floats, tangents, out, jt_leaves, cot_out, hand, seed,
                                dtype, rtol)  # fmt: skip


def _forward_fd(rule, ref, tangents, out, jt_leaves, out_names, dtype, rtol) -> list[RuleRecord]:
    """The jvp against finite differences of f along the same tangent."""
    records = []
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
        part = slice(start, start + size)
        v, err = e.value[0, part], e.error[0, part]
        start += size
        jv = np.asarray(j, np.float64).ravel()
        # The scale of the reference and the rule's values together, as for the reverse check:
        # a reference of exactly 0 does not make every error infinite.
        both = np.concatenate([v, jv])
        scale = reference_scale(both[np.isfinite(both)], dtype=dtype)
        shape = tuple(np.shape(o))

        def index_of(i, shape=shape):
            return tuple(int(x) for x in np.unravel_index(i, shape)) if shape else ()

        c = compare_fd(
            "finite differences", jv, v, err, rtol=rtol, scale=scale, dtype=dtype,
            left=e.left[0, part], right=e.right[0, part], kink=e.kink[0, part], index_of=index_of,
        )  # fmt: skip
        d = None
        if not c.ok and not c.inconclusive:
            d = diagnose(n, jv.reshape(shape), v.reshape(shape), dtype=dtype, rtol=DIAGNOSIS_RTOL,
                         noun="tangent")  # fmt: skip
        records.append(RuleRecord(f"forward {n}", "forward", n, shape, comparison=c, diagnosis=d))
    return records


def _linearity(rule, floats, tangents, out, jt_leaves, cot_out, hand, seed, dtype, rtol):
    """jvp(2 t1 − ½ t2) = 2 jvp(t1) − ½ jvp(t2), and ⟨c, J t⟩ = ⟨Jᵀc, t⟩."""
    records = []
    out_names = _out_paths(out)
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
