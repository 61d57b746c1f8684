"""Slips that are not backward formulas, slips of notation, and formulas checked and found
correct: the numerical evidence that fits each (float64; arrays built under ``jax.enable_x64``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxprop

__all__ = [
    "NOTATION",
    "correct_formulas",
    "loss_sign",
    "sigmoid_derivative",
]

_sigmoid = jaxprop.ACTIVATIONS["sigmoid"]


def loss_sign() -> dict[str, float]:
    """001 eq (5): the printed 'Loss' is the log-likelihood, minus the cross-entropy.

    On a batch of 6 with 2 outputs (z2 of shape (6, 2), Bernoulli(½) labels): the sum of eq (5)
    and the cross-entropy (0), eq (7) against the derivative of (5) (0: (7) is (5)'s derivative),
    the cross-entropy before and after a descent step on (5) (it rises), and how far σ(z2) is from
    the softmax of eq (4).
    """
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(0))
        z2 = jax.random.normal(k1, (6, 2), jnp.float64)
        y = jax.random.bernoulli(k2, 0.5, (6, 2)).astype(jnp.float64)

        def printed(z):  # 001 eq (5) as printed, summed over the batch and the outputs
            s = _sigmoid.fn(z)
            return jnp.sum(y * jnp.log(s) + (1 - y) * jnp.log(1 - s))

        def cross_entropy(z):  # the binary cross-entropy, written independently of (5)
            return -jnp.sum(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))

        grad_printed = jax.grad(printed)(z2)
        eq7 = y - _sigmoid.fn(z2)  # 001 eq (7) as printed
        step = z2 - 0.5 * grad_printed  # one gradient-descent step on eq (5) as printed
        softmax_vs_sigmoid = float(jnp.max(jnp.abs(
            jaxprop.ACTIVATIONS["softmax"].fn(z2) - _sigmoid.fn(z2))))  # fmt: skip
        return {
            "sum (5) + cross-entropy": float(printed(z2) + cross_entropy(z2)),
            "max |d(5)/dz2 − (7)|": float(jnp.max(jnp.abs(grad_printed - eq7))),
            "cross-entropy before a descent step on (5)": float(cross_entropy(z2)),
            "cross-entropy after": float(cross_entropy(step)),
            "max |softmax(z2) − σ(z2)| (eq (4) vs (5)-(7))": softmax_vs_sigmoid,
        }


def sigmoid_derivative() -> dict[str, list[float]]:
    """001 eq (6) at z = −2, 0, 1, 3: jax.grad of σ, σ(1 − σ), and the printed ln σ · ln(1 − σ)."""
    with jax.enable_x64(True):
        z = jnp.array([-2.0, 0.0, 1.0, 3.0], jnp.float64)
        s = _sigmoid.fn(z)
        true = jax.vmap(jax.grad(_sigmoid.fn))(z)
        return {
            "z": [float(v) for v in z],
            "jax.grad σ": [round(float(v), 6) for v in true],
            "σ(1 − σ)": [round(float(v), 6) for v in s * (1 - s)],
            # 001 eq (6) as printed: dσ(z2)/dz = ln(σ(z2)) · ln(1 − σ(z2)).
            "ln σ · ln(1 − σ) (printed)": [round(float(v), 6) for v in jnp.log(s) * jnp.log(1 - s)],
        }


def _rel(a, b) -> float:
    """max |a − b| over max |b|: the relative error of a against the reference b."""
    return jaxprop.compare("reference", np.asarray(a), np.asarray(b), rtol=1.0).max_rel


def correct_formulas() -> list[tuple[str, str, float]]:
    """Formulas of 002 and 003 checked numerically and found correct.

    Returns:
      ``(where, formula, max relative error against jax.grad / jax.jacobian)`` per formula.
    """
    out = []
    with jax.enable_x64(True):
        key = jax.random.key(3)

        def f109(x):  # 002 (5.109)
            return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))

        xs = jnp.linspace(-1.5, 1.5, 7, dtype=jnp.float64)
        e = jnp.exp(xs**2)
        printed = 2 * xs * (1 / (2 * jnp.sqrt(xs**2 + e)) - jnp.sin(xs**2 + e)) * (1 + e)  # (5.110)
        out.append(("002 (5.110)", "df/dx = 2x(1/(2√(x²+e^{x²})) − sin(x²+e^{x²}))(1+e^{x²})",
                    _rel(printed, jax.vmap(jax.grad(f109))(xs))))  # fmt: skip

        k1, k2, k3 = jax.random.split(key, 3)
        Phi = jax.random.normal(k1, (5, 3), jnp.float64)
        theta = jax.random.normal(k2, (3,), jnp.float64)
        y = jax.random.normal(k3, (5,), jnp.float64)
        L = lambda th: jnp.sum((y - Phi @ th) ** 2)  # noqa: E731  002 (5.84)
        printed = -2 * (y - theta @ Phi.T) @ Phi  # 002 (5.83)
        out.append(("002 (5.83)", "∂L/∂θ = −2(yᵀ − θᵀΦᵀ)Φ", _rel(printed, jax.grad(L)(theta))))

        A = jax.random.normal(k1, (4, 3), jnp.float64)
        x = jax.random.normal(k2, (3,), jnp.float64)
        out.append(("002 (5.68)", "d(Ax)/dx = A", _rel(A, jax.jacobian(lambda v: A @ v)(x))))
        J = jax.jacobian(lambda M: M @ x)(A)  # (M, M, N): ∂f_i/∂A_kq
        printed = jnp.einsum("ik,q->ikq", jnp.eye(4), x)  # 002 (5.89)-(5.92): x_q where k = i
        out.append(("002 (5.89)-(5.92)", "∂f_i/∂A_{i,:} = xᵀ, ∂f_i/∂A_{k≠i,:} = 0ᵀ",
                    _rel(printed, J)))  # fmt: skip

        # 002 backward paths (1), (2) with explicit Jacobians: diag σ′, identity, A1.
        A0 = jax.random.normal(k1, (4, 3), jnp.float64)
        A1 = jax.random.normal(k2, (2, 4), jnp.float64)
        b0, b1 = jnp.full((4,), 0.1), jnp.full((2,), -0.2)
        X, Yt = jax.random.normal(k3, (3,), jnp.float64), jnp.array([0.3, 0.7])
        sig = _sigmoid.fn

        def E(b0, b1):
            f2 = sig(A1 @ sig(A0 @ X + b0) + b1)
            return 0.5 * (f2 - Yt) @ (f2 - Yt)

        Z1 = A0 @ X + b0
        f1 = sig(Z1)
        Z2 = A1 @ f1 + b1
        f2 = sig(Z2)
        D2, D1 = jnp.diag(f2 * (1 - f2)), jnp.diag(f1 * (1 - f1))
        path1 = (f2 - Yt) @ D2 @ jnp.eye(2)  # 002 lecture, backward path (1)
        path2 = (f2 - Yt) @ D2 @ A1 @ D1 @ jnp.eye(4)  # 002 lecture, backward path (2)
        g0, g1 = jax.grad(E, argnums=(0, 1))(b0, b1)
        out.append(("002 backward path (1)", "∂E/∂b1 = (f2 − Y)ᵀ diag(σ′) I", _rel(path1, g1)))
        out.append(("002 backward path (2)", "∂E/∂b0 = (f2 − Y)ᵀ diag σ′(Z2) A1 diag σ′(Z1) I",
                    _rel(path2, g0)))  # fmt: skip

        # 002 lecture: E = ½‖Ŷ(θ) − Y‖², ∂E/∂θ = (Ŷ(θ) − Y)ᵀ ∂Ŷ/∂θ, for Ŷ(θ) = tanh(A θ).
        Yl = jax.random.normal(k3, (4,), jnp.float64)
        Yhat = lambda th: jnp.tanh(A @ th)  # noqa: E731
        El = lambda th: 0.5 * jnp.sum((Yhat(th) - Yl) ** 2)  # noqa: E731
        printed = (Yhat(x) - Yl) @ jax.jacobian(Yhat)(x)
        out.append(("002 lecture", "∂E/∂θ = (Ŷ(θ) − Y)ᵀ ∂Ŷ(θ)/∂θ", _rel(printed, jax.grad(El)(x))))

        # 003 [7]: the batch MSE derivative 2/(b|out|)(out − y).
        out_, yy = jax.random.normal(k1, (4, 2), jnp.float64), jax.random.normal(k2, (4, 2))
        mse = lambda o: jnp.sum((yy - o) ** 2) / o.size  # noqa: E731
        out.append(("003 output layer", "∂E/∂out_j = 2/(b|out|)(out_j − y_j)",
                    _rel(2 * (out_ - yy) / out_.size, jax.grad(mse)(out_))))  # fmt: skip
    return out


#: Slips of notation, and forms that only inherit a slip of :data:`jaxprop.errata.SLIPS`:
#: ``(doc, where, as printed, should read)``.
NOTATION = (
    (
        "000",
        "dW, middle form",
        "dW = g′(ŷ) U f′(ĥ) xᵀ dL",
        "inherits db's slips (U for Uᵀ, order) and puts xᵀ before dL; the final form db xᵀ is "
        "right with the corrected db",
    ),
    (
        "000",
        "§2.3, intro",
        "'we solve this task as a logistic regression problem' with a mean squared error loss",
        "the loss is ½(y − Y)², a regression loss; nothing below depends on it",
    ),
    ("001", "eq (6)", "dσ(z2)/dz", "dσ(z2)/dz2 (besides the value, see above)"),
    ("001", "eqs (16), (17)", "tanh² Z1", "tanh² z1"),
    (
        "001",
        "eqs (4)-(7)",
        "a softmax output (4), then σ(z2) in (5)-(7)",
        "one output "
        "function throughout; with the softmax and the cross-entropy ∂Loss/∂z2 = ŷ − y as well",
    ),
    ("002", "Total cost", "E(θ) = Σ_{r=1}^{K} E^r(θ) over a data set of N examples", "Σ_{r=1}^{N}"),
    (
        "002",
        "Problem Formulation",
        "θ(t+1) = θ(t) − η ∂E/∂θ, with ∂E/∂θ = (Ŷ − Y)ᵀ ∂Ŷ/∂θ a 1 × D row (as (5.40)) and θ a "
        "D-vector column",
        "θ(t+1) = θ(t) − η (∂E/∂θ)ᵀ: taken literally, a D × 1 column minus a 1 × D row is a D × D "
        "matrix (NumPy/JAX broadcasting); sgd_step and optax.sgd apply the gradient in θ's shape",
    ),
    (
        "002",
        "§5.6.1",
        "'A_j, b_j for j = 1, …, K'",
        "j = 0, …, K − 1 (θ = {A_0, b_0, …, A_{K−1}, b_{K−1}}, as (5.114) then says)",
    ),
    ("002", "(5.92)", "'We stack the partial derivatives (5.91)'", "(5.90) and (5.91)"),
    (
        "002",
        "lecture, Backward Path (2)",
        "labels 'Identity Diagonal Diagonal Row Vector' under five factors: read right to left, "
        "∂Z2/∂f1 is labelled Diagonal",
        "Row vector · Diagonal (σ′(Z2)) · A1 (a full matrix: jax.jacfwd of Z2 in f1 equals A1, "
        "off-diagonal entries > 0.1; tests/test_seed002.py) · Diagonal (σ′(Z1)) · Identity",
    ),
    (
        "003",
        "batch MSE",
        "1/(b|out|) Σ_{i=0}^{b} (y_i − out_i)²: b + 1 terms",
        "Σ_{i=1}^{b} (the mean over the b examples and the |out| outputs)",
    ),
    ("001", "eq (8)", "∂z2/∂w2 (lower-case w2)", "∂z2/∂W2"),
    (
        "003",
        "hidden-layer recursion",
        "'δE/δout_k depends on the δE/δout_k of the next layer'",
        "on the ∂E/∂out_j of the next layer",
    ),
    (
        "003",
        "throughout",
        "δE/δw (the Greek δ for the partial derivative)",
        "∂E/∂w; δ is also the name of the error term, which the slips above then confuse",
    ),
)
