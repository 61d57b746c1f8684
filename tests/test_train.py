"""The training loop, the experiments and ``jaxprop train``."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
import pytest
from helpers import assert_trees_close

import jaxprop
from jaxprop import get_model
from jaxprop.cli import main
from jaxprop.experiments import (
    EXPERIMENTS,
    experiment_names,
    loss_curve_max_rel_diff,
    make_optimizer,
    run_experiment,
)
from jaxprop.experiments import data as datasets
from jaxprop.training import CallbackError, data_mesh, max_relative_difference, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def problem():
    model = get_model("tanh-softmax")
    params = model.init(jax.random.key(0), n_in=2, n_hidden=16, n_out=2, dtype=jnp.float64)
    x, Y = model.sample(jax.random.key(1), params, batch=48)
    return model, params, x, Y


def test_hand_and_auto_gradients_train_alike_in_float64(problem):
    model, params, x, Y = problem
    kw = dict(steps=40, batch_size=16, seed=3, chunk_size=15, progress=False)
    manual = train(params, x, Y, optax.adam(1e-2), model=model, grad_source="manual", **kw)
    auto = train(params, x, Y, optax.adam(1e-2), model=model, grad_source="auto", **kw)
    assert loss_curve_max_rel_diff(manual.losses, auto.losses) < 1e-12
    assert_trees_close(manual.params, auto.params, rtol=1e-12)
    assert manual.losses[-1] < 0.9 * manual.losses[0]  # it trains


def test_loss_fn_and_grad_fn_give_the_model_path(problem):
    model, params, x, Y = problem
    kw = dict(steps=12, seed=0, progress=False)
    via_model = train(params, x, Y, optax.sgd(0.1), model=model, **kw)
    via_fns = train(params, x, Y, optax.sgd(0.1), loss_fn=model.loss, grad_fn=jax.grad(model.loss),
                    **kw)  # fmt: skip
    np.testing.assert_allclose(via_fns.losses, via_model.losses, rtol=1e-12)
    # The first recorded loss is the loss at the initial parameters.
    assert via_model.losses[0] == pytest.approx(float(model.loss(params, x, Y)), rel=1e-14)


def test_same_seed_same_run_other_seed_other_batches(problem):
    model, params, x, Y = problem
    kw = dict(steps=30, batch_size=8, chunk_size=7, progress=False)
    a = train(params, x, Y, optax.sgd(0.05), model=model, seed=1, **kw)
    b = train(params, x, Y, optax.sgd(0.05), model=model, seed=1, **kw)
    c = train(params, x, Y, optax.sgd(0.05), model=model, seed=2, **kw)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.losses, c.losses)
    # The chunk length is not part of the run.
    d = train(params, x, Y, optax.sgd(0.05), model=model, seed=1, steps=30, batch_size=8,
              chunk_size=30, progress=False)  # fmt: skip
    np.testing.assert_allclose(d.losses, a.losses, rtol=1e-13)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2, "batch_size": 49}, "batch_size"),
        ({"steps": 2, "grad_source": "numeric"}, "grad_source"),
        ({"steps": True}, "steps must be an integer"),
        ({"steps": 2, "chunk_size": 2.5}, "chunk_size must be an integer"),
        ({"steps": 2, "chunk_size": None}, "chunk_size must be an integer"),
        ({"steps": 2, "batch_size": 4.0}, "batch_size must be an integer"),
        ({"steps": 2, "batch_size": True}, "batch_size must be an integer"),
        ({"steps": 2, "seed": -1}, "seed must be an integer between 0 and 2"),
        ({"steps": 2, "seed": 2**32}, "seed must be an integer between 0 and 2"),
        ({"steps": 2, "seed": 1.5}, "seed must be an integer between 0 and 2"),
    ],
)
def test_train_rejects_bad_arguments(problem, kwargs, match):
    model, params, x, Y = problem
    with pytest.raises(ValueError, match=match):
        train(params, x, Y, optax.sgd(0.1), model=model, progress=False, **kwargs)


def test_train_accepts_numpy_integers(problem):
    model, params, x, Y = problem
    result = train(params, x, Y, optax.sgd(0.1), model=model, steps=np.int64(2),
                   batch_size=np.int32(48), seed=np.uint32(0), progress=False)  # fmt: skip
    assert result.losses.shape == (2,)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: {**a, "optimizer": "adam"}, "optax.GradientTransformation"),
        (lambda a: {**a, "optimizer": optax.adam}, "optax.GradientTransformation"),
        (lambda a: {**a, "optimizer": optax.masked(optax.sgd(0.1), {"W1": True})},
         "the optimizer does not fit the parameters"),
        (lambda a: {**a, "x": np.asarray(a["x"]).tolist()}, "x must be a JAX or NumPy array"),
        (lambda a: {**a, "x": a["x"][0, 0]}, "x is a scalar"),
        (lambda a: {**a, "x": a["x"][:0], "Y": a["Y"][:0]}, "at least one example"),
        (lambda a: {**a, "x": a["x"].at[5, 1].set(jnp.nan)}, "x has NaN .* first row 5"),
        (lambda a: {**a, "Y": a["Y"].at[3, 0].set(jnp.inf)}, "Y has NaN .* first row 3"),
    ],
)  # fmt: skip
def test_train_rejects_bad_optimizers_and_data_before_compiling(problem, change, match):
    model, params, x, Y = problem
    args = change({"params": params, "x": x, "Y": Y, "optimizer": optax.sgd(0.1)})
    with pytest.raises(ValueError, match=match):
        train(**args, model=model, steps=2, progress=False)


@pytest.mark.parametrize(
    "grad_fn, match",
    [
        (lambda p, x, Y: list(p.values()), "the gradient has the structure"),
        (lambda p, x, Y: {k: p[k] for k in ("W1", "W2", "b1")}, "the gradient has the structure"),
        (lambda p, x, Y: {**p, "W2": p["W2"].T}, r"gradient of \['W2'\] is float64\[2, 16\]"),
        (lambda p, x, Y: {**p, "b1": p["b1"].astype(jnp.float32)},
         r"gradient of \['b1'\] is float32\[16\]; expected .* float64\[16\]"),
    ],
)  # fmt: skip
def test_train_rejects_a_gradient_unlike_the_parameters(problem, grad_fn, match):
    model, params, x, Y = problem
    with pytest.raises(ValueError, match=match):
        train(params, x, Y, optax.sgd(0.1), loss_fn=model.loss, grad_fn=grad_fn, steps=2,
              progress=False)  # fmt: skip


def test_train_rejects_a_non_scalar_loss_or_a_bad_pair(problem):
    model, params, x, Y = problem
    kw = dict(steps=2, progress=False)
    with pytest.raises(ValueError, match="the loss must be a real scalar, got float64\\[3\\]"):
        train(params, x, Y, optax.sgd(0.1), loss_fn=lambda p, x, Y: jnp.zeros(3),
              grad_fn=jax.grad(model.loss), **kw)  # fmt: skip
    with pytest.raises(ValueError, match="must return \\(loss, grads\\)"):
        train(params, x, Y, optax.sgd(0.1), value_and_grad_fn=lambda p, x, Y: (1.0, p, 2), **kw)


def test_train_rejects_a_mesh_without_a_batch_axis(problem):
    model, params, x, Y = problem
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    with pytest.raises(ValueError, match="expected one named 'batch'"):
        train(params, x, Y, optax.sgd(0.1), model=model, steps=2, mesh=mesh, progress=False)


def test_data_mesh_rejects_more_devices_than_there_are():
    with pytest.raises(ValueError, match="devices"):
        data_mesh(len(jax.devices()) + 1)


def test_make_optimizer_rejects_bad_values():
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("sgd", -0.1)


def _small(name):
    """The experiment's data, cut to a few dozen examples."""
    ds = EXPERIMENTS[name].data()
    if name == "moons":
        return datasets.two_moons(n=40)
    if name == "regression":
        return datasets.sine_regression(n=30)
    if name.startswith("digits"):
        return datasets.Dataset(ds.x_train[:60], ds.Y_train[:60], ds.x_test[:30], ds.Y_test[:30],
                                classes=10)  # fmt: skip
    return ds


