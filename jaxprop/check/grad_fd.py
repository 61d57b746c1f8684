"""The gradient check's finite-difference reference: per coordinate on small leaves, along random
directions on large ones (:mod:`jaxprop.check.fd` computes the differences and their error).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxprop.check import fd
from jaxprop.check.compare import compare_fd, fd_allowance
from jaxprop.check.tolerance import (
    FD_ERROR_MULTIPLE,
    reference_scale,
)
from jaxprop.check.trees import (
    _compiled,
    memoised,
    paths,
)


def _fd_check(
    loss_fn, ref, compared, auto_scale, fd_samples, seed, dtype, rtol, fd_rtol, fd_mode, k
):
    """Finite differences of every compared leaf (:mod:`jaxprop.check.fd`), element by element or,
    for a large model, along random directions; returns per leaf the comparison and the elements of
    the jax.grad comparison that a kink excuses, and a function that re-runs one element."""
    n_params = sum(h.size for h, _ in compared.values())
    directional = fd_mode == "directions" or (fd_mode == "auto" and n_params > fd.DIRECTIONS_ABOVE)
    with ref.context():
        offsets, start = {}, 0
        for path, leaf in paths(ref.params).items():
            offsets[path] = (start, int(np.size(leaf)))
            start += int(np.size(leaf))
        floor_rtol = rtol if fd_rtol is None else max(rtol, fd_rtol)
        if directional:
            return _fd_directions(loss_fn, ref, compared, seed, k, floor_rtol, dtype)
        flat, unravel = ravel_pytree(ref.params)
        flat_np = np.asarray(flat)
        rng = np.random.default_rng(seed)
        picks: dict[str, np.ndarray] = {}
        for path, (h, a) in compared.items():
            n = h.size
            diff = np.abs(h.ravel().astype(np.float64) - a.ravel().astype(np.float64))
            # The worst element, the elements jax.grad disagrees on (a kink may excuse them), and
            # a random sample.
            bad = np.flatnonzero(diff > rtol * auto_scale[path])
            bad = bad[np.argsort(-diff[bad])][: fd.MAX_DISAGREEING]
            if n <= fd_samples:
                chosen = np.arange(n)
            else:
                worst = int(np.argmax(diff))
                rest = np.setdiff1d(np.arange(n), np.concatenate([[worst], bad]))
                others = rng.choice(rest, min(fd_samples - 1, rest.size), replace=False)
                chosen = np.concatenate([[worst], others])
            picks[path] = np.unique(np.concatenate([chosen, bad]).astype(np.int64))
        index = np.concatenate([offsets[p][0] + picks[p] for p in picks]).astype(np.int64)
        elem_scale = np.concatenate(
            [
                fd.element_scale(
                    flat_np[offsets[p][0] + picks[p]],
                    flat_np[offsets[p][0] : offsets[p][0] + offsets[p][1]],
                )
                for p in picks
            ]
        )
        steps = fd.ladder(elem_scale, ref.dtype)
        est = _coordinate_estimates(loss_fn, flat, unravel, ref.args, index, steps, ref)

    out, k0 = {}, 0
    for path, (h, _a) in compared.items():
        m = len(picks[path])
        e = est.take_range(k0, k0 + m)
        k0 += m
        out[path] = _judge_fd(h, picks[path], e, floor_rtol, dtype, auto_scale[path])

    def replay(path: str, index: tuple[int, ...]) -> fd.Estimate:
        """Re-runs the finite differences of one element with the same ladder of steps."""
        if path not in picks:
            raise KeyError(f"no finite differences were taken for leaf {path!r}")
        h, _ = compared[path]
        flat_i = int(np.ravel_multi_index(index, h.shape)) if h.shape else 0
        where = np.flatnonzero(picks[path] == flat_i)
        if where.size == 0:
            raise KeyError(f"leaf {path!r} element {index} was not among the sampled elements")
        p = sum(len(picks[q]) for q in list(picks)[: list(picks).index(path)]) + int(where[0])
        with ref.context():
            probe = np.asarray([offsets[path][0] + flat_i])
            return _coordinate_estimates(
                loss_fn, flat, unravel, ref.args, probe, steps[p : p + 1], ref
            )

    return out, replay


def _coordinate_estimates(loss_fn, flat, unravel, args, index, steps, ref) -> fd.Estimate:
    """L(θ ± h_k e_i) for every probe i and step h_k, then :func:`jaxprop.check.fd.estimate`."""
    P, K = steps.shape

    def along(i, t):
        e = jnp.zeros_like(flat).at[i].set(t)
        return loss_fn(unravel(flat + e), *args), loss_fn(unravel(flat - e), *args)

    def all_along(i, t):
        return jax.lax.map(lambda a: along(*a), (i, t), batch_size=64)

    i = jnp.asarray(np.repeat(index, K))
    t = jnp.asarray(steps.ravel(), ref.dtype)
    try:
        # The reference's own evaluations are compiled even with jit=False (which keeps the
        # user's functions eager): 2 × 12 loss evaluations per element, eagerly, are slow.
        plus, minus = jax.jit(all_along)(i, t)
    except Exception:  # a loss that cannot be traced: evaluate it eagerly
        if ref.jit:
            raise
        plus, minus = all_along(i, t)
    f0 = np.asarray(loss_fn(unravel(flat), *args))
    plus, minus = np.asarray(plus).reshape(P, K), np.asarray(minus).reshape(P, K)
    return fd.estimate(f0, plus, minus, steps, ref.dtype, FD_ERROR_MULTIPLE)


def _judge_fd(h, picks, e, floor_rtol, dtype, scale):
    """The finite-difference comparison of one leaf at the scale of its jax.grad comparison, and
    the jax.grad disagreements it excuses."""
    h_flat = h.ravel().astype(np.float64)[picks]
    shape = h.shape

    def index_of(k: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(picks[k], shape)) if shape else ()

    comparison = compare_fd(
        "finite differences", h_flat, e.value, e.error, rtol=floor_rtol, scale=scale,
        dtype=dtype, left=e.left, right=e.right, kink=e.kink, index_of=index_of, steps=e.steps,
    )  # fmt: skip
    allowance, _ = fd_allowance(e.error, rtol=floor_rtol, scale=scale, dtype=dtype)
    # Elements where the hand value is a valid subgradient at a kink excuse jax.grad's choice.
    low, high = np.minimum(e.left, e.right), np.maximum(e.left, e.right)
    valid = e.kink & (h_flat >= low - allowance) & (h_flat <= high + allowance)
    excused = None
    if valid.any():
        excused = np.zeros(h.size, bool)
        excused[picks[valid]] = True
    return comparison, excused


def _directional_evaluator(loss_fn, treedef, i: int, jit: bool):
    """``(leaves, args, d, j, t) -> (L(θ + t d_j), L(θ − t d_j))`` with only leaf ``i`` moved,
    over arrays of (j, t); compiled once per loss, tree and leaf
    (:func:`jaxprop.check.trees.memoised`)."""

    def evaluate(leaves, args, d, j, t):
        def one(jt):
            j, t = jt
            plus, minus = list(leaves), list(leaves)
            plus[i] = leaves[i] + t * d[j]
            minus[i] = leaves[i] - t * d[j]
            return (
                loss_fn(jax.tree.unflatten(treedef, plus), *args),
                loss_fn(jax.tree.unflatten(treedef, minus), *args),
            )

        return jax.lax.map(one, (j, t))

    return jax.jit(evaluate) if jit else evaluate


def _fd_directions(loss_fn, ref, compared, seed, k, floor_rtol, dtype):
    """Directional finite differences: ``k`` random directions per leaf, each leaf on its own.

    A leaf's directions come from a key folded with a hash of its path, so that adding a leaf
    changes no other leaf's directions; the hand value along a direction d is ``hand · d``. The
    cost is 2 k ``DIRECTION_LADDER`` loss evaluations per leaf, whatever its size."""
    leaves, treedef = jax.tree.flatten(ref.params)
    index_of_path = {p: i for i, p in enumerate(paths(ref.params))}
    f0 = np.asarray(
        ref.loss if ref.loss is not None else _compiled(loss_fn, ref.jit)(ref.params, *ref.args)
    )
    out = {}
    for path, (h, a) in compared.items():
        i = index_of_path[path]
        key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(path.encode()) & 0x7FFFFFFF)
        leaf = np.asarray(leaves[i])
        d = jax.random.normal(key, (k, *leaf.shape), ref.dtype) * fd.leaf_scale(leaf)
        steps = fd.ladder(np.ones(k), ref.dtype, fd.DIRECTION_LADDER)
        K = steps.shape[1]
        run = memoised(_directional_evaluator, loss_fn, treedef, i, ref.jit)
        plus, minus = run(
            leaves, ref.args, d, jnp.asarray(np.repeat(np.arange(k), K)),
            jnp.asarray(steps.ravel(), ref.dtype),
        )  # fmt: skip
        e = fd.estimate(
            f0, np.asarray(plus).reshape(k, K), np.asarray(minus).reshape(k, K), steps,
            ref.dtype, FD_ERROR_MULTIPLE,
        )  # fmt: skip
        dn = np.asarray(d, np.float64).reshape(k, -1)
        hand_dir = dn @ h.ravel().astype(np.float64)
        # The size of a directional derivative g · d with d ~ N(0, s²): ‖g‖ s.
        size = float(np.linalg.norm(a.ravel().astype(np.float64))) * fd.leaf_scale(leaf)
        scale = reference_scale(np.asarray([size]), dtype=ref.dtype)
        out[path] = (
            compare_fd(
                f"finite differences ({k} directions)", hand_dir, e.value, e.error,
                rtol=floor_rtol, scale=scale, dtype=dtype, left=e.left, right=e.right,
                kink=e.kink, steps=e.steps, index_of=lambda j: (int(j),),
            ),
            None,
        )  # fmt: skip
    return out, None
