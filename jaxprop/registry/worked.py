"""The worked examples of the documents that are not networks, and their checks.

Seed 002 derives results that do not fit a :class:`~jaxprop.Model` (a scalar function, the
Jacobian of f = A x, a matrix-valued function of a vector, an optimiser step): their mathematics
lives with the document's other systems in :mod:`jaxprop.models`, and this module states what is
checked of them, as registry entries (:class:`~jaxprop.Example`) that ``jaxprop verify`` runs, and
the further checks of the least-squares model (``Model.extra_checks``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprop.check.compare import compare, judge
from jaxprop.check.grad_report import GradReport, LeafReport
from jaxprop.check.grads import check_grads
from jaxprop.check.jacobian import check_jacobian
from jaxprop.check.tolerance import default_tolerances, precision
from jaxprop.model.contract import Model, random_point
from jaxprop.model.example import Example

# Through the modules, not their names: a test (or a user) patching a function of a model's
# module patches what these checks run.
from jaxprop.models import seed002_calculus as calculus
from jaxprop.models import seed002_lecture as lecture

__all__ = [
    "dA_dx_entry",
    "df_dA_entry",
    "least_squares_entry",
    "scalar_f_entry",
    "total_cost_entry",
]


def _rename(report: GradReport, path: str) -> tuple[LeafReport, ...]:
    """The leaves of a one-leaf report, the leaf renamed ``path``."""
    return tuple(dataclasses.replace(leaf, path=path) for leaf in report.leaves)


def _scalar_check(*, seed, dtype, jit, batch):
    # x uniform in [−1.5, 1.5]: beyond |x| ≈ 2 the inner term u = x² + exp(x²) grows so fast
    # that cos u oscillates on a scale near the finite-difference step ε^{1/3}, and the central
    # differences' own truncation error (h² f‴/6) exceeds their tolerance; jax.grad is compared
    # on wider ranges in tests/test_seed002.py.
    with precision(dtype):
        x = jax.random.uniform(jax.random.key(seed), (batch,), jnp.dtype(dtype), -1.5, 1.5)
    # f is elementwise, so the gradient of Σ_j f(x_j) is the vector of derivatives f′(x_j): the
    # hand derivative is checked on every element at once against jax.grad and (5.39).
    loss = lambda p: jnp.sum(calculus.scalar_f(p["x"]))  # noqa: E731
    kw = {"dtype": dtype, "jit": jit, "seed": seed}
    factored = check_grads(loss, lambda p: {"x": calculus.scalar_df(p["x"])}, {"x": x}, **kw)
    expanded = check_grads(
        loss, lambda p: {"x": calculus.scalar_df_expanded(p["x"])}, {"x": x}, **kw
    )
    leaves = _rename(factored, "df/dx") + _rename(expanded, "df/dx expanded")
    return GradReport(leaves=leaves, dtype=factored.dtype, loss=factored.loss)


def scalar_f_entry() -> Example:
    """Registry entry ``"scalar-f"``: both forms of (5.110) against jax.grad and (5.39)."""
    return Example("scalar-f", calculus.SOURCE_SCALAR, _scalar_check)


def _row_grad(theta, Phi, y):
    """(5.83)'s row vector ∂L/∂θ ∈ R^{1×D} as the gradient of θ ∈ R^D: its one row (another
    shape passes through, for the check to name)."""
    g = calculus.least_squares_grad(theta, Phi, y)
    return g[0] if jnp.shape(g) == (1, jnp.shape(theta)[0]) else g


def _grad_at_random_theta_check(*, seed, dtype, jit, batch):
    """The document's gradient (5.83), ``least_squares_grad``, against ``jax.grad`` and finite
    differences of (5.84) at a random θ (at the normal equations the true gradient is 0, where
    a wrong constant factor would pass): one leaf, ``theta (5.83)``, that joins the model's
    report (``Model.extra_checks``)."""
    with precision(dtype):
        params, Phi, y = random_point(
            calculus.least_squares(), jax.random.key(seed), batch, dtype=dtype
        )
        report = check_grads(calculus.least_squares_loss, _row_grad, params["theta"], Phi, y,
                             dtype=dtype, jit=jit, seed=seed)  # fmt: skip
    return dataclasses.replace(report, leaves=_rename(report, "theta (5.83)"))


def _normal_equations_check(*, seed, dtype, jit, batch):
    """The least-squares gradient (5.83) vanishes at the normal equations' solution: one leaf,
    ``theta at normal equations``, that joins the model's report (``Model.extra_checks``)."""
    with precision(dtype):
        _, Phi, y = random_point(calculus.least_squares(), jax.random.key(seed), batch, dtype=dtype)
        # LAPACK solves in float32 or float64 only: a bfloat16 or float16 check solves in float32
        # and evaluates the gradient (5.83) in its own dtype.
        solve = jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype
        theta = calculus.normal_equations(Phi.astype(solve), y.astype(solve)).astype(dtype)
        fn = jax.jit(calculus.least_squares_grad) if jit else calculus.least_squares_grad
        g = np.asarray(fn(theta, Phi, y)).ravel()
        # The terms of (5.83) are of size 2‖Φ‖‖y‖: the gradient must vanish relative to them.
        terms = 2 * float(jnp.linalg.norm(Phi) * jnp.linalg.norm(y))
    zero = compare(
        "0 at the normal equations", g, np.zeros_like(g), rtol=default_tolerances(dtype)[0],
        dtype=dtype, terms=terms,
    )  # fmt: skip
    leaf = LeafReport(
        path="theta at normal equations", shape=g.shape, dtype=str(g.dtype), vs_auto=zero
    )
    return GradReport(leaves=(leaf,), dtype=jnp.dtype(dtype).name, loss=0.0)