@pytest.mark.parametrize("name", experiment_names())
def test_every_experiment_runs_and_both_sources_agree(name):
    metrics = run_experiment(name, grad="both", steps=4, data=_small(name), batch_size=None,
                             progress=False)  # fmt: skip
    assert len(metrics["losses"]) == 4
    assert np.all(np.isfinite(metrics["losses"]))
    assert metrics["loss_curve_max_rel_diff"] < 1e-10
    assert metrics["param_max_rel_diff"] < 1e-10
    assert np.isfinite(metrics["final_loss"])
    if metrics["task"] == "classification":
        assert 0.0 <= metrics["final_train_accuracy"] <= 1.0
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
    if name == "least-squares":
        assert metrics["theta_rel_error_vs_closed_form"] < 1.0


def test_least_squares_reaches_the_closed_form():
    metrics = run_experiment("least-squares", grad="manual", progress=False)
    assert metrics["theta_rel_error_vs_closed_form"] < 1e-8
    assert metrics["final_loss"] == pytest.approx(metrics["closed_form_loss"], rel=1e-10)


def test_float32_sources_agree_to_rounding():
    # Plain SGD: each step moves by lr times the gradient, so the two sources' float32 rounding
    # differences stay at rounding level (Adam divides by √v and can amplify them, see the docs).
    metrics = run_experiment("moons", grad="both", steps=5, data=datasets.two_moons(n=40),
                             optimizer="sgd", lr=0.5, dtype="float32", progress=False)  # fmt: skip
    assert metrics["dtype"] == "float32"
    assert metrics["loss_curve_max_rel_diff"] < 1e-4
    assert metrics["param_max_rel_diff"] < 1e-4


