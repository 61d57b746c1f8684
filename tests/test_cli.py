"""`jaxprop verify`: the table, the JSON, the exit status, and a broken backward pass named."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import pytest

import jaxprop
from jaxprop.cli import main
from jaxprop.experiments import experiment_names


def test_verify_all_pass_and_print_one_table(capsys):
    assert main(["verify", "--nodes"]) == 0
    out = capsys.readouterr().out
    for name in jaxprop.model_names():
        assert name in out
    assert "000_5eab1a4fa2460359.txt" in out and "001_90440b38c2c51fc3.txt" in out
    assert f"{len(jaxprop.model_names())} of {len(jaxprop.model_names())} models pass" in out


def test_verify_json_lists_models_with_per_leaf_errors(capsys):
    assert main(["verify", "--json", "--model", "two-layer-mse", "--model", "tanh-softmax"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True and payload["dtype"] == "float64"
    names = [m["name"] for m in payload["models"]]
    assert names == ["two-layer-mse", "tanh-softmax"]
    for m in payload["models"]:
        assert m["ok"] and m["source"].startswith(("000_", "001_"))
        for leaf in m["leaves"]:
            assert leaf["vs_auto"]["max_rel"] < 1e-12
            assert leaf["vs_fd"]["max_rel"] < 1e-6


def _broken(model, leaf):
    """The model with one line of its backward pass broken: one gradient leaf doubled."""

    def backward(params, x, saved, Y):
        grads, adjoints = model.backward(params, x, saved, Y)
        return {**grads, leaf: 2.0 * grads[leaf]}, adjoints

    return dataclasses.replace(model, backward=backward)


@pytest.mark.parametrize(("name", "leaf"), [("two-layer-mse", "U"), ("tanh-softmax", "b1")])
def test_a_broken_backward_exits_1_and_names_the_leaf(monkeypatch, capsys, name, leaf):
    monkeypatch.setitem(jaxprop.REGISTRY, name, _broken(jaxprop.get_model(name), leaf))
    assert main(["verify", "--model", name]) == 1
    assert f"FAIL at {leaf}" in capsys.readouterr().out
    assert main(["verify", "--model", name, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["models"][0]["failing"] == [leaf]


def test_unknown_model_is_a_usage_error(capsys):
    assert main(["verify", "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_bad_options_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["verify", "--batch", "0"])
    assert e.value.code == 2


def test_a_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["verify", "--model", "scalar-f", "--seed", "-1"])
    assert e.value.code == 2
    assert "--seed: must be a non-negative integer, got -1" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "jaxprop", "verify", "--model", "two-layer-mse", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"][0]["name"] == "two-layer-mse"


def test_a_batch_that_is_not_a_number_is_a_one_line_usage_error(capsys):
    # It read "invalid _positive_int value: 'x'", the name of a private function.
    with pytest.raises(SystemExit) as e:
        main(["verify", "--batch", "x"])
    assert e.value.code == 2
    assert "--batch: must be a positive integer, got x" in capsys.readouterr().err


def test_a_registered_model_without_init_is_a_usage_error(monkeypatch, capsys):
    # It ended in a traceback from verify_model.
    bare = dataclasses.replace(jaxprop.get_model("two-layer-mse"), name="bare", init=None)
    monkeypatch.setitem(jaxprop.REGISTRY, "bare", bare)
    assert main(["verify", "--model", "bare"]) == 2
    assert "models ['bare'] have no init or no sample" in capsys.readouterr().err


def test_a_model_named_twice_is_checked_once(capsys):
    assert main(["verify", "--json", "--model", "scalar-f", "--model", "scalar-f"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)["models"]] == ["scalar-f"]


# --- a user's own model on the command line (issue 17 items 1, 9, 10, 11) ----------------------

USER_MODEL = """
import jax
import jax.numpy as jnp

import jaxprop


def forward(params, x, taps=None):
    z1 = jaxprop.tap(taps, "z1", x @ params["W1"] + params["b1"][None, :])
    h = jaxprop.tap(taps, "h", jnp.tanh(z1))
    out = jaxprop.tap(taps, "out", h @ params["W2"])
    return out, {"z1": z1, "h": h, "out": out}


def backward(params, x, saved, Y):
    dout = (saved["out"] - Y) / Y.shape[0]
    dh = dout @ params["W2"].T
    dz1 = dh * (1 - saved["h"] ** 2)
    grads = {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": saved["h"].T @ dout}
    return grads, {"out": dout, "h": dh, "z1": dz1}


def init(key, n_in=3, n_hidden=4, n_out=2):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"W1": jax.random.normal(k1, (n_in, n_hidden)),
            "b1": jax.random.normal(k2, (n_hidden,)),
            "W2": jax.random.normal(k3, (n_hidden, n_out))}


def sample(key, params, batch):
    kx, ky = jax.random.split(key)
    n_in, n_out = params["W1"].shape[0], params["W2"].shape[1]
    return jax.random.normal(kx, (batch, n_in)), jax.random.normal(ky, (batch, n_out))


def make_model():
    return jaxprop.Model(name="my-net", source="my notes", init=init, forward=forward,
                         objective="half_squared_error", backward=backward, sample=sample,
                         nodes=("z1", "h", "out"))


def boom():
    return 1 / 0


def examples():
    return [jaxprop.get_model("scalar-f"), jaxprop.get_model("dA/dx")]
