"""The experiments' data sets, all made or loaded without a download.

Every function returns a :class:`Dataset` of NumPy float64 arrays (the experiment casts them to
its dtype) and is deterministic for its ``seed``.

>>> from jaxprop.experiments.data import two_moons
>>> data = two_moons(n=100)
>>> data.x_train.shape, data.Y_train.shape, data.classes
((100, 2), (100, 2), 2)
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Dataset", "digits", "linear_regression", "sine_regression", "two_moons"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Training and (optionally) test examples, one per row.

    Attributes:
      x_train: inputs, shape (N, n_in).
      Y_train: labels, shape (N, n_out) (one-hot rows for classification) or (N,).
      x_test: held-out inputs, shape (M, n_in), or None.
      Y_test: held-out labels, or None.
      classes: the number of classes (0 for regression).
      extra: anything else an experiment needs (e.g. the closed-form solution).
    """

    x_train: np.ndarray
    Y_train: np.ndarray
    x_test: np.ndarray | None = None
    Y_test: np.ndarray | None = None
    classes: int = 0
    extra: dict = dataclasses.field(default_factory=dict)


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes)[labels]


def two_moons(n: int = 400, noise: float = 0.15, seed: int = 0, n_test: int = 400) -> Dataset:
    """Two interleaved half-moons in the plane with Gaussian noise, two classes.

    Class 0 lies on the upper half of the unit circle, class 1 on a lower half circle shifted to
    (1, 0.5); each point gets N(0, noise²) added to both coordinates. The classes alternate, so
    every class has n/2 examples (n must be even). The test split is ``n_test`` further points
    drawn the same way after the training points (so the training set does not depend on it).

    Args:
      n: the number of training points, even.
      noise: the standard deviation of the noise.
      seed: the NumPy seed.
      n_test: the number of held-out test points, even (0: no test split).

    Returns:
      A :class:`Dataset` with x of shape (n, 2) and one-hot Y of shape (n, 2), and a test split
      of shape (n_test, 2).
    """
    if n < 2 or n % 2:
        raise ValueError(f"n must be a positive even number, got {n}")
    if n_test < 0 or n_test % 2:
        raise ValueError(f"n_test must be a non-negative even number, got {n_test}")
    rng = np.random.default_rng(seed)
    x, Y = _moons(rng, n, noise)
    if not n_test:
        return Dataset(x, Y, classes=2)
    return Dataset(x, Y, *_moons(rng, n_test, noise), classes=2)


def _moons(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 2
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(labels[:, None] == 0, upper, lower) + noise * rng.standard_normal((n, 2))
    return x, _one_hot(labels, 2)


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), scaled to [0, 1].

    The images ship inside scikit-learn (``sklearn.datasets.load_digits``, no download). A
    stratified random ``test_fraction`` of each class is held out as the test split.

    Returns:
      A :class:`Dataset` with x of shape (N, 64) and one-hot Y of shape (N, 10).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, labels = bunch.data / 16.0, bunch.target
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: round(test_fraction * len(members))]] = True
    train = ~test
    return Dataset(
        x[train],
        _one_hot(labels[train], 10),
        x[test],
        _one_hot(labels[test], 10),
        classes=10,
    )


def sine_regression(n: int = 200, noise: float = 0.02, seed: int = 0) -> Dataset:
    """A 1-D regression target inside (0, 1): y = ½ + 0.4 sin(x) + noise, x uniform on [−π, π].

    The target stays inside the range of a sigmoid output unit (seed 000's g).

    Returns:
      A :class:`Dataset` with x of shape (n, 1) and Y of shape (n, 1), and a noiseless test grid
      of 200 points.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    y = 0.5 + 0.4 * np.sin(x) + noise * rng.standard_normal((n, 1))
    grid = np.linspace(-np.pi, np.pi, 200)[:, None]
    return Dataset(x, y, grid, 0.5 + 0.4 * np.sin(grid))


def linear_regression(n: int = 200, d: int = 8, noise: float = 0.1, seed: int = 0) -> Dataset:
    """A least-squares problem: design matrix Φ (n, d), targets y = Φ θ_true + noise (n,).

    ``extra["theta_star"]`` is the closed-form least-squares solution ``argmin_θ ‖y − Φθ‖²``
    (``numpy.linalg.lstsq``), the value training should reach.
    """
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((n, d))
    theta_true = rng.standard_normal(d)
    y = phi @ theta_true + noise * rng.standard_normal(n)
    theta_star = np.linalg.lstsq(phi, y, rcond=None)[0]
    return Dataset(phi, y, extra={"theta_star": theta_star, "theta_true": theta_true})