def test_outputs_are_written_whole_with_plots(tmp_path):
    small = {"moons": datasets.two_moons(n=40), "regression": datasets.sine_regression(n=30)}
    for name, ds in small.items():
        out = tmp_path / name
        run_experiment(name, steps=3, data=ds, out=out, progress=False)
        plot = {"moons": "decision_boundary.png", "regression": "fit.png"}[name]
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["metrics.json", "loss_curve.png", plot]
        )  # no temporary files left behind
        for png in ("loss_curve.png", plot):
            assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        metrics = json.loads((out / "metrics.json").read_text())
        assert len(metrics["runs"]["manual"]["losses"]) == 3
        assert len(metrics["runs"]["auto"]["losses"]) == 3


def test_cli_train_writes_metrics(tmp_path, capsys):
    status = main(["train", "moons", "--steps", "3", "--grad", "manual", "--optimizer", "sgd",
                   "--lr", "0.1", "--batch-size", "100", "--seed", "2", "--out", str(tmp_path),
                   "--no-plots"])  # fmt: skip
    assert status == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["grad"] == "manual" and metrics["optimizer"] == "sgd"
    assert metrics["batch_size"] == 100 and metrics["seed"] == 2 and metrics["steps"] == 3
    for key in ("final_train_accuracy", "final_loss", "wall_time_s", "losses"):
        assert key in metrics
    assert "loss_curve_max_rel_diff" not in metrics
    assert "train accuracy" in capsys.readouterr().out
    # What a researcher needs to reproduce the run: the test loss (final, and after every chunk)
    # and the versions of the libraries and of jaxprop.
    assert np.isfinite(metrics["test_loss"]) and metrics["test_loss"] > 0
    assert metrics["test_loss"] == metrics["runs"]["manual"]["test_loss"]
    assert metrics["test_loss_steps"] == [3] and metrics["test_losses"] == [metrics["test_loss"]]
    versions = metrics["versions"]
    assert versions["jax"] == jax.__version__ and versions["jaxlib"] == jaxlib.__version__
    assert versions["optax"] == optax.__version__ and versions["jaxprop"] == jaxprop.__version__
    assert versions["numpy"] == np.__version__ and versions["python"] == platform.python_version()
    assert metrics["platform"] == jax.default_backend() and metrics["device_kind"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "no-such-experiment"],
        ["train", "moons", "--optimizer", "rmsprop"],
        ["train", "moons", "--lr", "-0.1"],
        ["train", "moons", "--lr", "nan"],
        ["train", "moons", "--steps", "0"],
        ["train", "moons", "--batch-size", "-3"],
        ["train", "moons", "--grad", "numeric"],
        ["train", "moons", "--dtype", "float16"],
        ["train", "moons", "--seed", "-1"],
        ["train", "moons", "--out", ""],
        ["train", "moons", "--out", __file__],  # an existing file
    ],
)
def test_cli_bad_options_exit_2_with_one_error_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxprop train: error: argument"), err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch-size", "401"], "batch size 401 is larger than the 400 training examples"),
        (["--seed", str(2**32)], "seed must be an integer between 0 and 2**32 - 1"),
        (["--out", "{tmp}/file/sub"], "cannot create the output directory"),
    ],
)
def test_cli_bad_values_exit_2_before_training(tmp_path, capsys, monkeypatch, options, message):
    (tmp_path / "file").write_text("not a directory")
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    monkeypatch.setattr("jaxprop.experiments.driver.train", None)  # training must not start
    argv = ["train", "moons", "--steps", "1", "--out", str(tmp_path / "run"), *options]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxprop: error: ") and message in err[0], err


