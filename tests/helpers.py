"""The one shared assertion of the test suite: two pytrees agree, structure first, then leaves."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from jaxprop.check import leaf_path

JIT = pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
DTYPES = pytest.mark.parametrize("dtype", ["float64", "float32"])


def maybe_jit(fn, jit: bool):
    return jax.jit(fn) if jit else fn


# A correct hand gradient agrees with jax.grad to rounding; these bound it, relative to the
# leaf's largest element.
RTOL = {"float64": 1e-10, "float32": 1e-4}


def assert_trees_close(actual, expected, rtol: float | None = None, *, dtype=None):
    """Asserts that two pytrees have the same structure, shapes and dtypes, then that every leaf
    agrees to ``rtol`` relative to that leaf's largest element (the error names the leaf)."""
    chex.assert_trees_all_equal_structs(actual, expected)
    chex.assert_trees_all_equal_shapes_and_dtypes(actual, expected)
    leaves, _ = jax.tree_util.tree_flatten_with_path(expected)
    got = jax.tree.leaves(actual)
    for (path, e), a in zip(leaves, got, strict=False):
        e, a = np.asarray(e), np.asarray(a)
        tol = rtol if rtol is not None else RTOL[str(dtype or e.dtype)]
        scale = max(float(np.max(np.abs(e), initial=0.0)), 1e-300)
        err = float(np.max(np.abs(a - e), initial=0.0)) / scale
        assert np.all(np.isfinite(a)), f"leaf {leaf_path(path)} is not finite"
        assert err <= tol, f"leaf {leaf_path(path)}: relative error {err:.3e} > {tol:.1e}"