def least_squares_entry() -> Model:
    """Registry entry ``"least-squares"``: the :class:`~jaxprop.Model` of
    :func:`jaxprop.models.seed002_calculus.least_squares`, whose report also holds the document's
    gradient (5.83) at a random θ and the gradient at the normal equations' solution, where it
    must vanish."""
    return dataclasses.replace(
        calculus.least_squares(),
        extra_checks=(_grad_at_random_theta_check, _normal_equations_check),
    )


def _df_dA_check(*, seed, dtype, jit, batch):
    with precision(dtype):
        kA, kx = jax.random.split(jax.random.key(seed))
        M, N = 4, 3
        A = jax.random.normal(kA, (M, N), jnp.dtype(dtype))
        x = jax.random.normal(kx, (N,), jnp.dtype(dtype))
    return check_jacobian(
        lambda A, x: calculus.linear_map(A, x),
        calculus.df_dA,
        A,
        x,
        dtype=dtype,
        jit=jit,
        seed=seed,
        label="df/dA",
    )


def df_dA_entry() -> Example:
    """Registry entry ``"df/dA"``: (5.88)–(5.92) against jax.jacfwd, jax.jacrev and (5.55)."""
    return Example("df/dA", calculus.SOURCE_DF_DA, _df_dA_check)


def _dA_dx_check(*, seed, dtype, jit, batch):
    with precision(dtype):
        kC, kD, kx = jax.random.split(jax.random.key(seed), 3)
        m, n, p = 4, 2, 3  # the chapter's A ∈ R^{4×2}, x ∈ R^3
        dt = jnp.dtype(dtype)
        C = 0.5 * jax.random.normal(kC, (m, n, p), dt)
        D = 0.5 * jax.random.normal(kD, (m, n), dt)
        x = jax.random.normal(kx, (p,), dt)
        kw = {"dtype": dtype, "jit": jit, "seed": seed}
        one = check_jacobian(
            calculus.matrix_of_vector, calculus.dA_dx_collate, x, C, D, label="approach 1", **kw
        )
        two = check_jacobian(
            calculus.matrix_of_vector, calculus.dA_dx_flatten, x, C, D, label="approach 2", **kw
        )
        j1 = np.asarray(calculus.dA_dx_collate(x, C, D))
        j2 = np.asarray(calculus.dA_dx_flatten(x, C, D))
        # A malformed hand Jacobian (another shape) is a FAIL row here too, not a crash. Judged in
        # the check's precision: outside it, with 64-bit mode off (the command line), a float64
        # array's dtype reads as float32.
        same, problem = judge(
            j1, j2, what="approach 1", missing="approach 1 is missing", reference="approach 2",
            rtol=default_tolerances(dtype)[0], dtype=dtype,
        )  # fmt: skip
    both = LeafReport(path="approach 1 = approach 2", shape=j2.shape, dtype=str(j2.dtype),
                      vs_auto=same, problem=problem)  # fmt: skip
    return GradReport(leaves=(*one.leaves, *two.leaves, both), dtype=one.dtype, loss=one.loss)


def dA_dx_entry() -> Example:
    """Registry entry ``"dA/dx"``: approaches 1 and 2 equal each other, jacfwd, jacrev and FD."""
    return Example("dA/dx", calculus.SOURCE_DA_DX, _dA_dx_check)


def _total_cost_check(*, seed, dtype, jit, batch, eta: float = 0.1):
    dt = jnp.dtype(dtype)
    with precision(dt):
        params, X, Y = random_point(lecture.two_layer_sigmoid(), jax.random.key(seed), batch)
        params, X, Y = jax.tree.map(lambda a: a.astype(dt), (params, X, Y))
        report = check_grads(
            lecture.total_cost,
            lecture.total_cost_grad,
            params,
            X,
            Y,
            dtype=dtype,
            jit=jit,
            seed=seed,
        )
        maybe_jit = jax.jit if jit else (lambda f: f)
        grads = maybe_jit(lecture.total_cost_grad)(params, X, Y)
        hand = maybe_jit(lecture.sgd_step)(params, grads, eta)
        opt = optax.sgd(eta)
        updates, _ = opt.update(grads, opt.init(params), params)
        ref = optax.apply_updates(params, updates)
    rtol = default_tolerances(dt)[0]
    leaves = []
    for key in sorted(params):
        # A malformed hand gradient (another shape) is a FAIL row here too, not a crash.
        cmp, problem = judge(
            hand.get(key), ref[key], what="hand update", missing="missing from the hand update",
            reference="optax.sgd", rtol=rtol, dtype=dt,
        )  # fmt: skip
        r = np.asarray(ref[key])
        leaves.append(LeafReport(path=f"θ(t+1)/{key}", shape=r.shape, dtype=str(r.dtype),
                                 vs_auto=cmp, problem=problem))  # fmt: skip
    return GradReport(leaves=(*report.leaves, *leaves), dtype=report.dtype, loss=report.loss)


def total_cost_entry() -> Example:
    """Registry entry ``"total-cost-sgd"``: ∂E/∂θ = Σ_r ∂E^r/∂θ against jax.grad and finite
    differences, and the hand update θ − η ∂E/∂θ against one ``optax.sgd(η)`` step."""
    return Example("total-cost-sgd", lecture.SOURCE_TOTAL, _total_cost_check)
