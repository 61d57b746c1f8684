"""A user's exception inside a function a checker runs is a FAIL row naming the exception and the
user's own file:line (issue 26), in the Python API, in verify's JSON and on the command line;
jaxprop's own exceptions are raised, not hidden."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest

import jaxprop
from jaxprop.cli import main

HERE = pathlib.Path(__file__).name


def _line_of(fn) -> int:
    return fn.__code__.co_firstlineno + 1  # the body's first line raises


def _loss(p, x):
    return jnp.sum((p["w"] @ x) ** 2)


def _grad_that_raises(p, x):
    return {"w": 1 / 0}


def test_a_hand_gradient_that_raises_is_a_fail_row_with_the_users_line():
    report = jaxprop.check_grads(_loss, _grad_that_raises, {"w": jnp.ones((2, 3))}, jnp.ones(3))
    assert not report.ok and report.failing == ("w",)
    problem = report.leaves[0].problem
    assert problem == (
        "grad_fn raised ZeroDivisionError: division by zero "
        f"(tests/{HERE}:{_line_of(_grad_that_raises)})"
    )
    assert report.to_dict()["leaves"][0]["problem"] == problem
    assert "FAIL: grad_fn raised ZeroDivisionError" in str(report)


def test_a_hand_jacobian_that_raises_is_a_fail_row():
    def jac(x):
        raise KeyError("no such node")

    report = jaxprop.check_jacobian(jnp.sin, jac, jnp.ones(3))
    assert report.failing == ("J", "J@jacrev")
    assert report.leaves[0].problem.startswith("jac_fn raised KeyError: 'no such node' (tests/")


def _raising_model():
    model = jaxprop.get_model("tanh-softmax")

    def backward(params, x, saved, Y):
        raise ZeroDivisionError("the user's bug")

    return dataclasses.replace(model, name="mine", backward=backward)


def test_a_hand_backward_that_raises_fails_every_node():
    model = _raising_model()
    params, x, Y = jaxprop.random_point(model, jax.random.key(0), 3)
    report = jaxprop.check_nodes(model, params, x, Y)
    assert report.failing == ("z2", "a1", "z1")
    assert all(
        "raised ZeroDivisionError: the user's bug (tests/" in n.problem for n in report.nodes
    )
    assert report.nodes[0].shape == (3, 2)  # the true adjoint's shape


def test_jaxprops_own_exception_is_raised_not_turned_into_a_row():
    # A function of jaxprop's own that raises on these arguments: no frame of the user's code.
    from jaxprop.model.validate import check_batch_size

    with pytest.raises(ValueError):
        jaxprop.check_grads(
            _loss, check_batch_size, {"w": jnp.ones((2, 3))}, jnp.ones(3), jit=False
        )


MY_NET = """import dataclasses
import jaxprop


def make():
    model = jaxprop.get_model("tanh-softmax")

    def backward(params, x, saved, Y):
        return 1 / 0

    return dataclasses.replace(model, name="mine", backward=backward)
"""


def test_verify_reports_a_raising_model_file_and_goes_on(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_net.py").write_text(MY_NET)
    monkeypatch.chdir(tmp_path)
    argv = ["verify", "--model", "my_net.py:make", "--model", "tanh-softmax", "--batch", "3"]
    assert main([*argv, "--json"]) == 1
    entries = json.loads(capsys.readouterr().out)["models"]
    assert [e["ok"] for e in entries] == [False, True]  # the next entry was still checked
    problem = entries[0]["leaves"][0]["problem"]
    assert problem == "grad_fn raised ZeroDivisionError: division by zero (my_net.py:9)"


def test_train_stops_on_a_raising_model_file_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_net.py").write_text(MY_NET)
    monkeypatch.chdir(tmp_path)
    status = main(["train", "my_net.py:make", "--steps", "3", "--out", "run", "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err == [
        "jaxprop: error: step 0: the gradient raised ZeroDivisionError: division by zero "
        "(my_net.py:9)"
    ]
    assert not (tmp_path / "run").exists()  # nothing half-written
    with pytest.raises(jaxprop.training.GradientError, match="step 0: the gradient raised"):
        model = _raising_model()
        params, x, Y = jaxprop.random_point(model, jax.random.key(0), 4)
        import optax

        jaxprop.train(params, x, Y, optax.sgd(0.1), steps=2, model=model, progress=False)