def test_run_experiment_trains_full_batch_when_the_default_batch_exceeds_the_data():
    data = _small("digits-softmax")  # 60 examples; the experiment's batch size is 128
    metrics = run_experiment("digits-softmax", grad="manual", steps=1, data=data, progress=False)
    assert metrics["batch_size"] == 60


def test_a_diverged_run_exits_1_and_writes_standard_json(tmp_path, capsys):
    argv = ["train", "least-squares", "--steps", "100", "--lr", "100", "--out", str(tmp_path),
            "--no-plots"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["jaxprop: error: training diverged: the loss is NaN or infinite (manual run "
                   "from step 64, auto run from step 64); try a smaller --lr"]  # fmt: skip

    def reject(constant):
        raise AssertionError(f"metrics.json holds {constant}, which is not JSON")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=reject)
    assert metrics["nonfinite_loss_step"] == 64 and metrics["losses"][64] is None
    assert metrics["loss_curve_max_rel_diff"] is None  # NaN: not a claim of agreement


def test_max_relative_difference_of_nan_trees_is_nan():
    nan = {"w": np.array([np.nan, 1.0])}
    assert np.isnan(max_relative_difference(nan, nan))
    inf = {"w": np.array([np.inf, 1.0])}
    assert np.isnan(max_relative_difference(inf, inf))
    assert max_relative_difference({"w": np.array([1.0])}, {"w": np.array([1.0])}) == 0.0


