"""Sweeps: many training runs in one compiled program, each the run train() makes alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprop

SEEDS = (0, 3, 7)


@pytest.fixture(scope="module")
def setup():
    model = jaxprop.get_model("tanh-softmax")
    inits = [model.init(jax.random.key(s), n_in=2, n_hidden=6, n_out=2, dtype=jnp.float64)
             for s in SEEDS]  # fmt: skip
    x, Y = model.sample(jax.random.key(11), inits[0], batch=24)
    return model, inits, x, Y


def _stack(trees):
    return jax.tree.map(lambda *p: jnp.stack(p), *trees)


@pytest.mark.parametrize("source", ["manual", "auto"])
def test_run_i_of_a_sweep_is_the_single_run_with_seed_i(setup, source):
    model, inits, x, Y = setup
    opt = optax.adam(0.05)
    sweep = jaxprop.train_sweep(_stack(inits), x, Y, opt, seeds=SEEDS, model=model,
                                grad_source=source, steps=30, batch_size=8, chunk_size=10,
                                progress=False, test_data=(x, Y))  # fmt: skip
    assert sweep.losses.shape == (3, 30) and sweep.test_losses.shape == (3, 3)
    for i, (seed, p0) in enumerate(zip(SEEDS, inits, strict=True)):
        alone = jaxprop.train(p0, x, Y, opt, model=model, grad_source=source, steps=30,
                              batch_size=8, seed=seed, chunk_size=10, progress=False)  # fmt: skip
        np.testing.assert_allclose(sweep.losses[i], alone.losses, rtol=1e-12, atol=0)
        assert jaxprop.training.max_relative_difference(sweep.run(i).params, alone.params) < 1e-12
    # The runs differ (their own initial parameters and batch orders).
    assert np.max(np.abs(sweep.losses[0] - sweep.losses[1])) > 1e-3


def test_a_learning_rate_grid_and_a_diverging_run():
    model = jaxprop.get_model("least-squares")
    p0 = model.init(jax.random.key(0), D=3, dtype=jnp.float64)
    x, Y = model.sample(jax.random.key(1), p0, batch=16)
    seen = []

    def log(step, metrics):
        seen.append((step, metrics["loss"]))

    sweep = jaxprop.train_sweep(_stack([p0] * 3), x, Y, optax.sgd, learning_rates=[0.01, 0.1, 10],
                                seeds=(0, 0, 0), model=model, steps=200, chunk_size=50,
                                progress=False, callback=log)  # fmt: skip
    # lr 10 diverges (to inf, then NaN) at its run; the others are the single runs at their rates.
    assert list(sweep.diverged) == [2] and sweep.diverged[2] > 0
    assert np.all(np.isfinite(sweep.losses[:2]))
    for i, lr in enumerate((0.01, 0.1)):
        alone = jaxprop.train(p0, x, Y, optax.sgd(lr), model=model, steps=200, chunk_size=50,
                              progress=False)  # fmt: skip
        np.testing.assert_allclose(sweep.losses[i], alone.losses, rtol=1e-12, atol=0)
    assert [step for step, _ in seen] == [50, 100, 150, 200] and len(seen[-1][1]) == 3


def test_bad_sweeps_are_clear_errors(setup):
    model, inits, x, Y = setup
    with pytest.raises(ValueError, match="leading axis of 2 runs"):
        jaxprop.train_sweep(_stack(inits), x, Y, optax.sgd(0.1), seeds=(0, 1), model=model,
                            steps=2)  # fmt: skip
    with pytest.raises(ValueError, match="function of learning_rate"):
        jaxprop.train_sweep(_stack(inits), x, Y, optax.sgd(0.1), seeds=SEEDS, model=model,
                            steps=2, learning_rates=[0.1] * 3)  # fmt: skip
    with pytest.raises(ValueError, match="3 positive numbers"):
        jaxprop.train_sweep(_stack(inits), x, Y, optax.sgd, seeds=SEEDS, model=model, steps=2,
                            learning_rates=[0.1, -1.0, 0.1])  # fmt: skip


def test_cli_train_seeds_writes_the_sweep(tmp_path, capsys):
    import json

    from jaxprop.cli import main

    out = tmp_path / "sweep"
    status = main(["train", "moons", "--seeds", "3", "--grad", "both", "--steps", "20",
                   "--lr", "0.01,0.05", "--out", str(out)])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1, 2] and metrics["lrs"] == [0.01, 0.05]
    assert len(metrics["runs"]["manual"]) == 6 and metrics["diverged"] == {"manual": [], "auto": []}
    band = metrics["per_step"]["auto"]["0.05"]
    assert len(band["mean"]) == 20 and all(
        lo <= hi for lo, hi in zip(band["min"], band["max"], strict=True)
    )
    assert metrics["summary"]["manual"]["0.01"]["test_accuracy"]["n"] == 3
    # Hand and jax.grad train the same runs: their drift stays at round-off.
    assert set(metrics["drift"]["leaves"]) == {"W1", "b1", "W2", "b2"}
    assert max(max(d["max"]) for d in metrics["drift"]["leaves"].values()) < 1e-10
    assert (out / "loss_bands.png").stat().st_size > 0 and (out / "drift.png").stat().st_size > 0
    assert "3 seeds x lr 0.01, 0.05" in capsys.readouterr().out