"""


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A user's project: my_net.py in the working directory."""
    (tmp_path / "my_net.py").write_text(USER_MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _environment(**extra):
    """This interpreter's environment, its scripts (``jaxprop``) first on PATH, no XLA_FLAGS."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return {**env, **extra}


def test_a_users_model_file_is_verified_from_the_command_line(user_dir):
    # Mixed with a built-in name, in a process of its own: 64-bit mode off, as for a user (dA/dx
    # failed there, its float64 Jacobian judged outside the check's precision).
    result = subprocess.run(
        [sys.executable, "-m", "jaxprop", "verify", "--model", "my_net.py:make_model", "--nodes",
         "--model", "dA/dx", "--batch", "4"],
        capture_output=True, text=True, check=False, cwd=user_dir, env=_environment(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "my-net  (my notes)" in result.stdout and "nodes, in backward order" in result.stdout
    assert "2 of 2 models pass in float64" in result.stdout


def test_a_module_reference_names_its_models():
    from jaxprop.cli.commands import _verify_entries

    # package.module:factory; a module's models() gives all its entries.
    assert [e.name for e in _verify_entries("jaxprop.models.seed001:tanh_softmax")] == [
        "tanh-softmax"
    ]
    assert [e.name for e in _verify_entries("jaxprop.models.seed002_calculus:models")] == [
        "least-squares"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "--model", "mine.py:make_model"], "no such file 'mine.py'"),
        (["verify", "--model", "my_net.py:make"], "'my_net.py' has no 'make'; its functions"),
        (["verify", "--model", "my_net.py:boom"], "my_net.py:boom() raised ZeroDivisionError"),
        (["verify", "--model", "my_net.py:init"], "my_net.py:init must be callable with no"),
        (["verify", "--model", "no_such_module:f"], "cannot import 'no_such_module'"),
        (["verify", "--model", "my_net"], "for a model of your own, give path/to/file.py:"),
        (["train", "my_net.py:examples"], "gives 2 models (scalar-f, dA/dx); jaxprop train"),
        (["train", "my_net.py"], "'my_net.py' has no 'models'"),
    ],
)
def test_a_reference_that_cannot_be_loaded_is_one_line_and_exit_2(user_dir, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxprop: error: ") and message in err[0], err


def test_train_with_too_many_devices_gives_a_command_that_works(user_dir, capsys):
    # It said only "expected between 1 and 1". The advice, run as given, trains the user's file
    # from the command line on that many CPU devices.
    n = len(jax.devices()) + 1
    argv = ["train", "my_net.py:make_model", "--devices", str(n), "--batch-size", str(8 * n),
            "--steps", "3", "--grad", "manual", "--no-plots"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--xla_force_host_platform_device_count" in err[0], err
    command = err[0].split("before JAX starts: ", 1)[1]
    assert not (user_dir / "runs").exists()
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False,
                            cwd=user_dir, env=_environment())  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((user_dir / "runs" / "my-net" / "metrics.json").read_text())
    assert metrics["model"] == "my-net" and metrics["devices"] == n
    assert metrics["steps"] == 3 and len(metrics["losses"]) == 3


def test_a_train_that_fails_on_its_options_leaves_no_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("jaxprop.experiments.driver.train", None)  # training must not start
    assert main(["train", "moons", "--batch-size", "100000", "--steps", "1"]) == 2
    assert "batch size 100000 is larger" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    nested = tmp_path / "a" / "b" / "c"
    assert main(["train", "moons", "--batch-size", "100000", "--out", str(nested)]) == 2
    assert not (tmp_path / "a").exists()
    (tmp_path / "mine").mkdir()  # the user's own directory is left as it was
    assert main(["train", "moons", "--batch-size", "100000", "--out", "mine"]) == 2
    assert (tmp_path / "mine").is_dir()


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_defaults_and_the_names(capsys):
    text = _help(["verify"], capsys)
    for default in ("(default: float64)", "(default: 16)", "(default: 0)", "(default: True)"):
        assert default in text
    assert all(name in text for name in jaxprop.model_names())
    assert "path/to/file.py:factory" in text
    text = _help(["train"], capsys)
    assert "(default: both)" in text and "(default: float64)" in text
    assert all(name in text for name in experiment_names())
    assert "moons: adam, lr 0.01, 2000 steps, full batch" in text
    from jaxprop.teach import exercise_models

    for command in (["exercise"], ["grade"]):
        assert all(name in _help(command, capsys) for name in exercise_models())


def test_a_name_close_to_a_known_one_gets_a_suggestion(tmp_path, capsys):
    hint = "(did you mean 'tanh-softmax'?)"
    assert main(["verify", "--model", "tanh_softmax"]) == 2
    assert f"unknown model 'tanh_softmax' {hint}" in capsys.readouterr().err
    assert main(["exercise", "tanh_softmax"]) == 2
    assert hint in capsys.readouterr().err
    (tmp_path / "answer.py").write_text('MODEL = "tanh-softmax"\n')
    assert main(["grade", str(tmp_path / "answer.py"), "--model", "tanh_softmax"]) == 2
    assert hint in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "moon"])
    assert e.value.code == 2
    assert "unknown experiment 'moon' (did you mean 'moons'?)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown model 'k_layer' \(did you mean 'k-layer'\?\)"):
        jaxprop.get_model("k_layer")


def test_an_error_in_a_users_factory_names_their_line(tmp_path):
    from jaxprop.cli.load import load_entries

    # A project folder whose name contains "jaxprop" (its frames were taken for jaxprop's own),
    # and a TypeError raised inside a factory of no arguments (it was reported as the factory
    # needing arguments).
    project = tmp_path / "jaxprop-experiments"
    project.mkdir()
    (project / "net.py").write_text("def make():\n    return int([])\n")
    with pytest.raises(ValueError, match=r"make\(\) raised TypeError: .*net\.py, line 2\)$"):
        load_entries(f"{project / 'net.py'}:make")