def test_cli_too_many_devices_is_a_usage_error(tmp_path, capsys):
    n = len(jax.devices()) + 1
    argv = ["train", "moons", "--steps", "1", "--devices", str(n), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxprop: error: devices=")


SHARDED = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    from jaxprop import get_model
    from jaxprop.training import data_mesh, max_relative_difference, train

    assert len(jax.devices()) == 4, jax.devices()
    model = get_model("tanh-softmax")
    params = model.init(jax.random.key(0), n_in=2, n_hidden=32, n_out=2, dtype=jnp.float64)
    x, Y = model.sample(jax.random.key(1), params, batch=64)
    out = {}
    for batch in (None, 16):
        runs = {}
        for devices in (None, 4):
            mesh = None if devices is None else data_mesh(devices)
            r = train(params, x, Y, optax.adam(1e-2), model=model, steps=25, batch_size=batch,
                      seed=5, chunk_size=10, mesh=mesh, progress=False)
            runs[devices] = r
        one, four = runs[None], runs[4]
        leaf = jax.tree.leaves(four.params)[0]
        out[str(batch)] = {
            "losses_1": one.losses.tolist(),
            "losses_4": four.losses.tolist(),
            "param_diff": max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                              for a, b in zip(jax.tree.leaves(four.params),
                                              jax.tree.leaves(one.params))),
            "param_devices": len(leaf.sharding.device_set),
            "replicated": bool(leaf.sharding.is_fully_replicated),
        }
    try:
        train(params, x, Y, optax.sgd(0.1), model=model, steps=1, batch_size=6,
              mesh=data_mesh(4), progress=False)
    except ValueError as e:
        out["indivisible"] = str(e)
    print(json.dumps(out))
    """
)


def test_data_parallel_on_four_devices_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "not a multiple of the 4 devices" in result.pop("indivisible", "")
    for batch, r in result.items():
        assert r["param_devices"] == 4 and r["replicated"], batch
        np.testing.assert_allclose(r["losses_4"], r["losses_1"], rtol=1e-13, err_msg=batch)
        assert r["param_diff"] < 1e-12, batch
        assert r["losses_4"][-1] < r["losses_4"][0]


def test_a_second_run_reuses_the_compiled_loop(caplog):
    model = get_model("tanh-softmax")
    params = model.init(jax.random.key(0), n_in=2, n_hidden=4, n_out=2, dtype=jnp.float64)
    x, Y = model.sample(jax.random.key(1), params, batch=8)
    opt = optax.sgd(0.1)
    runs = []
    for _ in range(2):
        caplog.clear()
        with jax.log_compiles(), caplog.at_level("WARNING"):
            runs.append(train(params, x, Y, opt, model=model, steps=5, progress=False))
        compiled = [r.getMessage() for r in caplog.records if "run_chunk" in r.getMessage()]
    assert compiled == [], compiled  # the second run compiled nothing
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)


# --- The training API: jaxprop.train, its callback and its test loss ---------------------------


def test_train_is_exported_at_the_top_level():
    import jaxprop.training

    assert jaxprop.train is jaxprop.training.train is train
    assert jaxprop.TrainResult is jaxprop.training.TrainResult
    assert jaxprop.data_mesh is data_mesh
    assert {"train", "TrainResult", "data_mesh"} <= set(jaxprop.__all__)


def test_the_callback_gets_plain_floats_after_every_chunk(problem):
    model, params, x, Y = problem
    calls, adam = [], optax.adam(1e-2)
    result = train(params, x[:32], Y[:32], adam, model=model, steps=25, chunk_size=10,
                   test_data=(x[32:], Y[32:]), callback=lambda step, m: calls.append((step, m)),
                   progress=False)  # fmt: skip
    assert [step for step, _ in calls] == [10, 20, 25] == result.log_steps.tolist()
    for step, metrics in calls:
        assert type(step) is int and set(metrics) == {"loss", "test_loss"}
        assert all(type(v) is float for v in metrics.values())
        assert metrics["loss"] == result.losses[step - 1]  # the loss of the step's batch
    np.testing.assert_array_equal(result.test_losses, [m["test_loss"] for _, m in calls])
    # The last test loss is the model's loss on the test examples at the final parameters.
    assert calls[-1][1]["test_loss"] == float(jax.jit(model.loss)(result.params, x[32:], Y[32:]))
    # Without test data: the loss alone, and the same run.
    calls.clear()
    plain = train(params, x[:32], Y[:32], adam, model=model, steps=25, chunk_size=10,
                  callback=lambda step, m: calls.append((step, m)), progress=False)  # fmt: skip
    assert [set(m) for _, m in calls] == [{"loss"}] * 3 and plain.test_losses is None
    np.testing.assert_array_equal(plain.losses, result.losses)


def test_the_test_loss_of_a_value_and_grad_source(problem):
    model, params, x, Y = problem
    vg = jax.value_and_grad(model.loss)
    result = train(params, x[:32], Y[:32], optax.sgd(0.1), value_and_grad_fn=vg, steps=1,
                   test_data=(x[32:], Y[32:]), progress=False)  # fmt: skip
    assert result.test_losses[-1] == pytest.approx(float(model.loss(result.params, x[32:], Y[32:])),
                                                   rel=1e-14)  # fmt: skip


def test_a_callback_that_raises_stops_training_with_an_error_naming_it(problem):
    model, params, x, Y = problem
    steps_seen = []

    def log_to_my_dashboard(step, metrics):
        steps_seen.append(step)
        if step == 20:
            raise KeyError("dashboard")

    with pytest.raises(CallbackError) as info:
        train(params, x, Y, optax.sgd(0.1), model=model, steps=50, chunk_size=10,
              callback=log_to_my_dashboard, progress=False)  # fmt: skip
    message = str(info.value)
    assert "the callback" in message and "log_to_my_dashboard raised KeyError at step 20" in message
    assert isinstance(info.value.__cause__, KeyError)
    assert steps_seen == [10, 20]  # training stopped there


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"callback": "print"}, "callback must be callable"),
        ({"test_data": np.zeros((4, 2))}, r"test_data must be a pair \(x_test, Y_test\)"),
        ({"test_data": (np.zeros((4, 2)), np.zeros((3, 2)))}, "the same number of rows"),
        ({"test_data": (np.zeros((4, 3)), np.zeros((4, 2)))},
         r"test_data's x is float64\[4, 3\]: expected x's dtype and shape per row, float64\[2\]"),
        ({"test_data": (np.zeros((4, 2), np.float32), np.zeros((4, 2)))},
         "test_data's x is float32"),
        ({"test_data": (np.full((4, 2), np.nan), np.zeros((4, 2)))}, "test_data's x has NaN"),
    ],
)  # fmt: skip
def test_train_rejects_a_bad_callback_or_bad_test_data(problem, kwargs, match):
    model, params, x, Y = problem
    with pytest.raises(ValueError, match=match):
        train(params, x, Y, optax.sgd(0.1), model=model, steps=2, progress=False, **kwargs)


# --- A diverging run's loss plot, and what metrics.json records ---------------------------------


def test_a_diverging_run_plot_shows_the_blow_up_and_marks_the_last_finite_loss(
    tmp_path, monkeypatch
):
    # The run of the issue: least squares with SGD at lr 10 grows from 7.3 to ~1e304, then
    # overflows. The figure's y-axis must span it all, with the last finite loss marked.
    figures = []
    monkeypatch.setattr("jaxprop.experiments.plots.save_figure",
                        lambda fig, path: figures.append(fig))  # fmt: skip
    metrics = run_experiment("least-squares", grad="manual", lr=10.0, steps=300, out=tmp_path,
                             progress=False)  # fmt: skip
    losses = np.asarray(metrics["losses"], np.float64)  # None -> NaN
    first = metrics["nonfinite_loss_step"]
    assert first is not None and np.all(np.isfinite(losses[:first]))
    last = first - 1
    assert losses[0] < 10 and losses[last] > 1e300  # the blow-up the plot must show
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    bottom, top = ax.get_ylim()
    assert bottom <= losses[:first].min() and top >= losses[last]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
    assert len(marks) == 1
    np.testing.assert_array_equal(marks[0].get_xdata(), [last])
    np.testing.assert_array_equal(marks[0].get_ydata(), [losses[last]])
    assert f"at step {last}" in marks[0].get_label()
    assert any(f"from step {first}" in t.get_text() for t in ax.texts)
    fig.canvas.draw()  # the figure renders (its ticks are finite)
